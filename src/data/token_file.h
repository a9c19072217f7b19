// Token arrays and .tok files.
//
// .tok layout (all little-endian), 32-byte header, the tokenizer record,
// then the tokens:
//   offset  0: magic "CLLMTOK1" (8 bytes)
//   offset  8: u32 version (2; version 1 files, without a record, still load)
//   offset 12: u32 token width in bytes (2 or 4)
//   offset 16: u64 token count
//   offset 24: u32 vocabulary size (every token < it; width 2 needs <= 65536)
//   offset 28: u32 R, the record's size in bytes (1..4096; version 1: 0)
//   offset 32: the tokenizer record, R bytes of JSON:
//              {"name": "gpt2", "vocab_size": 50257, "vocab_hash": "fnv1a64:..."}
//              (see TokenizerRecord; vocab_size equals the header's)
//   offset 32 + R: count tokens of `width` bytes
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "data/file_io.h"
#include "data/tokenizer.h"

namespace cllm::data {

// The width in bytes at which cllm stores tokens of a vocabulary: 2 when
// it fits in 16 bits, else 4.
constexpr unsigned token_width(std::uint32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// Token ids as little-endian integers of width() bytes, held one of two ways:
//  - in memory, appended (text corpora tokenized when loaded), at
//    token_width(vocab_size);
//  - in a read-only mapping of a .tok file (read_token_file), at the file's
//    width: memory does not grow with the file (see FileMapping), so a corpus
//    larger than RAM trains. A token rewritten in place in the file after it
//    was validated reaches the model unchecked here; model::forward checks
//    every id against the vocabulary.
// Movable, not copyable.
class TokenArray {
 public:
  // An empty in-memory array.
  explicit TokenArray(std::uint32_t vocab_size);

  std::uint32_t vocab_size() const { return vocab_size_; }
  unsigned width() const { return width_; }
  std::uint64_t size() const { return size_; }
  std::int32_t operator[](std::uint64_t i) const {
    std::int32_t t;
    copy_to(i, 1, &t);
    return t;
  }
  // Copies tokens [begin, begin + count) to out; the range must be in bounds.
  void copy_to(std::uint64_t begin, std::size_t count, std::int32_t* out) const;
  // In-memory arrays only (std::logic_error on a mapped one). Throws
  // std::invalid_argument on a token outside [0, vocab_size).
  void append(std::span<const std::int32_t> tokens);
  // The tokens as stored: size() * width() little-endian bytes, not aligned
  // (a file's tokens start right after its record).
  const void* bytes() const { return data(); }

 private:
  friend TokenArray read_token_file(const std::filesystem::path& path);
  TokenArray(std::uint32_t vocab_size, unsigned width, std::uint64_t size, FileMapping mapping, std::uint64_t offset);
  const unsigned char* data() const { return mapping_.data() ? mapping_.data() + offset_ : owned_.data(); }

  std::uint32_t vocab_size_;
  unsigned width_;
  std::uint64_t size_ = 0;
  std::vector<unsigned char> owned_;  // in memory
  FileMapping mapping_;               // or mapped: the tokens start at offset_
  std::uint64_t offset_ = 0;
};

// Maps a .tok file after validating it: magic, version, width, vocabulary
// size, the tokenizer record, file size == 32 + R + count * width exactly,
// and every token < vocab size (one pass of positional reads in chunks,
// which leaves nothing of the file resident). Throws std::runtime_error
// "'PATH': what was wrong".
TokenArray read_token_file(const std::filesystem::path& path);

// The tokenizer a .tok file records, nullopt for a version 1 file; validates
// the header and record as read_token_file does, without reading the tokens.
std::optional<TokenizerRecord> read_token_file_tokenizer(const std::filesystem::path& path);

// Writes a .tok file as its tokens come, at token_width(vocabulary): the
// header and the tokenizer's record first, the tokens as appended, and their
// count into the header at commit(). Crash-safe like AtomicFileWriter (which
// it writes through): an uncommitted writer leaves PATH untouched.
class TokenFileWriter {
 public:
  // Throws std::invalid_argument when the record's vocabulary size is 0.
  TokenFileWriter(const std::filesystem::path& path, const TokenizerRecord& tokenizer);
  // Throws std::invalid_argument on a token outside [0, vocab_size).
  void append(std::span<const std::int32_t> tokens);
  std::uint64_t size() const { return count_; }
  void commit();

 private:
  AtomicFileWriter out_;
  std::uint32_t vocab_size_;
  std::uint64_t count_ = 0;
  std::vector<unsigned char> buffer_;  // the bytes of one append
};

// Writes `tokens` and the record of the tokenizer that made them
// (TokenFileWriter). Throws std::invalid_argument when the record's
// vocabulary size is not the tokens'.
void write_token_file(const std::filesystem::path& path, const TokenArray& tokens, const TokenizerRecord& tokenizer);

// Whether the file starts with the .tok magic (false when unreadable/short).
bool is_token_file(const std::filesystem::path& path);

}  // namespace cllm::data
