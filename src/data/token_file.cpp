#include "data/token_file.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>


namespace cllm::data {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, ".tok files are little-endian");

namespace {

constexpr char kMagic[8] = {'C', 'L', 'L', 'M', 'T', 'O', 'K', '1'};
constexpr std::uint32_t kVersion = 2;  // 1: no tokenizer record
constexpr std::size_t kHeaderBytes = 32;
constexpr std::uint32_t kMaxRecordBytes = 4096;

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t width;
  std::uint64_t count;
  std::uint32_t vocab_size;
  std::uint32_t record_bytes;  // version 1: reserved, 0
};
static_assert(sizeof(Header) == kHeaderBytes);

// A validated header and tokenizer record; the tokens start at data_offset.
struct Layout {
  Header header;
  std::optional<TokenizerRecord> tokenizer;
  std::uint64_t data_offset;
};

TokenizerRecord parse_record(const std::filesystem::path& path, const std::string& text, std::uint32_t vocab_size) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  const bool valid = j.is_object() && j.contains("name") && j["name"].is_string() && !j["name"].get<std::string>().empty() &&
                     j.contains("vocab_size") && j["vocab_size"].is_number_unsigned() && j.contains("vocab_hash") &&
                     j["vocab_hash"].is_string();
  if (!valid)
    throw file_error(path, "tokenizer record is not a JSON object {\"name\": string, \"vocab_size\": number, "
                           "\"vocab_hash\": string} (corrupt file?)");
  if (const auto recorded = j["vocab_size"].get<std::uint64_t>(); recorded != vocab_size)
    throw file_error(path, fmt::format("tokenizer record says vocabulary {} but the header says {}", recorded, vocab_size));
  return {j["name"].get<std::string>(), vocab_size, j["vocab_hash"].get<std::string>()};
}

Layout read_layout(const InputFile& file) {
  const fs::path& path = file.path();
  if (file.size() < kHeaderBytes)
    throw file_error(path, fmt::format("is {} bytes, too short for a token file's {}-byte header", file.size(),
                                       kHeaderBytes));
  Layout layout{};
  Header& h = layout.header;
  file.read_at(0, &h, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    throw file_error(path, "is not a cllm token file (magic is not CLLMTOK1; make one with `cllm tokenize`)");
  if (h.version != 1 && h.version != kVersion)
    throw file_error(path, fmt::format("token file version {} is not supported (expected 1 or {})", h.version, kVersion));
  if (h.width != 2 && h.width != 4)
    throw file_error(path, fmt::format("token width {} is not 2 or 4", h.width));
  if (h.vocab_size == 0) throw file_error(path, "vocabulary size is 0");
  if (h.width == 2 && h.vocab_size > 65536)
    throw file_error(path, fmt::format("vocabulary size {} does not fit 2-byte tokens", h.vocab_size));
  if (h.vocab_size > static_cast<std::uint32_t>(INT32_MAX))
    throw file_error(path, fmt::format("vocabulary size {} exceeds the int32 token range", h.vocab_size));
  if (h.version == 1 && h.record_bytes != 0) throw file_error(path, "reserved header field is not 0");
  if (h.version == kVersion && (h.record_bytes == 0 || h.record_bytes > kMaxRecordBytes))
    throw file_error(path, fmt::format("tokenizer record size {} is not in [1, {}]", h.record_bytes, kMaxRecordBytes));
  if (file.size() - kHeaderBytes < h.record_bytes)
    throw file_error(path, fmt::format("is {} bytes, too short for its {}-byte tokenizer record", file.size(), h.record_bytes));
  layout.data_offset = kHeaderBytes + h.record_bytes;
  if (h.record_bytes) {
    std::string text(h.record_bytes, '\0');
    file.read_at(kHeaderBytes, text.data(), text.size());
    layout.tokenizer = parse_record(path, text, h.vocab_size);
  }
  const std::uint64_t data_bytes = file.size() - layout.data_offset;
  if (h.count > data_bytes / h.width || h.count * h.width != data_bytes)
    throw file_error(path, fmt::format("header says {} tokens of {} bytes but {} data bytes follow (truncated or "
                                       "corrupt)", h.count, h.width, data_bytes));
  return layout;
}

// Checks every token of the file against the vocabulary, reading it in
// chunks into one buffer: page cache, not this process's memory, holds what
// was read.
template <typename T>
void check_tokens(const InputFile& file, std::uint64_t offset, std::uint64_t count, std::uint32_t vocab) {
  constexpr std::size_t kChunk = 1 << 20;
  std::vector<T> chunk(static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, count)));
  for (std::uint64_t begin = 0; begin < count; begin += kChunk) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, count - begin));
    file.read_at(offset + begin * sizeof(T), chunk.data(), n * sizeof(T));
    bool bad = false;  // no early exit: the loop vectorizes; the error path finds the culprit
    for (std::size_t i = 0; i < n; ++i) bad |= chunk[i] >= vocab;
    if (!bad) continue;
    for (std::size_t i = 0; i < n; ++i)
      if (chunk[i] >= vocab)
        throw file_error(file.path(), fmt::format("token {} at index {} is not below the vocabulary size {}", chunk[i],
                                                  begin + i, vocab));
  }
}

// Throws std::invalid_argument on a token outside [0, vocab).
void check_vocabulary(std::span<const std::int32_t> tokens, std::uint32_t vocab) {
  for (std::int32_t t : tokens)
    if (t < 0 || static_cast<std::uint32_t>(t) >= vocab)
      throw std::invalid_argument(fmt::format("token {} is outside the vocabulary [0, {})", t, vocab));
}

// Tokens <-> little-endian integers of sizeof(T) bytes, unaligned.
template <typename T>
void store(std::span<const std::int32_t> tokens, unsigned char* out) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto t = static_cast<T>(tokens[i]);
    std::memcpy(out + i * sizeof t, &t, sizeof t);
  }
}
template <typename T>
void load(const unsigned char* in, std::size_t count, std::int32_t* out) {
  for (std::size_t i = 0; i < count; ++i) {
    T t;
    std::memcpy(&t, in + i * sizeof t, sizeof t);
    out[i] = static_cast<std::int32_t>(t);
  }
}

// Stores checked tokens at `width` bytes each.
void store_tokens(std::span<const std::int32_t> tokens, unsigned width, unsigned char* out) {
  if (width == 2) store<std::uint16_t>(tokens, out);
  else store<std::uint32_t>(tokens, out);
}

}  // namespace

TokenArray::TokenArray(std::uint32_t vocab_size) : vocab_size_(vocab_size), width_(token_width(vocab_size)) {
  if (vocab_size == 0) throw std::invalid_argument("token array: vocabulary size must be positive");
}

TokenArray::TokenArray(std::uint32_t vocab_size, unsigned width, std::uint64_t size, FileMapping mapping,
                       std::uint64_t offset)
    : vocab_size_(vocab_size), width_(width), size_(size), mapping_(std::move(mapping)), offset_(offset) {}

void TokenArray::copy_to(std::uint64_t begin, std::size_t count, std::int32_t* out) const {
  const unsigned char* src = data() + begin * width_;
  if (width_ == 2) load<std::uint16_t>(src, count, out);
  else load<std::uint32_t>(src, count, out);
}

void TokenArray::append(std::span<const std::int32_t> tokens) {
  if (mapping_.data()) throw std::logic_error("token array: the tokens of a mapped token file are read-only");
  check_vocabulary(tokens, vocab_size_);
  owned_.resize(owned_.size() + tokens.size() * width_);
  store_tokens(tokens, width_, owned_.data() + size_ * width_);
  size_ += tokens.size();
}

TokenArray read_token_file(const fs::path& path) {
  const InputFile file = InputFile::open(path);
  const Layout layout = read_layout(file);
  const Header& h = layout.header;
  if (h.width == 2) check_tokens<std::uint16_t>(file, layout.data_offset, h.count, h.vocab_size);
  else check_tokens<std::uint32_t>(file, layout.data_offset, h.count, h.vocab_size);
  return TokenArray(h.vocab_size, h.width, h.count, file.map(), layout.data_offset);
}

std::optional<TokenizerRecord> read_token_file_tokenizer(const fs::path& path) {
  return read_layout(InputFile::open(path)).tokenizer;
}

TokenFileWriter::TokenFileWriter(const fs::path& path, const TokenizerRecord& tokenizer)
    : out_(path), vocab_size_(tokenizer.vocab_size) {
  if (vocab_size_ == 0)
    throw std::invalid_argument(fmt::format("token file '{}': the {} tokenizer's vocabulary size is 0", path.string(),
                                            tokenizer.name));
  const std::string record =
      nlohmann::json{{"name", tokenizer.name}, {"vocab_size", tokenizer.vocab_size}, {"vocab_hash", tokenizer.vocab_hash}}.dump();
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.width = token_width(vocab_size_);
  h.count = 0;  // patched at commit
  h.vocab_size = vocab_size_;
  h.record_bytes = static_cast<std::uint32_t>(record.size());
  out_.write(&h, sizeof h);
  out_.write(record.data(), record.size());
}

void TokenFileWriter::append(std::span<const std::int32_t> tokens) {
  check_vocabulary(tokens, vocab_size_);
  const unsigned width = token_width(vocab_size_);
  buffer_.resize(tokens.size() * width);
  store_tokens(tokens, width, buffer_.data());
  out_.write(buffer_.data(), buffer_.size());
  count_ += tokens.size();
}

void TokenFileWriter::commit() {
  out_.write_at(offsetof(Header, count), &count_, sizeof count_);
  out_.commit();
}

void write_token_file(const fs::path& path, const TokenArray& tokens, const TokenizerRecord& tokenizer) {
  if (tokenizer.vocab_size != tokens.vocab_size())
    throw std::invalid_argument(fmt::format("token file '{}': the {} tokenizer's vocabulary {} is not the tokens' {}",
                                            path.string(), tokenizer.name, tokenizer.vocab_size, tokens.vocab_size()));
  TokenFileWriter out(path, tokenizer);
  constexpr std::size_t kChunk = 1 << 16;
  std::vector<std::int32_t> chunk(static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, tokens.size())));
  for (std::uint64_t begin = 0; begin < tokens.size(); begin += kChunk) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, tokens.size() - begin));
    tokens.copy_to(begin, n, chunk.data());
    out.append(std::span(chunk.data(), n));
  }
  out.commit();
}

bool is_token_file(const fs::path& path) {
  try {
    const InputFile file = InputFile::open(path);
    char magic[sizeof kMagic];
    if (file.size() < sizeof magic) return false;
    file.read_at(0, magic, sizeof magic);
    return std::memcmp(magic, kMagic, sizeof kMagic) == 0;
  } catch (const std::runtime_error&) {
    return false;
  }
}

}  // namespace cllm::data
