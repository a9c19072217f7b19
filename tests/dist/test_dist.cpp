// Single-process parts of src/dist: sharding, backend choice, the none group,
// and a one-rank data-parallel step (the multi-rank cases are in
// test_dist_mpi.cpp, run under mpirun).
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "dist/data_parallel.h"
#include "dist/process_group.h"

using namespace cllm;

TEST(Shard, MicroBatchKGoesToRankKModP) {
  for (int P = 1; P <= 5; ++P) {
    for (std::size_t K = 1; K <= 11; ++K) {
      std::size_t total = 0;
      for (int r = 0; r < P; ++r) {
        std::size_t expected = 0;
        for (std::size_t k = 0; k < K; ++k) expected += k % static_cast<std::size_t>(P) == static_cast<std::size_t>(r);
        EXPECT_EQ(dist::shard_size(K, r, P), expected) << "K " << K << " rank " << r << " of " << P;
        total += dist::shard_size(K, r, P);
      }
      EXPECT_EQ(total, K);
    }
  }
  EXPECT_EQ(dist::shard_size(2, 2, 3), 0u);  // K < P: rank 2 has no share
}

TEST(Backend, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(dist::parse_backend("auto"), dist::Backend::automatic);
  EXPECT_EQ(dist::parse_backend("none"), dist::Backend::none);
  EXPECT_EQ(dist::parse_backend("mpi"), dist::Backend::mpi);
  try {
    dist::parse_backend("nccl");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'nccl'"), std::string::npos) << e.what();
  }
}

TEST(World, IsOneProcessWithoutMpirun) {
  if (dist::launched_by_mpirun()) GTEST_SKIP() << "started by mpirun";
  dist::ProcessGroup& world = dist::world();  // must not initialise MPI
  EXPECT_EQ(world.backend(), "none");
  EXPECT_EQ(world.size(), 1);
  EXPECT_TRUE(world.is_root());
  EXPECT_THROW(dist::select(dist::Backend::mpi), std::logic_error);  // too late
}

TEST(SingleProcessGroup, CollectivesLeaveDataAsIs) {
  const auto group = dist::make_single_process_group();
  std::vector<float> f{1.5f, -2.0f};
  group->allreduce_sum(f.data(), f.size());
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f}));
  std::string text = "abc";
  group->broadcast(text, 0);
  EXPECT_EQ(text, "abc");
  group->barrier();
}

// With one rank the data-parallel step is exactly the pipeline's step.
TEST(DataParallelStep, OneRankEqualsThePipeline) {
  const std::size_t n = 1000, K = 3;
  const auto work = [&](std::size_t, std::size_t k, float* grad, bool first) -> double {
    for (std::size_t i = 0; i < n; ++i) {
      const float g = static_cast<float>((i * 7 + k * 13) % 17) * 0.01f - 0.08f;
      grad[i] = first ? g : grad[i] + g;
    }
    return 0.5 * static_cast<double>(k + 1);
  };
  auto run = [&](bool through_dist) {
    std::vector<float> params(n, 0.25f);
    optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
    parallel::GradientPipeline pipeline(n, {.threads = 2, .deterministic = true, .segment_floats = 128});
    const auto group = dist::make_single_process_group();
    dist::DataParallelStep dp(*group, pipeline, K);
    double loss = 0;
    for (int s = 0; s < 3; ++s)
      loss = through_dist ? dp.step(work, params.data(), adamw, 1e-2, 1.0f).loss_sum
                          : pipeline.step(K, work, params.data(), adamw, 1e-2, 1.0f).loss_sum;
    EXPECT_DOUBLE_EQ(loss, 3.0);
    return params;
  };
  EXPECT_EQ(run(true), run(false));
}
