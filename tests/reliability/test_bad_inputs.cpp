// A table of bad inputs fed to the real cllm binary: each must end with a
// non-zero exit status (no signal, no abort, no sanitizer report) and a
// message that names the problem.
#include <gtest/gtest.h>

#include <filesystem>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "run_cllm.h"

namespace cllm::reliability {
namespace {
namespace fs = std::filesystem;

struct BadInput {
  std::string name;
  // Writes the files the case needs into `dir` and returns cllm's arguments.
  std::function<std::vector<std::string>(const ScratchDir& dir)> setup;
  std::vector<std::string> expected;  // substrings of the output
};

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// `args` with each flag of `changes` (flag, value pairs) set: replaced where
// present, appended otherwise.
std::vector<std::string> set_flags(std::vector<std::string> args, const std::vector<std::string>& changes) {
  for (std::size_t i = 0; i < changes.size(); i += 2) {
    const auto at = std::find(args.begin(), args.end(), changes[i]);
    if (at != args.end() && at + 1 != args.end()) {
      *(at + 1) = changes[i + 1];
    } else {
      args.push_back(changes[i]);
      args.push_back(changes[i + 1]);
    }
  }
  return args;
}

// `cllm train` on a good corpus with the tiny model, flags changed as given.
std::function<std::vector<std::string>(const ScratchDir&)> train_with(std::vector<std::string> changes) {
  return [changes](const ScratchDir& d) {
    write_file(d / "corpus.txt", corpus_text());
    return set_flags(concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string()}), changes);
  };
}

// `cllm train --data FILE` where FILE holds `bytes`.
std::function<std::vector<std::string>(const ScratchDir&)> train_on(std::string file, std::string bytes) {
  return [file, bytes](const ScratchDir& d) {
    write_file(d / file, bytes);
    return concat(tiny_train_flags(), {"--data", (d / file).string(), "--out", (d / "run").string()});
  };
}

// `cllm generate --ckpt FILE` where FILE holds `bytes`.
std::function<std::vector<std::string>(const ScratchDir&)> generate_from(std::string bytes) {
  return [bytes](const ScratchDir& d) {
    write_file(d / "w.safetensors", bytes);
    return std::vector<std::string>{"generate", "--ckpt", (d / "w.safetensors").string(), "--tokens", "4"};
  };
}

// The tiny model's valid weights with `edit` applied to the bytes.
std::function<std::vector<std::string>(const ScratchDir&)> generate_from_edited(std::function<void(std::string&)> edit) {
  return [edit](const ScratchDir& d) {
    write_tiny_weights(d / "w.safetensors");
    std::string bytes = read_file(d / "w.safetensors");
    edit(bytes);
    write_file(d / "w.safetensors", bytes);
    return std::vector<std::string>{"generate", "--ckpt", (d / "w.safetensors").string(), "--tokens", "4"};
  };
}

// Offset of the first data byte of a safetensors file.
std::size_t data_start(const std::string& bytes) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  return 8 + static_cast<std::size_t>(n);
}

const std::string kF32Tensor = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

std::vector<BadInput> bad_inputs() {
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk.push_back(static_cast<char>((i * 7919 + 13) % 251));
  std::string tokens3(6, '\0');  // three 2-byte tokens: 0, 0, 0
  const std::string big_token("\x05\x00\xff\x00", 4);  // tokens 5 and 255 with vocab 100
  return {
      // Data files
      {"empty text file", train_on("empty.txt", ""), {"empty.txt", "is empty"}},
      {"binary junk as text", train_on("junk.txt", junk), {"junk.txt", "NUL"}},
      {"text too short for one sequence", train_on("short.txt", "abc"), {"short.txt", "tokens"}},
      {".tok with wrong magic", train_on("bad.tok", token_file_bytes("NOTATOK1", 1, 2, 3, 256, tokens3)),
       {"bad.tok", "magic"}},
      {".tok with unsupported version", train_on("v9.tok", token_file_bytes("CLLMTOK1", 9, 2, 3, 256, tokens3)),
       {"v9.tok", "version 9"}},
      {".tok with width 3", train_on("w3.tok", token_file_bytes("CLLMTOK1", 1, 3, 2, 256, tokens3)),
       {"w3.tok", "width 3"}},
      {".tok whose count lies (truncated)", train_on("trunc.tok", token_file_bytes("CLLMTOK1", 1, 2, 1000000, 256, tokens3)),
       {"trunc.tok", "1000000 tokens"}},
      {".tok with a huge count (overflow)", train_on("huge.tok", token_file_bytes("CLLMTOK1", 1, 2, ~0ull, 256, tokens3)),
       {"huge.tok", "tokens"}},
      {".tok with a token past its vocabulary", train_on("vocab.tok", token_file_bytes("CLLMTOK1", 1, 2, 2, 100, big_token)),
       {"vocab.tok", "not below the vocabulary size 100"}},
      {".tok shorter than its header", train_on("tiny.tok", "CLLMTOK1"), {"tiny.tok", "too short"}},
      {"missing data file", [](const ScratchDir& d) {
         return concat(tiny_train_flags(), {"--data", (d / "nope.txt").string(), "--out", (d / "run").string()});
       }, {"nope.txt", "no such file"}},
      {"directory without text files", [](const ScratchDir& d) {
         fs::create_directories(d / "bin");
         write_file(d / "bin" / "a.dat", std::string("\0\1\2", 3));
         return concat(tiny_train_flags(), {"--data", (d / "bin").string(), "--out", (d / "run").string()});
       }, {"bin", "no non-empty text files"}},
      // Weights files
      {"empty weights file", generate_from(""), {"w.safetensors"}},
      {"binary junk as weights", generate_from(junk), {"w.safetensors", "header"}},
      {"header length past the end of the file", generate_from(safetensors_bytes(1000, "{}", "")), {"w.safetensors", "header"}},
      {"header length 2^63", generate_from(safetensors_bytes(1ull << 63, "{}", "")), {"w.safetensors", "header"}},
      {"header not JSON", generate_from(safetensors_bytes(8, "{oops!!}", "")), {"w.safetensors", "JSON"}},
      {"data offsets past the data", generate_from(safetensors_bytes(kF32Tensor.size(), kF32Tensor, "1234")),
       {"w.safetensors", "x"}},
      {"offsets that do not match the shape",
       generate_from(safetensors_bytes(kF32Tensor.size(), R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678")),
       {"w.safetensors", "x"}},
      {"unknown dtype",
       generate_from(safetensors_bytes(kF32Tensor.size(), R"({"x":{"dtype":"Q99","shape":[2],"data_offsets":[0,8]}})", "12345678")),
       {"w.safetensors", "Q99"}},
      {"truncated weights", generate_from_edited([](std::string& b) { b.resize(b.size() / 2); }), {"w.safetensors"}},
      {"NaN weights", generate_from_edited([](std::string& b) {
         const std::size_t at = data_start(b) + 4;  // second float of the first tensor
         const char nan[4] = {0, 0, static_cast<char>(0xC0), 0x7F};
         b.replace(at, 4, nan, 4);
       }), {"w.safetensors", "NaN"}},
      {"wrong tensor shape", generate_from_edited([](std::string& b) {
         // ln_f.bias is [16]; claim [4,4] (same byte count, wrong shape).
         auto header = nlohmann::json::parse(b.substr(8, data_start(b) - 8));
         header["ln_f.bias"]["shape"] = {4, 4};
         const std::string text = header.dump();
         b = safetensors_bytes(text.size(), text, b.substr(data_start(b)));
       }), {"w.safetensors", "ln_f.bias", "shape"}},
      {"weights path is a directory", [](const ScratchDir& d) {
         fs::create_directories(d / "dir.safetensors");
         return std::vector<std::string>{"train", "--data", "x", "--steps", "1", "--init-from", (d / "dir.safetensors").string()};
       }, {"dir.safetensors", "directory"}},
      {"generate with a missing --ckpt", [](const ScratchDir& d) {
         return std::vector<std::string>{"generate", "--ckpt", (d / "missing").string()};
       }, {"missing", "no such file"}},
      {"generate from an empty run directory", [](const ScratchDir& d) {
         fs::create_directories(d / "emptyrun");
         return std::vector<std::string>{"generate", "--ckpt", (d / "emptyrun").string()};
       }, {"emptyrun", "no complete checkpoint"}},
      // Tokenizer files
      {"gpt2 without its files", train_with({"--tokenizer", "gpt2"}), {"--encoder-json"}},
      {"gpt2 with missing files", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--tokenizer", "gpt2", "--encoder-json",
                                            (d / "encoder.json").string(), "--vocab-bpe", (d / "vocab.bpe").string()});
       }, {"encoder.json", "no such file"}},
      {"gpt2 encoder.json that is junk", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_file(d / "encoder.json", "[1, 2, 3");
         write_file(d / "vocab.bpe", "#version: 0.2\n");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--tokenizer", "gpt2", "--encoder-json",
                                            (d / "encoder.json").string(), "--vocab-bpe", (d / "vocab.bpe").string()});
       }, {"encoder.json"}},
      {"encoder.json is a directory", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         fs::create_directories(d / "encoder.json");
         write_file(d / "vocab.bpe", "#version: 0.2\n");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--tokenizer", "gpt2", "--encoder-json",
                                            (d / "encoder.json").string(), "--vocab-bpe", (d / "vocab.bpe").string()});
       }, {"encoder.json", "directory"}},
      // Output
      {"output under a regular file", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_file(d / "file", "x");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "file" / "run").string()});
       }, {"file/run"}},
      {"tokenize to an unwritable path", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_file(d / "file", "x");
         return std::vector<std::string>{"tokenize", "--input", (d / "corpus.txt").string(), "--out", (d / "file" / "out.tok").string()};
       }, {"out.tok"}},
      // Flags
      {"--threads 0", train_with({"--threads", "0"}), {"--threads", "0"}},
      {"--threads 100000", train_with({"--threads", "100000"}), {"--threads", "100000"}},
      {"--layers 0", train_with({"--layers", "0"}), {"layers"}},
      {"--dim -1", train_with({"--dim", "-1"}), {"dim"}},
      {"--batch 0", train_with({"--batch", "0"}), {"--batch", "0"}},
      {"--accum -1", train_with({"--accum", "-1"}), {"--accum"}},
      {"--accum 10^12", train_with({"--accum", "1000000000000"}), {"--accum"}},
      {"--steps -5", train_with({"--steps", "-5"}), {"--steps"}},
      {"--steps 0 without --epochs", train_with({"--steps", "0"}), {"--steps"}},
      {"unknown flag", train_with({"--frobnicate", "3"}), {"--frobnicate"}},
      {"--heads not dividing --dim", train_with({"--heads", "3"}), {"heads", "3"}},
      {"--seq beyond --context", train_with({"--seq", "64"}), {"--seq 64", "context 16"}},
      {"nonsense --data-order", train_with({"--data-order", "sideways"}), {"sideways"}},
      {"--lr NaN", train_with({"--lr", "nan"}), {"learning rate", "nan"}},
      {"--vocab below the tokenizer's", train_with({"--vocab", "10"}), {"--vocab 10"}},
      {"--skip-spikes negative", train_with({"--skip-spikes", "-1"}), {"--skip-spikes"}},
      {"--on-save-error nonsense", train_with({"--on-save-error", "retry"}), {"--on-save-error", "retry"}},
      {"existing run without --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         write_tiny_weights(d / "model.safetensors");
         fs::create_directories(d / "run" / "checkpoints" / "step_00000001");
         fs::copy_file(d / "model.safetensors", d / "run" / "checkpoints" / "step_00000001" / "model.safetensors");
         fs::copy_file(d / "model.safetensors", d / "run" / "checkpoints" / "step_00000001" / "state.safetensors");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string()});
       }, {"already holds checkpoints", "--resume"}},
      {"corrupt checkpoint on --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         const fs::path ckpt = d / "run" / "checkpoints" / "step_00000001";
         fs::create_directories(ckpt);
         write_tiny_weights(ckpt / "model.safetensors");
         write_file(ckpt / "state.safetensors", "garbage that is not a safetensors file");
         return concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--resume"});
       }, {"state.safetensors"}},
      {"checkpoint of another model on --resume", [](const ScratchDir& d) {
         write_file(d / "corpus.txt", corpus_text());
         const fs::path ckpt = d / "run" / "checkpoints" / "step_00000001";
         fs::create_directories(ckpt);
         write_tiny_weights(ckpt / "model.safetensors");
         write_tiny_weights(ckpt / "state.safetensors");
         return set_flags(concat(tiny_train_flags(), {"--data", (d / "corpus.txt").string(), "--out", (d / "run").string(), "--resume"}),
                          {"--dim", "32"});
       }, {"model.safetensors", "config differs"}},
      {"eval with a missing --data", [](const ScratchDir& d) {
         write_tiny_weights(d / "w.safetensors");
         return std::vector<std::string>{"eval", "--ckpt", (d / "w.safetensors").string(), "--data", (d / "none.txt").string()};
       }, {"none.txt", "no such file"}},
      {"tokenize a missing input", [](const ScratchDir& d) {
         return std::vector<std::string>{"tokenize", "--input", (d / "none.txt").string(), "--out", (d / "out.tok").string()};
       }, {"none.txt"}},
  };
}

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, FailsCleanlyWithAClearMessage) {
  const BadInput& c = GetParam();
  const ScratchDir dir("bad_" + std::to_string(std::hash<std::string>{}(c.name) % 1000000));
  const auto args = c.setup(dir);
  const RunResult r = run_cllm(args, {}, 120);
  EXPECT_TRUE(clean_failure(r)) << c.name << ": " << describe(r) << "\n" << r.output;
  for (const std::string& part : c.expected)
    EXPECT_NE(r.output.find(part), std::string::npos) << c.name << ": '" << part << "' not in:\n" << r.output;
}

std::string case_name(const ::testing::TestParamInfo<BadInput>& info) {
  std::string out;
  for (char ch : info.param.name) out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return std::to_string(info.index) + "_" + out;
}

INSTANTIATE_TEST_SUITE_P(Table, BadInputTest, ::testing::ValuesIn(bad_inputs()), case_name);

TEST(BadInputTable, HasAtLeast25Cases) { EXPECT_GE(bad_inputs().size(), 25u); }

}  // namespace
}  // namespace cllm::reliability

namespace cllm::reliability {
namespace {

// `cllm info` names what a run would use, and a forced backend the build
// lacks or does not know is one clear error.
TEST(CllmInfo, NamesTheChosenSimdTargetAndSgemmBackend) {
  const RunResult r = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "naive", 1); });
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chosen target    : "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CLLM_GEMM        : naive"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chosen sgemm     : naive"), std::string::npos) << r.output;
}

TEST(CllmInfo, UnknownSgemmBackendIsAClearError) {
  const RunResult r = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "bogus", 1); });
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find("CLLM_GEMM='bogus' is not a sgemm backend"), std::string::npos) << r.output;
}

// How far the onednn backend's brgemm path reaches beyond attention
// (sgemm_onednn.cpp) is set by CLLM_ONEDNN_MATMUL_MAX; `cllm info` shows
// it, nonsense is an error.
TEST(CllmInfo, OnednnMatmulLimitIsShownAndNonsenseIsAClearError) {
  const RunResult plain = run_cllm({"info"}, [] { ::setenv("CLLM_GEMM", "onednn", 1); });
  if (plain.exit_code != 0 && plain.output.find("no such sgemm backend") != std::string::npos)
    GTEST_SKIP() << "this build has no onednn backend";
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find(" (brgemm matmul for attention and A B^T of 16+ rows, dnnl_sgemm for the rest), kernels for "),
            std::string::npos)
      << plain.output;
  const RunResult moved = run_cllm({"info"}, [] {
    ::setenv("CLLM_GEMM", "onednn", 1);
    ::setenv("CLLM_ONEDNN_MATMUL_MAX", "1e30", 1);
  });
  ASSERT_EQ(moved.exit_code, 0) << moved.output;
  EXPECT_NE(moved.output.find("brgemm matmul for attention, A B^T of 16+ rows and up to 1e+30 multiply-adds"), std::string::npos)
      << moved.output;
  const RunResult bad = run_cllm({"info"}, [] {
    ::setenv("CLLM_GEMM", "onednn", 1);
    ::setenv("CLLM_ONEDNN_MATMUL_MAX", "-5", 1);
  });
  EXPECT_TRUE(clean_failure(bad)) << describe(bad) << "\n" << bad.output;
  EXPECT_NE(bad.output.find("CLLM_ONEDNN_MATMUL_MAX='-5' is not a number of multiply-adds >= 0"), std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace cllm::reliability
