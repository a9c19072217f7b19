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

#include "data/tokenizer.h"

namespace cllm::data {

// Token ids kept at 2 bytes each when the vocabulary fits in 16 bits, else 4.
class TokenArray {
 public:
  explicit TokenArray(std::uint32_t vocab_size);

  std::uint32_t vocab_size() const { return vocab_size_; }
  unsigned width() const { return vocab_size_ <= 65536 ? 2 : 4; }
  std::uint64_t size() const { return width() == 2 ? narrow_.size() : wide_.size(); }
  std::int32_t operator[](std::uint64_t i) const {
    return width() == 2 ? static_cast<std::int32_t>(narrow_[i]) : static_cast<std::int32_t>(wide_[i]);
  }
  // Copies tokens [begin, begin + count) to out; the range must be in bounds.
  void copy_to(std::uint64_t begin, std::size_t count, std::int32_t* out) const;
  // Throws std::invalid_argument on a token outside [0, vocab_size).
  void append(std::span<const std::int32_t> tokens);
  void reserve(std::uint64_t count);
  // The tokens as stored: size() * width() little-endian bytes.
  const void* bytes() const { return width() == 2 ? static_cast<const void*>(narrow_.data()) : wide_.data(); }

 private:
  friend TokenArray read_token_file(const std::filesystem::path& path);
  std::uint32_t vocab_size_;
  std::vector<std::uint16_t> narrow_;
  std::vector<std::uint32_t> wide_;
};

// Reads and validates a .tok file: magic, version, width, vocabulary size,
// the tokenizer record, file size == 32 + R + count * width exactly, and every
// token < vocab size (one pass). Throws std::runtime_error "'PATH': what was
// wrong".
TokenArray read_token_file(const std::filesystem::path& path);

// The tokenizer a .tok file records, nullopt for a version 1 file; validates
// the header and record as read_token_file does, without reading the tokens.
std::optional<TokenizerRecord> read_token_file_tokenizer(const std::filesystem::path& path);

// Writes `tokens` and the record of the tokenizer that made them
// crash-safely (see AtomicFileWriter) at tokens.width(). Throws
// std::invalid_argument when the record's vocabulary size is not the tokens'.
void write_token_file(const std::filesystem::path& path, const TokenArray& tokens, const TokenizerRecord& tokenizer);

// Whether the file starts with the .tok magic (false when unreadable/short).
bool is_token_file(const std::filesystem::path& path);

}  // namespace cllm::data
