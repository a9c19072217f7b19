// Run under `mpirun -np P` (P = 2, 3): every rank runs every case, in order.
// Training results of P processes against the single-process run on the same
// global batch, deterministic repeatability, resume with another P.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dist/process_group.h"
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

// accum 4: uneven shares for P = 3; accum 2 with P = 3: rank 2 has none.
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
