// End-to-end training through the library entry point run_training().
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/safetensors.h"
#include "kernels/sgemm.h"
#include "model/gpt.h"
#include "parallel/worker_pool.h"
#include "train/checkpoint.h"
#include "train/progress.h"
#include "train/sampling.h"
#include "support/bf16_skip.h"
#include "support/rerun.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using cllm::train::TrainOptions;

namespace {

// A small corpus with structure a tiny model learns within a few dozen steps.
fs::path make_corpus(const fs::path& dir) {
  fs::create_directories(dir);
  const fs::path path = dir / "corpus.txt";
  std::ofstream out(path);
  std::mt19937 rng(7);
  const char* words[] = {"alpha", "beta", "gamma", "delta", "one", "two", "three", "cat", "dog", "the"};
  for (int line = 0; line < 400; ++line) {
    for (int w = 0; w < 8; ++w) out << words[rng() % 10] << (w == 7 ? ".\n" : " ");
  }
  return path;
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parametrized: "Test/param"
    root_ = fs::temp_directory_path() / ("cllm_train_" + name);
    fs::remove_all(root_);
    corpus_ = make_corpus(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainOptions tiny(const std::string& out_name) const {
    TrainOptions o;
    o.data = corpus_;
    o.model = {0, 2, 32, 4, 32};
    o.batch = 4;
    o.accum = 4;
    o.steps = 5;
    o.lr = 3e-3f;
    o.min_lr = 3e-4f;
    o.warmup = 2;
    o.threads = 1;
    o.sample_tokens = 0;
    o.precision = "fp32";  // the tolerances below are f32 rounding's; tiny_bf16 for mixed precision
    o.out = root_ / out_name;
    return o;
  }
  // The same run with bf16 products (callers skip, visibly, without native bf16).
  TrainOptions tiny_bf16(const std::string& out_name) const {
    TrainOptions o = tiny(out_name);
    o.precision = "bf16";
    return o;
  }
  static std::vector<float> final_params(const fs::path& out) {
    const auto ckpt = cllm::train::CheckpointStore(out).latest();
    EXPECT_TRUE(ckpt.has_value());
    return cllm::train::load_weights(ckpt->dir / "model.safetensors").params;
  }
  static float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float max_abs = 0, max_diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      max_abs = std::max(max_abs, std::abs(a[i]));
      max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
    }
    return max_diff / max_abs;
  }

  // `runs` deterministic runs of o, each in its own directory, end bitwise equal.
  static void expect_deterministic_runs_repeat(TrainOptions o, int runs) {
    o.deterministic = true;
    const fs::path out = o.out;
    std::vector<float> first;
    for (int run = 0; run < runs; ++run) {
      o.out = out.string() + std::to_string(run);
      cllm::train::run_training(o);
      const auto p = final_params(o.out);
      if (run == 0) first = p;
      else EXPECT_EQ(p, first) << "run " << run;
    }
  }
  // full, deterministic, against the same run stopped after `stop` steps and resumed.
  void expect_resume_equals_uninterrupted(TrainOptions full, std::size_t stop) const {
    full.deterministic = true;
    cllm::train::run_training(full);
    TrainOptions part = full;
    part.out = root_ / "parts";
    part.stop_after = stop;
    const auto first = cllm::train::run_training(part);
    EXPECT_TRUE(first.stopped_early);
    EXPECT_EQ(first.steps_done, stop);
    part.resume = true;
    part.stop_after = 0;
    const auto second = cllm::train::run_training(part);
    EXPECT_EQ(second.first_step, stop);
    EXPECT_EQ(second.steps_done, full.steps);
    EXPECT_EQ(final_params(part.out), final_params(full.out));
  }

  fs::path root_, corpus_;
};

TEST_F(TrainTest, LossFalls) {
  TrainOptions o = tiny("run");
  o.steps = 60;
  o.threads = 2;
  const auto s = cllm::train::run_training(o);
  EXPECT_EQ(s.steps_done, 60u);
  EXPECT_LT(s.final_loss, 2.6);  // from ln(256) = 5.55
  EXPECT_GT(s.val_loss, 0.0);
  EXPECT_LT(s.val_loss, 2.8);
  EXPECT_TRUE(fs::exists(o.out / "metrics.jsonl"));
}

// A step's shape: whole micro-batches (4 of 4 sequences, at least one per
// lane on 4 threads), or one micro-batch of 5 sequences that the trainer
// splits over the lanes into uneven pieces (3 + 2 on 2 lanes, 2 + 2 + 1 on 3).
struct BatchShape {
  const char* name;
  std::size_t accum;
  int batch;
};
void PrintTo(const BatchShape& shape, std::ostream* out) { *out << shape.name; }  // stable CTest names

class BatchShapeTest : public TrainTest, public ::testing::WithParamInterface<BatchShape> {
 protected:
  TrainOptions shaped(const std::string& out_name) const {
    TrainOptions o = tiny(out_name);
    o.accum = GetParam().accum;
    o.batch = GetParam().batch;
    return o;
  }
};

INSTANTIATE_TEST_SUITE_P(Shapes, BatchShapeTest,
                         ::testing::Values(BatchShape{"WholeMicroBatches", 4, 4}, BatchShape{"SplitMicroBatch", 1, 5}),
                         [](const auto& shape) { return std::string(shape.param.name); });

// 2 and 4 threads take the dynamic queue (as many lanes as cores), 3 the
// fixed assignment (3 lanes whatever the cores). The lanes sum the gradient
// in another order than one thread, and AdamW can turn the rounding of a nearly
// zero gradient into an update of up to lr: whole micro-batches on 2
// dynamic lanes ended up to 1.2e-5 apart after 5 steps here, as before the split.
TEST_P(BatchShapeTest, ThreadCountDoesNotChangeTheResult) {
  TrainOptions one = shaped("t1");
  cllm::train::run_training(one);
  const std::vector<float> reference = final_params(one.out);
  for (const std::size_t threads : {2u, 3u, 4u}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    TrainOptions o = shaped("t" + std::to_string(threads));
    o.threads = threads;
    o.deterministic = threads == 3;
    cllm::train::run_training(o);
    EXPECT_LT(max_rel_diff(reference, final_params(o.out)), 2e-5f);
  }
}

TEST_P(BatchShapeTest, DeterministicModeIsBitwiseRepeatable) {
  TrainOptions o = shaped("det");
  o.threads = 4;
  expect_deterministic_runs_repeat(o, 3);
}

TEST_P(BatchShapeTest, StopAndResumeEqualsUninterrupted) {
  TrainOptions full = shaped("full");
  full.steps = 8;
  full.threads = 3;
  expect_resume_equals_uninterrupted(full, 3);
}

// The default batch (--accum 1, --batch 8) on 2 threads: the micro-batch is
// split into a piece of 4 sequences per lane, and metrics.jsonl shows each
// lane's work items: both lanes compute. The fixed assignment gives each
// lane one item every step; the dynamic queue needs 2 cores for 2 lanes.
TEST_F(TrainTest, TheDefaultBatchKeepsBothLanesComputing) {
  for (const bool deterministic : {true, false}) {
    SCOPED_TRACE(deterministic ? "deterministic" : "dynamic queue");
    if (!deterministic && cllm::parallel::available_cores() < 2) {
      std::cout << "dynamic case skipped: this process may use 1 core, so there is 1 lane\n";
      continue;
    }
    TrainOptions o;
    o.data = corpus_;
    o.model = {0, 2, 64, 4, 64};  // pieces of a few ms: long enough for both lanes to take one
    o.steps = 12;
    o.threads = 2;
    o.deterministic = deterministic;
    o.sample_tokens = 0;
    o.precision = "fp32";
    o.out = root_ / (deterministic ? "det" : "dynamic");
    testing::internal::CaptureStdout();
    cllm::train::run_training(o);
    const std::string out = testing::internal::GetCapturedStdout();
    EXPECT_NE(out.find("1 micro-batches x 8 seqs x 64 tokens = 512 tokens/step, split into 2 work items of 4 seqs over 2 lanes;"),
              std::string::npos) << out;
    EXPECT_NE(out.find("work items per lane"), std::string::npos) << out;

    std::ifstream metrics(o.out / "metrics.jsonl");
    std::vector<std::size_t> per_lane(2, 0);
    int steps = 0;
    for (std::string text; std::getline(metrics, text);) {
      const auto record = nlohmann::json::parse(text);
      if (!record.contains("items_per_lane")) continue;  // eval lines
      const auto items = record["items_per_lane"].get<std::vector<std::size_t>>();
      ASSERT_EQ(items.size(), 2u) << text;
      EXPECT_EQ(items[0] + items[1], 2u) << text;
      if (deterministic) {
        EXPECT_EQ(items, (std::vector<std::size_t>{1, 1})) << text;
      }
      per_lane[0] += items[0], per_lane[1] += items[1];
      ++steps;
    }
    EXPECT_EQ(steps, 12);
    EXPECT_GT(per_lane[0], 0u);
    EXPECT_GT(per_lane[1], 0u) << "lane 1 never computed";
  }
}


TEST_F(TrainTest, Bf16TrainsLikeFp32) {
  SKIP_WITHOUT_NATIVE_BF16();
  TrainOptions f = tiny("f32"), h = tiny_bf16("bf16");
  f.steps = h.steps = 40;
  f.threads = h.threads = 2;
  const auto sf = cllm::train::run_training(f), sh = cllm::train::run_training(h);
  EXPECT_LT(sh.final_loss, 3.0);  // from ln(256) = 5.55
  EXPECT_NEAR(sh.val_loss, sf.val_loss, 0.05 * sf.val_loss);
  const float diff = max_rel_diff(final_params(f.out), final_params(h.out));
  EXPECT_GT(diff, 0.0f) << "bf16 products should round differently";
  EXPECT_LT(diff, 0.1f);
}

TEST_F(TrainTest, Bf16DeterministicModeIsBitwiseRepeatable) {
  SKIP_WITHOUT_NATIVE_BF16();
  TrainOptions o = tiny_bf16("det");
  o.threads = 3;
  expect_deterministic_runs_repeat(o, 2);
}

// The bf16 weight copy is made again from the checkpoint's f32 weights on
// resume: the same bits AdamW's pass would have written.
TEST_F(TrainTest, Bf16StopAndResumeEqualsUninterrupted) {
  SKIP_WITHOUT_NATIVE_BF16();
  TrainOptions full = tiny_bf16("full");
  full.steps = 6;
  full.threads = 2;
  expect_resume_equals_uninterrupted(full, 2);
}

// A CPU without native bf16, as oneDNN's ISA limit makes it look (the child
// process below): bf16 is one clear error, auto trains in fp32.
TEST_F(TrainTest, Bf16WithoutTheCpuForItIsAClearError) {
  if (std::getenv("ONEDNN_MAX_CPU_ISA") == nullptr) {
    const auto child = cllm::test::rerun_this_program("ONEDNN_MAX_CPU_ISA=AVX512_CORE",
                                                      "TrainTest.Bf16WithoutTheCpuForItIsAClearError");
    EXPECT_TRUE(child.passed(1)) << child.command << "\n" << child.output;
    return;
  }
  ASSERT_FALSE(cllm::kernels::bf16_support().native);
  TrainOptions o = tiny_bf16("nobf16");
  o.steps = 1;
  o.warmup = 0;
  try {
    cllm::train::run_training(o);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--precision bf16: this CPU has no native bf16"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("neither AMX-BF16 nor AVX512_BF16"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cllm::model::choose_precision("auto").precision, cllm::model::Precision::fp32);
  o.precision = "auto";
  EXPECT_EQ(cllm::train::run_training(o).steps_done, 1u);
}

// A resume with a changed batch shape, data or precision continues, with one
// line saying what changed and what it means for the data order.
TEST_F(TrainTest, ResumeWithChangedSettingsSaysWhatTheChangeMeans) {
  const fs::path other = root_ / "other.txt";
  std::ofstream(other) << std::ifstream(corpus_).rdbuf() << "and some more text at the end.\n";
  struct Change {
    const char* key;
    std::function<void(TrainOptions&)> apply;
    const char* meaning;
  };
  const std::vector<Change> changes = {
      {"batch", [](TrainOptions& o) { o.batch = 3; }, "part of this epoch's sequences are read twice or skipped"},
      {"accum", [](TrainOptions& o) { o.accum = 2; }, "part of this epoch's sequences are read twice or skipped"},
      {"seq", [](TrainOptions& o) { o.seq = 16; }, "windows of the new length"},
      {"data", [&](TrainOptions& o) { o.data = other; }, "counts in the new data"},
      {"precision", [](TrainOptions& o) { o.precision = "bf16"; }, "the products round differently"},
  };
  for (const Change& c : changes) {
    SCOPED_TRACE(c.key);
    if (std::string(c.key) == "precision" && !cllm::kernels::bf16_support().native) {
      std::cout << "precision case skipped: no native bf16 (" << cllm::kernels::bf16_support().detail << ")\n";
      continue;
    }
    TrainOptions o = tiny(std::string("change_") + c.key);
    o.steps = 4;
    o.stop_after = 2;
    cllm::train::run_training(o);
    o.resume = true;
    o.stop_after = 0;
    c.apply(o);
    testing::internal::CaptureStdout();
    const auto summary = cllm::train::run_training(o);
    std::fflush(stdout);
    const std::string out = testing::internal::GetCapturedStdout();
    EXPECT_EQ(summary.first_step, 2u);
    EXPECT_EQ(summary.steps_done, 4u);
    const std::string line = std::string("warning: ") + c.key + " was '";
    ASSERT_NE(out.find(line), std::string::npos) << out;
    const std::string rest = out.substr(out.find(line));
    EXPECT_NE(rest.substr(0, rest.find('\n')).find(c.meaning), std::string::npos) << rest.substr(0, rest.find('\n'));
  }
}

TEST_F(TrainTest, RefusesToOverwriteARunWithoutResume) {
  TrainOptions o = tiny("again");
  o.steps = 1;
  o.warmup = 0;
  cllm::train::run_training(o);
  try {
    cllm::train::run_training(o);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
}

TEST_F(TrainTest, CheckpointReloadsAndGenerates) {
  TrainOptions o = tiny("gen");
  o.steps = 3;
  cllm::train::run_training(o);
  const auto ckpt = cllm::train::CheckpointStore(o.out).latest();
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->step, 3u);
  const auto w = cllm::train::load_weights(ckpt->dir / "model.safetensors");
  EXPECT_EQ(w.config.layers, 2);
  EXPECT_EQ(w.config.vocab, 256);
  EXPECT_EQ(w.tokenizer, "byte");
  const cllm::model::ParamLayout layout(w.config);
  cllm::data::ByteTokenizer tok;
  cllm::train::SamplingOptions so;
  so.tokens = 20;
  so.seed = 5;
  const std::string a = cllm::train::generate_text(layout, w.params.data(), tok, "the ", so);
  const std::string b = cllm::train::generate_text(layout, w.params.data(), tok, "the ", so);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a, b);  // same seed, same text
}

// A Hugging Face GPT-2 file ("transformer." names, attention mask buffers, an
// untied copy of the LM head, no cllm metadata) loads with the weights as they
// went in, and --init-from fine-tunes from it.
TEST_F(TrainTest, InitFromAHuggingFaceFileFineTunes) {
  TrainOptions source = tiny("source");
  source.steps = 2;
  cllm::train::run_training(source);
  const std::vector<float> trained = final_params(source.out);
  const cllm::model::ParamLayout layout(cllm::model::Config{256, 2, 32, 4, 32});
  ASSERT_EQ(trained.size(), layout.total());

  std::vector<cllm::data::TensorToWrite> tensors;
  for (const auto& t : layout.tensors()) tensors.push_back({"transformer." + t.name, t.shape, trained.data() + t.offset});
  std::vector<float> mask(32 * 32);
  for (std::size_t i = 0; i < 32; ++i)
    for (std::size_t j = 0; j <= i; ++j) mask[i * 32 + j] = 1.0f;
  const std::vector<std::string> buffers = {"transformer.h.0.attn.bias", "transformer.h.1.attn.bias"};
  for (const auto& name : buffers) tensors.push_back({name, {1, 1, 32, 32}, mask.data()});
  const auto& wte = layout.tensors().front();
  ASSERT_EQ(wte.name, "wte.weight");
  tensors.push_back({"lm_head.weight", wte.shape, trained.data() + wte.offset});
  const fs::path hf = root_ / "hf_gpt2.safetensors";
  cllm::data::write_safetensors(hf, {{"format", "pt"}}, tensors);

  const auto loaded = cllm::train::load_weights(hf, 4);  // HF files do not store the head count
  EXPECT_EQ(loaded.config.layers, 2);
  EXPECT_EQ(loaded.config.dim, 32);
  EXPECT_EQ(loaded.config.context, 32);
  EXPECT_EQ(loaded.config.vocab, 256);
  EXPECT_EQ(loaded.tokenizer, "gpt2");  // no cllm metadata: a GPT-2 file
  EXPECT_EQ(loaded.params, trained);

  TrainOptions tuned = tiny("tuned");
  tuned.model = {0, 0, 0, 4, 0};  // all from the file but the head count
  tuned.init_from = hf;
  tuned.steps = 2;
  tuned.warmup = 0;
  tuned.lr = 1e-3f;
  tuned.min_lr = 1e-4f;
  const auto summary = cllm::train::run_training(tuned);
  EXPECT_TRUE(std::isfinite(summary.final_loss));
  EXPECT_GT(max_rel_diff(final_params(tuned.out), trained), 0.0f);
}

TEST_F(TrainTest, KeepPrunesOldCheckpoints) {
  TrainOptions o = tiny("keep");
  o.steps = 6;
  o.ckpt_every = 1;
  o.keep = 2;
  cllm::train::run_training(o);
  int n = 0;
  for (const auto& e : fs::directory_iterator(o.out / "checkpoints")) n += e.is_directory();
  EXPECT_EQ(n, 2);
  EXPECT_EQ(cllm::train::CheckpointStore(o.out).latest()->step, 6u);
}

TEST_F(TrainTest, BadOptionsAreRejected) {
  TrainOptions o = tiny("bad");
  o.batch = 0;
  EXPECT_THROW(cllm::train::run_training(o), std::invalid_argument);
  o = tiny("bad");
  o.threads = 10000;
  EXPECT_THROW(cllm::train::run_training(o), std::invalid_argument);
  o = tiny("bad");
  o.seq = 64;  // > context 32
  EXPECT_THROW(cllm::train::run_training(o), std::invalid_argument);
  o = tiny("bad");
  o.warmup = 10;  // > steps
  EXPECT_THROW(cllm::train::run_training(o), std::invalid_argument);
  o = tiny("bad");
  o.data = root_ / "missing.txt";
  EXPECT_THROW(cllm::train::run_training(o), std::runtime_error);
}

// Whether `s` has the form format_duration writes ("7s", "1m12s", "2h03m04s").
bool is_duration(std::string_view s) {
  return !s.empty() && std::isdigit(static_cast<unsigned char>(s.front())) && s.back() == 's' &&
         s.find_first_not_of("0123456789hms") == std::string_view::npos;
}

TEST(Progress, DurationsAndEta) {
  using cllm::train::format_duration;
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.9), "59s");
  EXPECT_EQ(format_duration(72), "1m12s");
  EXPECT_EQ(format_duration(243.5), "4m03s");
  EXPECT_EQ(format_duration(3600 + 63), "1h01m03s");
  EXPECT_EQ(format_duration(-1), "0s");
  EXPECT_EQ(format_duration(std::nan("")), "0s");
  EXPECT_DOUBLE_EQ(cllm::train::eta_seconds(10, 2, 3), 15.0);
  EXPECT_DOUBLE_EQ(cllm::train::eta_seconds(10, 5, 0), 0.0);
}

// Logged step lines end with the run time and the ETA; output that is not a
// terminal gets plain lines (no carriage return), one per logged step; every
// step in metrics.jsonl has a non-decreasing elapsed_s.
TEST_F(TrainTest, StepLinesShowElapsedAndEtaAndMetricsElapsed) {
  TrainOptions o = tiny("eta");
  o.steps = 6;
  o.log_every = 2;
  testing::internal::CaptureStdout();
  cllm::train::run_training(o);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  std::vector<int> logged;  // "step      2/6 | loss ... | MFU 1.0% | 0s, ETA 0s"
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("step ") || line.find(" | loss ") == std::string::npos) continue;
    logged.push_back(std::stoi(line.substr(5)));
    EXPECT_NE(line.find("/6 | loss "), std::string::npos) << line;
    const std::size_t last = line.rfind(" | ");
    ASSERT_NE(last, std::string::npos) << line;
    ASSERT_NE(line.rfind(" | MFU "), std::string::npos) << line;
    EXPECT_LT(line.rfind(" | MFU "), last) << line;
    const std::string timing = line.substr(last + 3);  // "0s, ETA 0s"
    const std::size_t comma = timing.find(", ETA ");
    ASSERT_NE(comma, std::string::npos) << line;
    EXPECT_TRUE(is_duration(timing.substr(0, comma))) << line;
    EXPECT_TRUE(is_duration(timing.substr(comma + 6))) << line;
  }
  EXPECT_EQ(logged, (std::vector<int>{2, 4, 6})) << out;

  std::ifstream metrics(o.out / "metrics.jsonl");
  double previous = 0.0;
  int steps = 0;
  for (std::string text; std::getline(metrics, text);) {
    const auto record = nlohmann::json::parse(text);
    if (!record.contains("loss")) continue;  // eval lines
    ASSERT_TRUE(record.contains("elapsed_s")) << text;
    const double elapsed = record["elapsed_s"].get<double>();
    EXPECT_GE(elapsed, previous) << text;
    previous = elapsed;
    ++steps;
  }
  EXPECT_EQ(steps, 6);
  EXPECT_GT(previous, 0.0);
}

}  // namespace
