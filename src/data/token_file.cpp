#include "data/token_file.h"

#include <bit>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/file_io.h"

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

// Reads count tokens of type T from `file` at `offset` into `out` in chunks,
// checking each against the vocabulary as it goes.
template <typename T>
void read_tokens(const InputFile& file, std::uint64_t offset, std::uint64_t count, std::uint32_t vocab,
                 std::vector<T>& out) {
  constexpr std::size_t kChunk = 1 << 20;
  out.resize(static_cast<std::size_t>(count));
  for (std::uint64_t begin = 0; begin < count; begin += kChunk) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, count - begin));
    file.read_at(offset + begin * sizeof(T), out.data() + begin, n * sizeof(T));
    for (std::size_t i = 0; i < n; ++i) {
      if (out[begin + i] >= vocab)
        throw file_error(file.path(), fmt::format("token {} at index {} is not below the vocabulary size {}",
                                                  out[begin + i], begin + i, vocab));
    }
  }
}

}  // namespace

TokenArray::TokenArray(std::uint32_t vocab_size) : vocab_size_(vocab_size) {
  if (vocab_size == 0) throw std::invalid_argument("token array: vocabulary size must be positive");
}

void TokenArray::copy_to(std::uint64_t begin, std::size_t count, std::int32_t* out) const {
  if (width() == 2) {
    const std::uint16_t* src = narrow_.data() + begin;
    for (std::size_t i = 0; i < count; ++i) out[i] = src[i];
  } else {
    const std::uint32_t* src = wide_.data() + begin;
    for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<std::int32_t>(src[i]);
  }
}

void TokenArray::append(std::span<const std::int32_t> tokens) {
  for (std::int32_t t : tokens)
    if (t < 0 || static_cast<std::uint32_t>(t) >= vocab_size_)
      throw std::invalid_argument(fmt::format("token {} is outside the vocabulary [0, {})", t, vocab_size_));
  if (width() == 2) narrow_.insert(narrow_.end(), tokens.begin(), tokens.end());
  else wide_.insert(wide_.end(), tokens.begin(), tokens.end());
}

void TokenArray::reserve(std::uint64_t count) {
  if (width() == 2) narrow_.reserve(static_cast<std::size_t>(count));
  else wide_.reserve(static_cast<std::size_t>(count));
}

TokenArray read_token_file(const fs::path& path) {
  const InputFile file = InputFile::open(path);
  const Layout layout = read_layout(file);
  const Header& h = layout.header;
  TokenArray tokens(h.vocab_size);
  // Stored at the array's own width: a 4-byte file of a small vocabulary is narrowed.
  if (h.width == 4 && tokens.width() == 2) {
    std::vector<std::uint32_t> wide;
    read_tokens(file, layout.data_offset, h.count, h.vocab_size, wide);
    tokens.narrow_.assign(wide.begin(), wide.end());
  } else if (h.width == 2) {
    read_tokens(file, layout.data_offset, h.count, h.vocab_size, tokens.narrow_);
  } else {
    read_tokens(file, layout.data_offset, h.count, h.vocab_size, tokens.wide_);
  }
  return tokens;
}

std::optional<TokenizerRecord> read_token_file_tokenizer(const fs::path& path) {
  return read_layout(InputFile::open(path)).tokenizer;
}

void write_token_file(const fs::path& path, const TokenArray& tokens, const TokenizerRecord& tokenizer) {
  if (tokenizer.vocab_size != tokens.vocab_size())
    throw std::invalid_argument(fmt::format("token file '{}': the {} tokenizer's vocabulary {} is not the tokens' {}",
                                            path.string(), tokenizer.name, tokenizer.vocab_size, tokens.vocab_size()));
  const std::string record =
      nlohmann::json{{"name", tokenizer.name}, {"vocab_size", tokenizer.vocab_size}, {"vocab_hash", tokenizer.vocab_hash}}.dump();
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.width = tokens.width();
  h.count = tokens.size();
  h.vocab_size = tokens.vocab_size();
  h.record_bytes = static_cast<std::uint32_t>(record.size());
  AtomicFileWriter out(path);
  out.write(&h, sizeof h);
  out.write(record.data(), record.size());
  out.write(tokens.bytes(), static_cast<std::size_t>(tokens.size() * tokens.width()));
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
