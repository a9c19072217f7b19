// What a newcomer meets in the first hour, through the real cllm binary:
// progress on a terminal, printable generated text, tokenizers recorded in
// token files and checkpoints, GPT-2's vocabulary found without paths.
#include <gtest/gtest.h>

#include <cstdint>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "fixtures.h"
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
  const std::regex progress(R"(\rstep +[1-3]/4 \| \d+ tok/s \| ETA \d+s\x1b\[K)");
  const std::regex last_step(R"(step +4/4 \| loss .* \| \d+s, ETA 0s\r?\n)");

  auto on_terminal = args;
  on_terminal.insert(on_terminal.end(), {"--out", (dir / "tty").string()});
  const RunResult tty = run_cllm_on_terminal(on_terminal, 120);
  ASSERT_EQ(tty.exit_code, 0) << tty.output;
  EXPECT_TRUE(std::regex_search(tty.output, progress)) << tty.output;
  EXPECT_TRUE(std::regex_search(tty.output, last_step)) << tty.output;
  EXPECT_NE(tty.output.find("\r\x1b[K"), std::string::npos) << "the progress line is not erased:\n" << tty.output;

  auto piped = args;
  piped.insert(piped.end(), {"--out", (dir / "pipe").string()});
  const RunResult pipe = run_cllm(piped, {}, 120);
  ASSERT_EQ(pipe.exit_code, 0) << pipe.output;
  EXPECT_EQ(pipe.output.find('\r'), std::string::npos) << pipe.output;
  EXPECT_EQ(pipe.output.find("\x1b"), std::string::npos) << pipe.output;
  EXPECT_TRUE(std::regex_search(pipe.output, last_step)) << pipe.output;
}

// An untrained byte-level model emits random bytes, so invalid UTF-8: printed
// it is valid UTF-8, and --raw writes exactly what the model generated.
TEST(FirstHour, GenerateWritesValidUtf8AndRawWritesTheExactBytes) {
  const ScratchDir dir("generate_utf8");
  const fs::path weights = dir / "w.safetensors";
  write_tiny_weights(weights);
  const std::vector<std::string> args = {"generate", "--ckpt", weights.string(), "--prompt", "ab", "--tokens", "14",
                                         "--temperature", "1", "--seed", "3"};
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

}  // namespace
}  // namespace cllm::reliability
