// Run under `mpirun -np P` (P = 2, 3): every rank runs every case, in order.
// Collectives (blocking and not), the bucketed all-reduce of a step, training
// results of P processes against the single-process run on the same global
// batch, deterministic repeatability, resume with another P.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "dist/data_parallel.h"
#include "dist/process_group.h"
#include "optim/adamw.h"
#include "parallel/gradient_pipeline.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace cllm;

namespace {

dist::ProcessGroup& world() { return dist::world(); }

class DistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(world().backend(), "mpi");
    root_ = fs::temp_directory_path() /
            ("cllm_dist_np" + std::to_string(world().size()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    if (world().is_root()) {
      fs::remove_all(root_);
      fs::create_directories(root_);
      std::ofstream out(root_ / "corpus.txt");
      std::mt19937 rng(7);
      const char* words[] = {"alpha", "beta", "gamma", "delta", "one", "two", "three", "cat", "dog", "the"};
      for (int line = 0; line < 300; ++line)
        for (int w = 0; w < 8; ++w) out << words[rng() % 10] << (w == 7 ? ".\n" : " ");
    }
    world().barrier();
  }
  void TearDown() override {
    world().barrier();
    if (world().is_root()) fs::remove_all(root_);
  }

  train::TrainOptions tiny(const std::string& out_name, std::size_t accum) const {
    train::TrainOptions o;
    o.data = root_ / "corpus.txt";
    o.model = {0, 2, 32, 4, 32};
    o.batch = 2;
    o.accum = accum;
    o.steps = 5;
    o.lr = 3e-3f;
    o.min_lr = 3e-4f;
    o.warmup = 2;
    o.threads = 1;
    o.sample_tokens = 0;
    o.eval_batches = 2;
    o.precision = "fp32";  // equal to 1e-5 across process counts: f32 products (bf16 rounds more)
    o.out = root_ / out_name;
    return o;
  }
  // Runs alone on rank 0 (the others wait), as `cllm train` without mpirun.
  void train_single(train::TrainOptions o) {
    if (world().is_root()) {
      const auto single = dist::make_single_process_group();
      o.group = single.get();
      train::run_training(o);
    }
    world().barrier();
  }
  static std::vector<float> final_params(const fs::path& out) {
    const auto ckpt = train::CheckpointStore(out).latest();
    EXPECT_TRUE(ckpt.has_value()) << out;
    return ckpt ? train::load_weights(ckpt->dir / "model.safetensors").params : std::vector<float>{};
  }
  // Largest difference relative to the largest parameter (as tests/train):
  // a per-element ratio is meaningless for parameters near zero, where AdamW
  // turns rounding differences of tiny gradients into full-size updates.
  static void expect_close(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    float max_abs = 0, max_diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      max_abs = std::max(max_abs, std::fabs(b[i]));
      max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
    }
    EXPECT_LT(max_diff / max_abs, 1e-5f) << "max difference " << max_diff << ", max |param| " << max_abs;
  }

  fs::path root_;
};

TEST_F(DistTest, CollectivesSumAndBroadcast) {
  const int P = world().size(), r = world().rank();
  std::vector<float> f(3, static_cast<float>(r + 1));
  world().allreduce_sum(f.data(), f.size());
  for (float x : f) EXPECT_EQ(x, static_cast<float>(P * (P + 1) / 2));
  double d = r;
  world().allreduce_sum(&d, 1);
  EXPECT_EQ(d, P * (P - 1) / 2.0);
  std::string text = world().is_root() ? "from rank 0" : "";
  world().broadcast(text, 0);
  EXPECT_EQ(text, "from rank 0");
}

// Bitwise the same floats on every rank (rank 0's, broadcast).
void expect_same_on_every_rank(const std::vector<float>& data) {
  std::vector<float> root = data;
  world().broadcast(root.data(), root.size() * sizeof(float), 0);
  EXPECT_EQ(0, std::memcmp(root.data(), data.data(), data.size() * sizeof(float))) << "rank " << world().rank();
}

// Several non-blocking sums in flight at once, completed by test() and by
// wait(): the same values as the blocking sum, on every rank.
TEST_F(DistTest, NonBlockingAllReduceSums) {
  const int r = world().rank();
  std::vector<std::vector<float>> ranges;
  for (std::size_t n : {1u, 1000u, 100003u}) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(r + 1) * static_cast<float>(i % 7) + 0.1f * static_cast<float>(r);
    ranges.push_back(std::move(v));
  }
  std::vector<std::vector<float>> expected = ranges;
  for (auto& e : expected) world().allreduce_sum(e.data(), e.size());
  std::vector<std::unique_ptr<dist::ProcessGroup::Request>> requests;
  for (auto& v : ranges) requests.push_back(world().iallreduce_sum(v.data(), v.size()));
  while (!requests[0]->test()) {
  }
  for (std::size_t i = 1; i < requests.size(); ++i) requests[i]->wait();
  EXPECT_TRUE(requests[1]->test());  // stays complete
  for (std::size_t j = 0; j < ranges.size(); ++j) {
    for (std::size_t i = 0; i < ranges[j].size(); ++i) ASSERT_FLOAT_EQ(ranges[j][i], expected[j][i]) << j << " " << i;
    expect_same_on_every_rank(ranges[j]);
  }
}

// One step through a GradientPipeline with 2 threads and buckets that divide
// neither the gradient nor the segments: exact global sums (integer values),
// the same parameters on every rank, consistent timings.
TEST_F(DistTest, BucketedStepSumsTheGlobalGradient) {
  const std::size_t n = 1000, K = 5;
  const auto work = [&](std::size_t, const parallel::Piece& piece, float* grad, bool first) -> double {
    const std::size_t k = piece.micro_batch;
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + static_cast<float>((k + 1) * (i % 5 + 1));
    return static_cast<double>(k);
  };
  for (std::size_t bucket : {10u, 96u, 5000u}) {
    SCOPED_TRACE("bucket " + std::to_string(bucket));
    parallel::GradientPipeline pipeline(n, {.threads = 2, .segment_floats = 64});
    dist::DataParallelStep dp(world(), pipeline, K, 1, bucket);
    std::vector<float> params(n, 0.25f);
    optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
    for (int step = 0; step < 2; ++step) {
      const parallel::StepStats stats = dp.step(work, params.data(), adamw, 1e-2, 1.0f);
      EXPECT_DOUBLE_EQ(stats.loss_sum, 10.0);  // 0 + 1 + 2 + 3 + 4
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], 15.0f * static_cast<float>(i % 5 + 1)) << i;
      EXPECT_GT(dp.allreduce_seconds(), 0.0);
      EXPECT_GE(dp.hidden_allreduce_seconds(), 0.0);
      EXPECT_LE(dp.hidden_allreduce_seconds(), dp.allreduce_seconds());
    }
    expect_same_on_every_rank(params);
  }
}

// accum 4: uneven shares for P = 3; accum 2 with P = 3: rank 2 has none.
// A share of fewer micro-batches than a rank's 2 lanes (accum 2 on P = 2,
// ranks 1 and 2 of accum 4 on P = 3) is cut into pieces of its rows.
TEST_F(DistTest, FiveStepsEqualTheSingleProcessRun) {
  for (std::size_t accum : {4u, 2u}) {
    SCOPED_TRACE("accum " + std::to_string(accum));
    train_single(tiny("single" + std::to_string(accum), accum));
    train::TrainOptions o = tiny("multi" + std::to_string(accum), accum);
    o.threads = 2;  // each rank with its own worker threads
    const train::TrainSummary s = train::run_training(o);
    EXPECT_EQ(s.steps_done, 5u);
    world().barrier();
    if (world().is_root()) {
      expect_close(final_params(o.out), final_params(root_ / ("single" + std::to_string(accum))));
      EXPECT_TRUE(fs::exists(o.out / "metrics.jsonl"));
    }
  }
}

TEST_F(DistTest, DeterministicModeIsBitwiseRepeatable) {
  for (const char* name : {"a", "b"}) {
    train::TrainOptions o = tiny(name, 5);
    o.deterministic = true;
    o.threads = 2;
    train::run_training(o);
  }
  world().barrier();
  if (world().is_root()) {
    EXPECT_EQ(final_params(root_ / "a"), final_params(root_ / "b"));
  }
}

// 3 steps on P ranks, then resumed to 5 by one process: the 5-step result.
TEST_F(DistTest, ResumesWithAnotherProcessCount) {
  train_single(tiny("single", 4));
  train::TrainOptions o = tiny("chunked", 4);
  o.stop_after = 3;
  EXPECT_TRUE(train::run_training(o).stopped_early);
  world().barrier();
  o.stop_after = 0;
  o.resume = true;
  train_single(o);
  if (world().is_root()) {
    expect_close(final_params(o.out), final_params(root_ / "single"));
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  world();  // MPI before the first case
  return RUN_ALL_TESTS();
}
