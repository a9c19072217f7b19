#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "data/file_io.h"

namespace cllm::data {
namespace fs = std::filesystem;

namespace {

// The status of `path`; throws naming it when there is nothing there.
fs::file_status existing(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw file_error(path, "no such file or directory");
  return status;
}

// Receives tokens as a text is tokenized.
using TokenSink = std::function<void(std::span<const std::int32_t>)>;

// The files read and skipped of a text input (see LoadedTokens).
struct TextFiles {
  std::vector<fs::path> files, skipped;
};

// Reads `file` in pieces of chunk_bytes: consume(text, at_end) gets the text
// not consumed yet (what it left of the previous piece, then the new bytes)
// and returns how much of it it used, all of it at the end.
template <typename Consume>
void read_in_pieces(const InputFile& file, std::size_t chunk_bytes, Consume consume) {
  std::string text;
  for (std::uint64_t offset = 0; offset < file.size();) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_bytes, file.size() - offset));
    const std::size_t kept = text.size();
    text.resize(kept + n);
    file.read_at(offset, text.data() + kept, n);
    offset += n;
    text.erase(0, consume(std::string_view(text), offset == file.size()));
  }
}

// Why the text of `file` is not acceptable input for the tokenizer, or ""
// when it is: the first NUL byte, else the first invalid UTF-8 (gpt2).
std::string text_problem(const InputFile& file, const Tokenizer& tokenizer, std::size_t chunk_bytes) {
  std::optional<std::uint64_t> nul, bad_utf8;
  std::uint64_t at = 0;  // offset of the text consumed next
  read_in_pieces(file, chunk_bytes, [&](std::string_view text, bool at_end) {
    if (!at_end) text = text.substr(0, utf8_cut(text));  // a piece never ends inside a character
    if (!nul)
      if (const std::size_t p = text.find('\0'); p != std::string_view::npos) nul = at + p;
    if (tokenizer.requires_utf8() && !bad_utf8)
      if (const auto bad = find_invalid_utf8(text)) bad_utf8 = at + *bad;
    at += text.size();
    return text.size();
  });
  if (nul) return fmt::format("contains a NUL byte at offset {}: binary data, not text", *nul);
  if (bad_utf8)
    return fmt::format("is not valid UTF-8 (first bad byte at offset {}), which the {} tokenizer needs", *bad_utf8,
                       tokenizer.name());
  return "";
}

// Hands the tokens of `file` to sink piece by piece, each piece cut where the
// tokenizer allows (Tokenizer::stream_cut): the same tokens as encoding the
// whole text. A piece grows past chunk_bytes until it holds such a place.
void encode_file(const InputFile& file, const Tokenizer& tokenizer, std::size_t chunk_bytes, const TokenSink& sink) {
  read_in_pieces(file, chunk_bytes, [&](std::string_view text, bool at_end) {
    const std::size_t n = at_end ? text.size() : tokenizer.stream_cut(text);
    if (n > 0) sink(tokenizer.encode(text.substr(0, n)));
    return n;
  });
}

// The regular files directly in `dir` (symlinks followed), sorted by name,
// each target once.
std::vector<fs::path> directory_files(const fs::path& dir) {
  std::vector<fs::path> entries;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code status_ec;
    if (fs::is_regular_file(it->path(), status_ec)) entries.push_back(it->path());
  }
  if (ec) throw file_error(dir, "cannot list directory: " + ec.message());
  std::sort(entries.begin(), entries.end());
  std::set<fs::path> targets;
  std::vector<fs::path> files;
  for (const fs::path& p : entries) {
    std::error_code canon_ec;
    const fs::path target = fs::canonical(p, canon_ec);
    if (targets.insert(canon_ec ? p : target).second) files.push_back(p);
  }
  return files;
}

std::string tokenizer_vocab_mismatch(std::uint32_t file_vocab, const Tokenizer& tokenizer) {
  return fmt::format("token file has vocabulary size {} but the {} tokenizer has {} (tokenized with another "
                     "tokenizer?)", file_vocab, tokenizer.name(), tokenizer.vocab_size());
}

// The text file or directory at `path` (see load_tokens), its tokens handed
// to sink; each file is read twice in pieces (checked, then encoded), so
// memory does not grow with the text.
TextFiles tokenize_text(const fs::path& path, const Tokenizer& tokenizer, std::size_t chunk_bytes,
                        const TokenSink& sink) {
  if (chunk_bytes == 0) throw std::invalid_argument("tokenize: the chunk size must be positive");
  TextFiles text;
  if (!fs::is_directory(existing(path))) {
    const InputFile file = InputFile::open(path);
    if (file.size() == 0) throw file_error(path, "is empty");
    if (const std::string problem = text_problem(file, tokenizer, chunk_bytes); !problem.empty())
      throw file_error(path, problem);
    encode_file(file, tokenizer, chunk_bytes, sink);
    text.files.push_back(path);
    return text;
  }
  const std::vector<std::int32_t> separator = tokenizer.document_separator();
  for (const fs::path& name : directory_files(path)) {
    const InputFile file = InputFile::open(name);
    if (file.size() == 0) continue;
    if (!text_problem(file, tokenizer, chunk_bytes).empty()) {
      text.skipped.push_back(name);
      continue;
    }
    if (!text.files.empty()) sink(separator);
    encode_file(file, tokenizer, chunk_bytes, sink);
    text.files.push_back(name);
  }
  if (text.files.empty())
    throw file_error(path, fmt::format("directory has no non-empty text files ({} skipped as binary{})",
                                       text.skipped.size(), tokenizer.requires_utf8() ? " or not UTF-8" : ""));
  return text;
}

LoadedTokens read_tokens(const fs::path& path, const Tokenizer& tokenizer) {
  const auto vocab = static_cast<std::uint32_t>(tokenizer.vocab_size());
  if (!fs::is_directory(existing(path)) && (path.extension() == ".tok" || is_token_file(path))) {
    if (const auto recorded = read_token_file_tokenizer(path)) check_tokenizer(path, *recorded, tokenizer);
    LoadedTokens loaded{read_token_file(path), {path}, {}};
    if (loaded.tokens.vocab_size() != vocab)
      throw file_error(path, tokenizer_vocab_mismatch(loaded.tokens.vocab_size(), tokenizer));
    if (loaded.tokens.size() == 0) throw file_error(path, "token file holds no tokens");
    return loaded;
  }
  LoadedTokens loaded{TokenArray(vocab), {}, {}};
  TextFiles text = tokenize_text(path, tokenizer, kTokenizeChunkBytes,
                                 [&](std::span<const std::int32_t> tokens) { loaded.tokens.append(tokens); });
  loaded.files = std::move(text.files);
  loaded.skipped = std::move(text.skipped);
  return loaded;
}

}  // namespace

LoadedTokens load_tokens(const fs::path& path, const Tokenizer& tokenizer) {
  try {
    return read_tokens(path, tokenizer);
  } catch (const std::bad_alloc&) {
    throw file_error(path, "out of memory holding its tokens (text is tokenized into memory): tokenize it into a "
                           "token file with `cllm tokenize` (token files are mapped, not read whole), or free memory");
  }
}

TokenizedText tokenize_to_file(const fs::path& input, const Tokenizer& tokenizer, const fs::path& out,
                               std::size_t chunk_bytes) {
  if (!fs::is_directory(existing(input)) && is_token_file(input)) throw file_error(input, "is already a token file");
  // Created at the first tokens: an input that cannot be read fails before
  // anything is written, and a directory is listed before out's temporary
  // can appear in it.
  std::optional<TokenFileWriter> writer;
  TextFiles text = tokenize_text(input, tokenizer, chunk_bytes, [&](std::span<const std::int32_t> tokens) {
    if (!writer) writer.emplace(out, tokenizer.record());
    writer->append(tokens);
  });
  // tokenize_text fails on an input without text, so there is a writer.
  writer->commit();
  return {writer->size(), std::move(text.files), std::move(text.skipped)};
}

Dataset Dataset::load(const DatasetOptions& options, const Tokenizer& tokenizer) {
  Dataset ds;
  LoadedTokens data = load_tokens(options.data, tokenizer);
  ds.skipped = std::move(data.skipped);
  auto all = std::make_shared<const TokenArray>(std::move(data.tokens));
  const std::uint64_t n = all->size();
  const std::string name = options.data.string();
  if (!options.val_data.empty()) {
    LoadedTokens val = load_tokens(options.val_data, tokenizer);
    ds.skipped.insert(ds.skipped.end(), val.skipped.begin(), val.skipped.end());
    const std::uint64_t n_val = val.tokens.size();
    ds.train = {all, 0, n, fmt::format("training data '{}'", name)};
    ds.validation = {std::make_shared<const TokenArray>(std::move(val.tokens)), 0, n_val,
                     fmt::format("validation data '{}'", options.val_data.string())};
    return ds;
  }
  if (!(options.val_fraction >= 0.0 && options.val_fraction < 1.0))
    throw std::invalid_argument(fmt::format("validation fraction {} is not in [0, 1)", options.val_fraction));
  const auto n_val = static_cast<std::uint64_t>(std::floor(static_cast<double>(n) * options.val_fraction));
  ds.train = {all, 0, n - n_val, fmt::format("training split of '{}'", name)};
  ds.validation = {all, n - n_val, n_val,
                   fmt::format("validation split of '{}' (last {:g}% of its tokens)", name, options.val_fraction * 100)};
  return ds;
}

DataOrder parse_data_order(std::string_view name) {
  if (name == "sequential") return DataOrder::sequential;
  if (name == "shuffled") return DataOrder::shuffled;
  throw std::invalid_argument(fmt::format("unknown data order '{}' (expected shuffled or sequential)", name));
}

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A keyed bijection of [0, size): a balanced Feistel network over the
// smallest even number of bits covering size, cycle-walked back into range
// (at most ~4 rounds of walking on average since 2^bits < 4 * size).
std::uint64_t permute(std::uint64_t x, std::uint64_t size, std::uint64_t key) {
  unsigned bits = 2;
  while (bits < 64 && (std::uint64_t{1} << bits) < size) bits += 2;
  const unsigned half = bits / 2;
  const std::uint64_t mask = (std::uint64_t{1} << half) - 1;
  do {
    std::uint64_t left = x >> half, right = x & mask;
    for (std::uint64_t round = 0; round < 4; ++round) {
      const std::uint64_t f = splitmix64(right ^ key ^ (round * 0xD1B54A32D192ED03ull)) & mask;
      const std::uint64_t new_right = left ^ f;
      left = right;
      right = new_right;
    }
    x = (left << half) | right;
  } while (x >= size);
  return x;
}

}  // namespace

BatchSampler::BatchSampler(TokenSpan tokens, int seq_len, DataOrder order, std::uint64_t seed)
    : tokens_(std::move(tokens)), seq_len_(seq_len), order_(order), seed_(seed), windows_(0) {
  if (seq_len < 1) throw std::invalid_argument(fmt::format("sequence length {} must be at least 1", seq_len));
  if (!tokens_.tokens || tokens_.begin + tokens_.size > tokens_.tokens->size())
    throw std::invalid_argument("batch sampler: token span outside its array");
  const auto t = static_cast<std::uint64_t>(seq_len);
  if (tokens_.size < t + 1)
    throw std::runtime_error(fmt::format("{} has {} tokens; sequences of {} tokens need at least {}",
                                         tokens_.source, tokens_.size, seq_len, t + 1));
  windows_ = (tokens_.size - 1) / t;
}

std::uint64_t BatchSampler::window_start(std::uint64_t sequence_index) const {
  const std::uint64_t epoch = sequence_index / windows_;
  const std::uint64_t position = sequence_index % windows_;
  const std::uint64_t window =
      order_ == DataOrder::sequential ? position : permute(position, windows_, splitmix64(seed_ ^ splitmix64(epoch)));
  return window * static_cast<std::uint64_t>(seq_len_);
}

void BatchSampler::fill(std::uint64_t sequence_index, std::int32_t* inputs, std::int32_t* targets) const {
  const std::uint64_t start = tokens_.begin + window_start(sequence_index);
  const auto t = static_cast<std::size_t>(seq_len_);
  tokens_.tokens->copy_to(start, t, inputs);
  tokens_.tokens->copy_to(start + 1, t, targets);
}

}  // namespace cllm::data
