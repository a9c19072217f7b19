// Training data: tokens from a text file, a directory of text files or a .tok
// file, split into training and validation ranges, and the sampler that cuts
// them into sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/token_file.h"
#include "data/tokenizer.h"

namespace cllm::data {

// The tokens of `path`, which is one of:
//  - a .tok file (by extension or magic): validated and mapped (read_token_file);
//    the tokenizer it records (version 2) must be `tokenizer` (see
//    check_tokenizer), and its vocabulary size must equal the tokenizer's;
//  - a text file: tokenized into memory, read in pieces (see
//    tokenize_to_file); an error naming the file when it contains a NUL byte
//    (binary) or, when the tokenizer requires it (gpt2), invalid UTF-8;
//  - a directory: the regular files directly in it (symlinks followed, each
//    target taken once, subdirectories not descended), sorted by name,
//    tokenized and concatenated with tokenizer.document_separator() between
//    files. Files that are not text (NUL bytes, or invalid UTF-8 for gpt2)
//    are skipped and listed in `skipped` (e.g. fortune's .dat indexes);
//    an error when no text file remains.
// Empty results (no tokens) are an error naming the path.
struct LoadedTokens {
  TokenArray tokens;
  std::vector<std::filesystem::path> files;    // files read, in order
  std::vector<std::filesystem::path> skipped;  // directory entries skipped as not text
};
LoadedTokens load_tokens(const std::filesystem::path& path, const Tokenizer& tokenizer);

// The pieces text is read in to be tokenized.
inline constexpr std::size_t kTokenizeChunkBytes = 4 << 20;

// `cllm tokenize`: the text file or directory `input` (as load_tokens reads
// them) tokenized into the .tok file `out` (TokenFileWriter) as it is read,
// so memory does not grow with the input. Each file is read twice in pieces
// of about chunk_bytes: once to check it is text, then to encode it, each
// piece cut where the tokenizer says no continuation can change its tokens
// (Tokenizer::stream_cut), so the tokens are those of encoding each whole
// file; a piece grows past chunk_bytes until it holds such a place. Throws
// as load_tokens does, and naming `input` when it is a token file already.
struct TokenizedText {
  std::uint64_t tokens = 0;
  std::vector<std::filesystem::path> files;    // as LoadedTokens
  std::vector<std::filesystem::path> skipped;  // as LoadedTokens
};
TokenizedText tokenize_to_file(const std::filesystem::path& input, const Tokenizer& tokenizer,
                               const std::filesystem::path& out, std::size_t chunk_bytes = kTokenizeChunkBytes);

// A contiguous range of a shared token array.
struct TokenSpan {
  std::shared_ptr<const TokenArray> tokens;
  std::uint64_t begin = 0;
  std::uint64_t size = 0;
  std::string source;  // for messages, e.g. "training split of 'data.txt'"
};

struct DatasetOptions {
  std::filesystem::path data;
  std::filesystem::path val_data;  // empty: split validation off `data`
  double val_fraction = 0.1;       // used without val_data; in [0, 1)
};

// Training and validation tokens. Without val_data the validation range is
// the last floor(n * val_fraction) tokens of `data` and training the rest;
// with it, training is all of `data` and validation all of `val_data`.
// validation.size == 0 when val_fraction is 0.
struct Dataset {
  TokenSpan train;
  TokenSpan validation;
  std::vector<std::filesystem::path> skipped;  // see LoadedTokens
  static Dataset load(const DatasetOptions& options, const Tokenizer& tokenizer);
};

enum class DataOrder { sequential, shuffled };
// "sequential" or "shuffled"; std::invalid_argument otherwise.
DataOrder parse_data_order(std::string_view name);

// Cuts a token range into sequences of T inputs and T targets (windows of
// T + 1 tokens). With n tokens there are E = floor((n - 1) / T) windows per
// epoch, window k starting at k * T, so one epoch predicts tokens 1 .. E*T
// once (the last (n - 1) mod T tokens are not predicted).
//
// Sequence i (i = (step * K + micro_batch) * B + row) is in epoch i / E at
// position p = i mod E, and uses window
//   sequential: k = p                       -> start (i * T) mod (E * T)
//   shuffled:   k = permutation(seed, epoch)(p)
// The shuffled permutation is a keyed bijection of [0, E) (Feistel network
// with cycle walking), a pure function of (seed, epoch, p): any thread can
// compute any sequence without shared state, and each epoch visits every
// window exactly once. fill() is const and thread-safe.
class BatchSampler {
 public:
  // Throws std::runtime_error naming tokens.source when size < T + 1, and
  // std::invalid_argument when T < 1.
  BatchSampler(TokenSpan tokens, int seq_len, DataOrder order, std::uint64_t seed);

  int seq_len() const { return seq_len_; }
  DataOrder order() const { return order_; }
  std::uint64_t sequences_per_epoch() const { return windows_; }
  // Start of sequence i's window, relative to the span's begin.
  std::uint64_t window_start(std::uint64_t sequence_index) const;
  // inputs[t] = token[start + t], targets[t] = token[start + t + 1], t < T.
  void fill(std::uint64_t sequence_index, std::int32_t* inputs, std::int32_t* targets) const;

 private:
  TokenSpan tokens_;
  int seq_len_;
  DataOrder order_;
  std::uint64_t seed_;
  std::uint64_t windows_;
};

}  // namespace cllm::data
