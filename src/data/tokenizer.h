// Tokenizers: `byte` (vocab 256, token = byte value) and `gpt2` (GPT-2's
// byte-level BPE read from the standard encoder.json and vocab.bpe files).
// Text is bytes (UTF-8 expected for gpt2); decode returns bytes, so decoding
// a token run that splits a multi-byte character yields partial UTF-8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cllm::data {

// What a token file or a checkpoint records of the tokenizer that made it.
struct TokenizerRecord {
  std::string name;              // "byte" or "gpt2"
  std::uint32_t vocab_size = 0;  // 0: not recorded (checkpoints made before the record)
  // A hash of the vocabulary files ("fnv1a64:" and 16 hex digits; gpt2:
  // encoder.json, then vocab.bpe); "" for byte, or when not recorded.
  std::string vocab_hash;
  // "gpt2 (vocabulary 50257, vocabulary files fnv1a64:...)".
  std::string describe() const;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  virtual int vocab_size() const = 0;
  // Thread-safe.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  // Throws std::invalid_argument on an id outside the vocabulary.
  virtual std::string decode(std::span<const std::int32_t> tokens) const = 0;
  // Tokens placed between documents (files of a directory): byte: "\n",
  // gpt2: <|endoftext|> (50256).
  virtual std::vector<std::int32_t> document_separator() const = 0;
  // Whether `text` is acceptable input: byte accepts any bytes, gpt2
  // requires valid UTF-8.
  virtual bool requires_utf8() const = 0;
  virtual TokenizerRecord record() const = 0;
  // Where `text`, which more text may follow, can be cut to encode a long
  // input in pieces: a length n <= text.size() such that encode(text[0, n))
  // followed by the encoding of the rest (with whatever follows it) is the
  // encoding of the whole, whatever follows; 0 when text holds no such place.
  virtual std::size_t stream_cut(std::string_view text) const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int vocab_size() const override { return 256; }
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> tokens) const override;
  std::vector<std::int32_t> document_separator() const override { return {'\n'}; }
  bool requires_utf8() const override { return false; }
  TokenizerRecord record() const override { return {name(), 256, ""}; }
  std::size_t stream_cut(std::string_view text) const override { return text.size(); }  // anywhere
};

// GPT-2 byte-level BPE, matching OpenAI's encoder.py: text is split by the
// GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (implemented by hand over code points; \p{L}/\p{N} are Unicode general
// categories from ICU, \s is JavaScript's white space set, as in the
// gpt-3-encoder npm package the tests compare against), each piece's bytes
// are merged by rank. Special tokens in the text are not recognised: the
// string "<|endoftext|>" encodes as ordinary text, as in encoder.py.
// Invalid UTF-8 bytes become one-byte pieces of their own.
class Gpt2Tokenizer final : public Tokenizer {
 public:
  // Throws std::runtime_error naming the file when a file is missing, not
  // JSON / not a {string: id} object, ids repeat or are negative, the byte
  // alphabet is incomplete, or a merges line is not two known symbols whose
  // concatenation is in the vocabulary.
  static std::unique_ptr<Gpt2Tokenizer> load(const std::filesystem::path& encoder_json,
                                             const std::filesystem::path& vocab_bpe);

  std::string name() const override { return "gpt2"; }
  int vocab_size() const override { return static_cast<int>(id_to_bytes_.size()); }
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> tokens) const override;
  std::vector<std::int32_t> document_separator() const override;
  bool requires_utf8() const override { return true; }
  TokenizerRecord record() const override;
  // Before the last ASCII white space byte that follows a code point other
  // than white space (see the proof at the definition).
  std::size_t stream_cut(std::string_view text) const override;

  // The pre-tokenizer alone (exposed for tests): the pieces of `text`.
  static std::vector<std::string_view> split(std::string_view text);

 private:
  Gpt2Tokenizer() = default;
  void bpe(std::string_view piece, std::vector<std::int32_t>& out) const;

  std::vector<std::string> id_to_bytes_;                   // raw bytes of each id
  std::int32_t byte_token_[256] = {};                      // id of each single byte
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merges_;  // (left,right) -> (rank, merged id)
  std::int32_t end_of_text_ = -1;
  std::string vocab_hash_;  // of encoder.json and vocab.bpe
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

// Byte offset of the first invalid UTF-8 sequence (overlong, surrogate, past
// U+10FFFF, truncated or stray continuation byte), or nullopt when valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);

// The length of `text` less the start of a UTF-8 sequence that its end cuts
// short (which more bytes could complete): where to cut a text read in
// pieces so that each piece is checked with find_invalid_utf8 as the whole
// would be.
std::size_t utf8_cut(std::string_view text);

// Bytes -> valid UTF-8 for display, as a stream: valid sequences pass
// unchanged, each maximal ill-formed subpart (an overlong form, a surrogate, a
// value past U+10FFFF, a stray continuation byte, a sequence cut short)
// becomes one U+FFFD, and a sequence that the end of a piece cuts short waits
// for the next piece, which completes or breaks it. A byte-level model emits
// such pieces: one token may hold half of a character.
class Utf8Sanitizer {
 public:
  // The text of `bytes` (after what earlier calls held back) that is
  // complete so far.
  std::string feed(std::string_view bytes);
  // U+FFFD when a cut-short sequence is still held back, else "".
  std::string finish();

 private:
  std::string pending_;  // the start of a sequence the input ended inside
};

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Utf8Sanitizer over one whole text.
std::string sanitize_utf8(std::string_view bytes);

// Throws std::runtime_error "'FILE': ..." naming what `file` records and
// what `given` is when they differ: the name, and the vocabulary size and
// hash where the file records them.
void check_tokenizer(const std::filesystem::path& file, const TokenizerRecord& recorded, const Tokenizer& given);

// Where gpt2 looks for encoder.json and vocab.bpe when no paths are given:
// $CLLM_DATA/gpt2 when CLLM_DATA is set, else data/gpt2 beside the folder of
// the running executable (the repository's data/gpt2 for build/cllm), where
// scripts/fetch-gpt2-vocab.sh puts them.
std::filesystem::path default_gpt2_vocab_dir();

// "byte" or "gpt2": gpt2 reads the two file paths given, or with neither
// given the files in default_gpt2_vocab_dir(). Throws std::invalid_argument
// on another name, on one path without the other, and when the default files
// are missing (saying how to get them).
std::unique_ptr<Tokenizer> make_tokenizer(std::string_view name,
                                          const std::filesystem::path& encoder_json = {},
                                          const std::filesystem::path& vocab_bpe = {});

}  // namespace cllm::data
