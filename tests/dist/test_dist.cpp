// Single-process parts of src/dist: sharding, backend choice, the none group,
// a one-rank data-parallel step, and the bucketed all-reduce against a
// simulated second rank (the real multi-rank cases are in test_dist_mpi.cpp,
// run under mpirun).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
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

// A rank's share is cut for its lanes only when it has fewer micro-batches than lanes.
TEST(Shard, EachRankSplitsItsOwnShare) {
  EXPECT_EQ(dist::shard_split(1, 8, 2, 0, 1).pieces, 2u);
  EXPECT_EQ(dist::shard_split(4, 8, 2, 0, 3).micro_batches, 2u);  // micro-batches 0 and 3: one per lane
  EXPECT_EQ(dist::shard_split(4, 8, 2, 0, 3).pieces, 1u);
  EXPECT_EQ(dist::shard_split(4, 8, 2, 1, 3).pieces, 2u);  // micro-batch 1 alone: two pieces of 4
  EXPECT_EQ(dist::shard_split(4, 8, 2, 1, 3).max_rows(), 4u);
  EXPECT_EQ(dist::shard_split(2, 8, 2, 2, 3).items(), 0u);  // no share
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
  const auto request = group->iallreduce_sum(f.data(), f.size());
  EXPECT_TRUE(request->test());  // complete at once
  request->wait();
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
    dist::DataParallelStep dp(*group, pipeline, K, 1);  // one row: never split
    const dist::PieceFn piece_work = [&](std::size_t lane, const parallel::Piece& piece, float* grad, bool first) {
      return work(lane, piece.micro_batch, grad, first);
    };
    double loss = 0;
    for (int s = 0; s < 3; ++s)
      loss = through_dist ? dp.step(piece_work, params.data(), adamw, 1e-2, 1.0f).loss_sum
                          : pipeline.step(K, work, params.data(), adamw, 1e-2, 1.0f).loss_sum;
    EXPECT_DOUBLE_EQ(loss, 3.0);
    return params;
  };
  EXPECT_EQ(run(true), run(false));
}

// One micro-batch on two lanes: two pieces of 4 rows, one per lane (fixed
// assignment), every row once, the loss and gradient summed over the pieces.
TEST(DataParallelStep, SplitsAMicroBatchOverTheLanes) {
  const std::size_t n = 100, K = 1, B = 8;
  std::vector<std::atomic<int>> row_runs(B);
  const auto work = [&](std::size_t, const parallel::Piece& piece, float* grad, bool first) -> double {
    EXPECT_EQ(piece.micro_batch, 0u);
    for (std::size_t r = piece.rows.begin; r < piece.rows.end; ++r) ++row_runs[r];
    const auto rows = static_cast<float>(piece.rows.size());
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + rows * static_cast<float>(i % 5 + 1);
    return 0.5 * static_cast<double>(piece.rows.size());
  };
  std::vector<float> params(n, 0.25f);
  optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
  parallel::GradientPipeline pipeline(n, {.threads = 2, .deterministic = true, .segment_floats = 32});
  const auto group = dist::make_single_process_group();
  dist::DataParallelStep dp(*group, pipeline, K, B);
  EXPECT_EQ(dp.split().items(), 2u);
  EXPECT_EQ(dp.split().max_rows(), 4u);
  const parallel::StepStats stats = dp.step(work, params.data(), adamw, 1e-2, 0.0f);
  EXPECT_EQ(stats.micro_batches_per_worker, (std::vector<std::size_t>{1, 1}));
  EXPECT_DOUBLE_EQ(stats.loss_sum, 4.0);
  for (std::size_t r = 0; r < B; ++r) EXPECT_EQ(row_runs[r], 1) << "row " << r;
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], 8.0f * static_cast<float>(i % 5 + 1)) << i;
}

namespace {

// Rank 0 of two, the other rank simulated: it holds the same gradient, so a
// bucket's sum is twice this rank's floats, written when the request
// completes (after a few tests, so buckets stay in flight across polls). It
// checks what MPI needs: every call on the thread that made the group, and
// each bucket started over floats that already hold their final local value.
class SimulatedPair final : public dist::ProcessGroup {
 public:
  struct Bucket {
    std::size_t begin, size;
  };
  // The pipeline's gradient lies in one of its lanes' buffers, which may
  // change from step to step: offsets are taken against it at each call.
  SimulatedPair(const parallel::GradientPipeline& pipeline, std::function<float(std::size_t)> local_value)
      : pipeline_(pipeline), local_value_(std::move(local_value)) {}

  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string_view backend() const override { return "simulated"; }
  void allreduce_sum(float*, std::size_t) override { check_thread(); }
  void allreduce_sum(double*, std::size_t) override { check_thread(); }  // the other rank's losses are 0
  std::unique_ptr<Request> iallreduce_sum(float* data, std::size_t n) override {
    check_thread();
    const auto begin = static_cast<std::size_t>(data - pipeline_.gradient());
    for (std::size_t i = 0; i < n; ++i) not_final |= data[i] != local_value_(begin + i);
    started.push_back({begin, n});
    return std::make_unique<PairRequest>(*this, data, n);
  }
  void broadcast(void*, std::size_t, int) override { check_thread(); }
  void barrier() override { check_thread(); }
  [[noreturn]] void abort(std::string_view message) override {
    ADD_FAILURE() << message;
    std::abort();
  }

  std::vector<Bucket> started;
  bool wrong_thread = false, not_final = false;
  std::size_t tests = 0;

 private:
  class PairRequest final : public Request {
   public:
    PairRequest(SimulatedPair& group, float* data, std::size_t n) : group_(group), data_(data), n_(n) {}
    bool test() override {
      group_.check_thread();
      ++group_.tests;
      if (!done_ && ++own_tests_ >= 3) complete();
      return done_;
    }
    void wait() override {
      group_.check_thread();
      if (!done_) complete();
    }

   private:
    void complete() {
      for (std::size_t i = 0; i < n_; ++i) data_[i] *= 2.0f;
      done_ = true;
    }
    SimulatedPair& group_;
    float* data_;
    std::size_t n_, own_tests_ = 0;
    bool done_ = false;
  };
  void check_thread() { wrong_thread |= std::this_thread::get_id() != thread_; }

  const parallel::GradientPipeline& pipeline_;
  std::function<float(std::size_t)> local_value_;
  std::thread::id thread_ = std::this_thread::get_id();
};

}  // namespace

// Buckets not a divisor of the gradient, not aligned to segments, smaller
// than a segment (more buckets than segments), one float, larger than the
// whole gradient: each float is summed exactly once, buckets start in order
// and cover the gradient, and the timings are consistent.
TEST(DataParallelStep, BucketedAllReduceSumsEveryFloatOnce) {
  const std::size_t n = 1000, K = 6;  // rank 0 of 2: micro-batches 0, 2, 4
  const auto local_value = [](std::size_t i) { return 9.0f * static_cast<float>(i % 5 + 1); };  // 1 + 3 + 5
  const auto work = [&](std::size_t, const parallel::Piece& piece, float* grad, bool first) -> double {
    const std::size_t k = piece.micro_batch;
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + static_cast<float>((k + 1) * (i % 5 + 1));
    return 1.0;
  };
  struct Setting {
    std::size_t threads, lanes;
    bool deterministic;
  };
  for (std::size_t bucket : {1u, 10u, 64u, 96u, 1000u, 5000u}) {
    for (const Setting& s : {Setting{1, 0, false}, Setting{2, 0, false}, Setting{3, 0, true}, Setting{4, 2, false}}) {
      SCOPED_TRACE("bucket " + std::to_string(bucket) + " threads " + std::to_string(s.threads) + " lanes " +
                   std::to_string(s.lanes));
      parallel::GradientPipeline pipeline(
          n, {.threads = s.threads, .lanes = s.lanes, .deterministic = s.deterministic, .segment_floats = 64});
      SimulatedPair group(pipeline, local_value);
      dist::DataParallelStep dp(group, pipeline, K, 1, bucket);
      ASSERT_EQ(dp.buckets(), (n + bucket - 1) / bucket);
      EXPECT_EQ(dp.local_micro_batches(), 3u);
      std::vector<float> params(n, 0.25f);
      optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
      for (int step = 0; step < 2; ++step) {
        group.started.clear();
        const parallel::StepStats stats = dp.step(work, params.data(), adamw, 1e-2, 0.0f);
        EXPECT_TRUE(stats.finite);
        EXPECT_DOUBLE_EQ(stats.loss_sum, 3.0);
        ASSERT_EQ(group.started.size(), dp.buckets());
        for (std::size_t b = 0; b < group.started.size(); ++b) {
          ASSERT_EQ(group.started[b].begin, b * bucket) << "bucket " << b;
          ASSERT_EQ(group.started[b].size, std::min(bucket, n - b * bucket)) << "bucket " << b;
        }
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], 2.0f * local_value(i)) << i;
        EXPECT_GT(dp.allreduce_seconds(), 0.0);
        EXPECT_GE(dp.hidden_allreduce_seconds(), 0.0);
        EXPECT_LE(dp.hidden_allreduce_seconds(), dp.allreduce_seconds());
      }
      EXPECT_FALSE(group.wrong_thread) << "MPI called from a thread other than the caller's";
      EXPECT_FALSE(group.not_final) << "a bucket started before its floats were final";
    }
  }
}

// Rank 0 of two with micro-batch 0 of K = 2 and three lanes: its share is
// cut into three pieces, whose losses are summed into micro-batch 0's entry
// of the losses' all-reduce; the gradient is all-reduced as without a split.
TEST(DataParallelStep, SplitsARanksShareAndSumsItsPiecesLosses) {
  const std::size_t n = 500, K = 2, B = 6;
  const auto local_value = [](std::size_t i) { return 6.0f * static_cast<float>(i % 5 + 1); };
  const auto work = [&](std::size_t, const parallel::Piece& piece, float* grad, bool first) -> double {
    EXPECT_EQ(piece.micro_batch, 0u);
    EXPECT_EQ(piece.rows.size(), 2u);
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + 2.0f * static_cast<float>(i % 5 + 1);
    return 0.25 * static_cast<double>(piece.rows.end);  // 0.5 + 1 + 1.5
  };
  parallel::GradientPipeline pipeline(n, {.threads = 3, .deterministic = true, .segment_floats = 64});
  SimulatedPair group(pipeline, local_value);
  dist::DataParallelStep dp(group, pipeline, K, B, 128);
  EXPECT_EQ(dp.local_micro_batches(), 1u);
  EXPECT_EQ(dp.split().items(), 3u);
  std::vector<float> params(n, 0.25f);
  optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
  for (int step = 0; step < 2; ++step) {  // the per-micro-batch losses start from zero each step
    const parallel::StepStats stats = dp.step(work, params.data(), adamw, 1e-2, 0.0f);
    EXPECT_DOUBLE_EQ(stats.loss_sum, 3.0);
    EXPECT_EQ(stats.micro_batches_per_worker, (std::vector<std::size_t>{1, 1, 1}));
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], 2.0f * local_value(i)) << i;
  }
  EXPECT_FALSE(group.wrong_thread);
  EXPECT_FALSE(group.not_final);
}

// With many buckets, most are started, and tested, while the rest of the
// gradient is still being reduced: the hidden part is reported.
TEST(DataParallelStep, ReportsTheAllReduceHiddenBehindTheReduction) {
  const std::size_t n = std::size_t{1} << 20, K = 4;
  const auto work = [&](std::size_t, const parallel::Piece& piece, float* grad, bool first) -> double {
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + static_cast<float>(piece.micro_batch + 1);
    return 1.0;
  };
  parallel::GradientPipeline pipeline(n, {.threads = 1, .segment_floats = 1024});
  SimulatedPair group(pipeline, [](std::size_t) { return 4.0f; });  // micro-batches 0 and 2
  dist::DataParallelStep dp(group, pipeline, K, 1, 4096);
  std::vector<float> params(n, 0.25f);
  optim::AdamW adamw(n, {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f}, {{0, n, true}});
  dp.step(work, params.data(), adamw, 1e-2, 0.0f);
  EXPECT_GT(group.tests, 0u) << "no bucket was tested during the reduction";
  EXPECT_GT(dp.hidden_allreduce_seconds(), 0.0);
  EXPECT_LE(dp.hidden_allreduce_seconds(), dp.allreduce_seconds());
  EXPECT_FALSE(group.wrong_thread);
  EXPECT_FALSE(group.not_final);
}
