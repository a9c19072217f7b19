// GradientPipeline: exact sums (no lost updates) for many worker counts and
// awkward sizes, agreement with a sequential reference, bitwise determinism,
// fairness of the queue, oversubscription, clipping, non-finite gradients,
// the gradient hook and stream, errors, and the baseline.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "optim/adamw.h"
#include "parallel/baseline.h"
#include "parallel/gradient_pipeline.h"
#include "parallel/lock_count.h"

namespace cllm::parallel {
namespace {

// Deterministic pseudo-random float in [-1, 1) for (micro-batch, element).
float noise(std::size_t k, std::size_t i) {
  std::uint64_t x = (static_cast<std::uint64_t>(k) << 32) ^ i ^ 0x9e3779b97f4a7c15ull;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<float>(static_cast<double>(x >> 40) / static_cast<double>(1ull << 23) - 1.0);
}

// Integer-valued, so every float sum below 2^24 is exact whatever the order.
float integer_value(std::size_t k, std::size_t i) { return static_cast<float>((k + 1) * (i % 5 + 1)); }

template <typename Value>
MicroBatchFn write_values(std::size_t n, Value value) {
  return [n, value](std::size_t, std::size_t k, float* grad, bool first) {
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + value(k, i);
    return static_cast<double>(k) * 0.5;
  };
}

struct Fixture {
  std::size_t n;
  std::vector<float> params;
  optim::AdamW opt;
  explicit Fixture(std::size_t n_params, double lr = 0.0)
      : n(n_params), params(n_params, 1.0f), opt(n_params, {.lr = lr, .weight_decay = 0.01}) {}
};

TEST(GradientPipeline, NoLostUpdatesExactIntegerSums) {
  for (std::size_t threads : {1u, 2u, 3u, 4u, 8u, 12u, 24u, 48u, 64u}) {
    // Sizes smaller than N, not divisible by N, and spanning many segments.
    std::vector<std::size_t> sizes = {1, threads + 1, 3 * threads + 1, 1021};
    if (threads > 2) sizes.push_back(threads - 1);
    for (std::size_t n : sizes) {
      for (bool deterministic : {false, true}) {
        PipelineOptions options{.threads = threads, .deterministic = deterministic, .segment_floats = 16};
        GradientPipeline pipeline(n, options);
        Fixture f(n);
        // Fewer micro-batches than workers (some publish nothing), then more.
        for (std::size_t K : {threads / 2 + 1, 2 * threads + 1}) {
          const StepStats stats = pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 0.0, 0.0f);
          const float k_sum = static_cast<float>(K * (K + 1) / 2);
          for (std::size_t i = 0; i < n; ++i) {
            ASSERT_EQ(pipeline.gradient()[i], k_sum * static_cast<float>(i % 5 + 1))
                << "threads " << threads << " n " << n << " K " << K << " det " << deterministic << " i " << i;
          }
          ASSERT_EQ(std::accumulate(stats.micro_batches_per_worker.begin(), stats.micro_batches_per_worker.end(),
                                    std::size_t{0}),
                    K);
          ASSERT_TRUE(stats.finite);
          ASSERT_EQ(stats.blocking_locks, 0u);
        }
      }
    }
  }
}

TEST(GradientPipeline, MatchesSequentialReferenceAndSingleThreadedAdamW) {
  const std::size_t n = 10007, K = 13;
  for (std::size_t threads : {1u, 3u, 8u}) {
    GradientPipeline pipeline(n, {.threads = threads, .segment_floats = 1000});
    Fixture f(n, 1e-2);
    Fixture reference(n, 1e-2);
    for (int step = 0; step < 2; ++step) {
      const StepStats stats =
          pipeline.step(K, write_values(n, noise), f.params.data(), f.opt, 1e-2, 0.0f);
      double norm_sq = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (std::size_t k = 0; k < K; ++k) sum += static_cast<double>(noise(k, i));
        ASSERT_NEAR(pipeline.gradient()[i], sum, 1e-5) << "threads " << threads << " i " << i;
        norm_sq += static_cast<double>(pipeline.gradient()[i]) * static_cast<double>(pipeline.gradient()[i]);
      }
      EXPECT_NEAR(stats.grad_norm, std::sqrt(norm_sq), 1e-9 * std::sqrt(norm_sq));
      EXPECT_DOUBLE_EQ(stats.loss_sum, 0.5 * static_cast<double>(K * (K - 1) / 2));
      // The segment-parallel update equals one whole update of the same gradient.
      reference.opt.update(reference.params.data(), pipeline.gradient(), 1e-2);
      ASSERT_EQ(0, std::memcmp(f.params.data(), reference.params.data(), n * sizeof(float)));
      ASSERT_EQ(f.opt.step(), reference.opt.step());
    }
  }
}

TEST(GradientPipeline, DeterministicModeIsBitwiseReproducible) {
  const std::size_t n = 5003, K = 17, threads = 6;
  // Random sleeps shuffle which worker finishes first from run to run.
  auto work = [n](std::size_t w, std::size_t k, float* grad, bool first) {
    std::this_thread::sleep_for(std::chrono::microseconds((k * 7919 + w * 104729 +
                                  static_cast<std::size_t>(std::chrono::steady_clock::now().time_since_epoch().count())) %
                                 2000));
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + noise(k, i) * 1e-3f + noise(k + 99, i);
    return static_cast<double>(noise(k, 0)) / 3.0;
  };
  std::vector<float> first_grad, first_params;
  double first_loss = 0.0;
  for (int run = 0; run < 20; ++run) {
    GradientPipeline pipeline(n, {.threads = threads, .deterministic = true, .segment_floats = 256});
    Fixture f(n, 1e-3);
    StepStats stats;
    for (int step = 0; step < 2; ++step) stats = pipeline.step(K, work, f.params.data(), f.opt, 1e-3, 1.0f);
    // Static assignment: micro-batch i on worker i mod N.
    for (std::size_t w = 0; w < threads; ++w) {
      ASSERT_EQ(stats.micro_batches_per_worker[w], K / threads + (w < K % threads ? 1 : 0));
    }
    std::vector<float> grad(pipeline.gradient(), pipeline.gradient() + n);
    if (run == 0) {
      first_grad = grad;
      first_params = f.params;
      first_loss = stats.loss_sum;
      continue;
    }
    ASSERT_EQ(0, std::memcmp(grad.data(), first_grad.data(), n * sizeof(float))) << "run " << run;
    ASSERT_EQ(0, std::memcmp(f.params.data(), first_params.data(), n * sizeof(float))) << "run " << run;
    ASSERT_EQ(stats.loss_sum, first_loss);
  }
}

TEST(GradientPipeline, StaticAssignmentIsFairUnderUniformWork) {
  const std::size_t n = 100, K = 50, threads = 8;
  GradientPipeline pipeline(n, {.threads = threads, .static_assignment = true});
  Fixture f(n);
  const StepStats stats = pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 0.0, 0.0f);
  const double mean = static_cast<double>(K) / static_cast<double>(threads);
  for (std::size_t share : stats.micro_batches_per_worker) {
    EXPECT_LE(std::abs(static_cast<double>(share) - mean), 1.0);
  }
}

TEST(GradientPipeline, DynamicQueueGivesASlowWorkerFewer) {
  const std::size_t n = 64, K = 40, threads = 4;
  GradientPipeline pipeline(n, {.threads = threads});
  Fixture f(n);
  auto work = [n](std::size_t w, std::size_t k, float* grad, bool first) {
    std::this_thread::sleep_for(std::chrono::milliseconds(w == 0 ? 20 : 1));
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + integer_value(k, i);
    return 0.0;
  };
  const StepStats stats = pipeline.step(K, work, f.params.data(), f.opt, 0.0, 0.0f);
  const double mean = static_cast<double>(K) / static_cast<double>(threads);
  EXPECT_LT(static_cast<double>(stats.micro_batches_per_worker[0]), mean);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], integer_value(K, i) * (K / 2.0f));
}

TEST(GradientPipeline, SixtyFourWorkersOnFewCoresFinish) {
  const std::size_t n = 10007, threads = 64;
  GradientPipeline pipeline(n, {.threads = threads, .segment_floats = 64});
  Fixture f(n);
  for (std::size_t K : {256u, 7u, 64u}) {
    pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 0.0, 0.0f);
    const float k_sum = static_cast<float>(K * (K + 1) / 2);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], k_sum * static_cast<float>(i % 5 + 1));
  }
}

TEST(GradientPipeline, ClipsToMaxNorm) {
  const std::size_t n = 1000, K = 5;
  GradientPipeline pipeline(n, {.threads = 3, .segment_floats = 128});
  Fixture f(n, 1e-2), reference(n, 1e-2);
  const StepStats stats = pipeline.step(K, write_values(n, noise), f.params.data(), f.opt, 1e-2, 0.5f);
  double norm_sq = 0.0;
  for (std::size_t i = 0; i < n; ++i) norm_sq += std::pow(static_cast<double>(pipeline.gradient()[i]), 2);
  ASSERT_GT(std::sqrt(norm_sq), 0.5);
  EXPECT_NEAR(stats.grad_norm, std::sqrt(norm_sq), 1e-9 * std::sqrt(norm_sq));
  EXPECT_FLOAT_EQ(stats.clip_scale, static_cast<float>(0.5 / (stats.grad_norm + 1e-6)));
  reference.opt.update(reference.params.data(), pipeline.gradient(), 1e-2, stats.clip_scale);
  EXPECT_EQ(0, std::memcmp(f.params.data(), reference.params.data(), n * sizeof(float)));
  // No clipping when the norm is below the limit.
  const StepStats loose = pipeline.step(K, write_values(n, noise), f.params.data(), f.opt, 1e-2, 1e6f);
  EXPECT_EQ(loose.clip_scale, 1.0f);
}

TEST(GradientPipeline, NonFiniteGradientSkipsTheUpdate) {
  const std::size_t n = 300, K = 6;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    GradientPipeline pipeline(n, {.threads = 4, .segment_floats = 32});
    Fixture f(n, 1e-2);
    const std::vector<float> before = f.params;
    auto work = [n, bad](std::size_t, std::size_t k, float* grad, bool first) {
      for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + noise(k, i);
      if (k == 2) grad[123] = bad;
      return 1.0;
    };
    const StepStats stats = pipeline.step(K, work, f.params.data(), f.opt, 1e-2, 1.0f);
    EXPECT_FALSE(stats.finite);
    EXPECT_EQ(0, std::memcmp(f.params.data(), before.data(), n * sizeof(float)));
    EXPECT_EQ(f.opt.step(), 0u);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(f.opt.m()[i], 0.0f);
    // The next, healthy step goes through.
    const StepStats good = pipeline.step(K, write_values(n, noise), f.params.data(), f.opt, 1e-2, 1.0f);
    EXPECT_TRUE(good.finite);
    EXPECT_EQ(f.opt.step(), 1u);
  }
}

TEST(GradientPipeline, HookSeesTheReducedGradientBeforeTheNorm) {
  const std::size_t n = 2000, K = 4;
  GradientPipeline pipeline(n, {.threads = 2, .segment_floats = 100});
  Fixture f(n);
  int calls = 0;
  pipeline.set_gradient_hook([&](float* grad, std::size_t size) {
    ++calls;
    ASSERT_EQ(size, n);
    for (std::size_t i = 0; i < size; ++i) grad[i] *= 2.0f;  // e.g. a sum over two processes
  });
  const StepStats stats = pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 0.0, 0.0f);
  EXPECT_EQ(calls, 1);
  double norm_sq = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float expected = 2.0f * 10.0f * static_cast<float>(i % 5 + 1);
    ASSERT_EQ(pipeline.gradient()[i], expected);
    norm_sq += static_cast<double>(expected) * static_cast<double>(expected);
  }
  EXPECT_NEAR(stats.grad_norm, std::sqrt(norm_sq), 1e-9 * std::sqrt(norm_sq));
}

// The stream (how a multi-process run starts its all-reduce buckets): on the
// calling thread only, a prefix that never shrinks and already holds its
// final values, ready == n exactly once, last, and before the hook; writes
// into the finished part (an in-place all-reduce) survive into the norm.
TEST(GradientPipeline, StreamSeesAGrowingFinalPrefixOnTheCallingThread) {
  const std::size_t n = 1021, K = 7;
  struct Setting {
    std::size_t threads, lanes;
    bool deterministic;
  };
  for (const Setting& s : {Setting{1, 0, false}, Setting{2, 0, false}, Setting{3, 0, true}, Setting{8, 0, false},
                           Setting{4, 2, false}, Setting{64, 1, false}}) {
    GradientPipeline pipeline(n, {.threads = s.threads, .lanes = s.lanes, .deterministic = s.deterministic,
                                  .segment_floats = 32});
    Fixture f(n);
    const std::thread::id caller = std::this_thread::get_id();
    std::size_t calls = 0, last_ready = 0, doubled = 0;
    bool wrong_thread = false, shrank = false, early_end = false, not_final = false, hook_first = false, ended = false;
    pipeline.set_gradient_stream([&](float* grad, std::size_t ready) {
      ++calls;
      wrong_thread |= std::this_thread::get_id() != caller;
      shrank |= ready < last_ready;
      early_end |= ended;
      ended = ready == n;
      for (std::size_t i = doubled; i < ready; ++i) {
        not_final |= grad[i] != 28.0f * static_cast<float>(i % 5 + 1);  // 1 + ... + K
        grad[i] *= 2.0f;
      }
      doubled = std::max(doubled, ready);
      last_ready = ready;
    });
    pipeline.set_gradient_hook([&](float*, std::size_t) { hook_first |= !ended; });
    for (int step = 0; step < 2; ++step) {
      calls = last_ready = doubled = 0;
      ended = false;
      const StepStats stats = pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 0.0, 0.0f);
      SCOPED_TRACE("threads " + std::to_string(s.threads) + " lanes " + std::to_string(s.lanes));
      EXPECT_GE(calls, 1u);
      EXPECT_TRUE(ended) << "no call with ready == n";
      EXPECT_FALSE(wrong_thread);
      EXPECT_FALSE(shrank);
      EXPECT_FALSE(early_end) << "a call after ready == n";
      EXPECT_FALSE(not_final) << "a float inside ready before its final value";
      EXPECT_FALSE(hook_first) << "the hook before the stream's last call";
      double norm_sq = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        const float expected = 56.0f * static_cast<float>(i % 5 + 1);
        ASSERT_EQ(pipeline.gradient()[i], expected) << i;
        norm_sq += static_cast<double>(expected) * static_cast<double>(expected);
      }
      EXPECT_NEAR(stats.grad_norm, std::sqrt(norm_sq), 1e-9 * std::sqrt(norm_sq));
    }
  }
}

TEST(GradientPipeline, WorkErrorPropagatesAndLeavesParamsUntouched) {
  const std::size_t n = 500, K = 9;
  GradientPipeline pipeline(n, {.threads = 3, .segment_floats = 64});
  Fixture f(n, 1e-2);
  const std::vector<float> before = f.params;
  auto failing = [n](std::size_t, std::size_t k, float* grad, bool first) {
    if (k == 3) throw std::runtime_error("micro-batch 3 failed");
    for (std::size_t i = 0; i < n; ++i) grad[i] = (first ? 0.0f : grad[i]) + integer_value(k, i);
    return 0.0;
  };
  EXPECT_THROW(pipeline.step(K, failing, f.params.data(), f.opt, 1e-2, 0.0f), std::runtime_error);
  EXPECT_EQ(0, std::memcmp(f.params.data(), before.data(), n * sizeof(float)));
  EXPECT_EQ(f.opt.step(), 0u);
  pipeline.step(K, write_values(n, integer_value), f.params.data(), f.opt, 1e-2, 0.0f);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pipeline.gradient()[i], 45.0f * static_cast<float>(i % 5 + 1));
}

TEST(GradientPipeline, RejectsBadArguments) {
  EXPECT_THROW(GradientPipeline(10, {.threads = 0}), std::invalid_argument);
  EXPECT_THROW(GradientPipeline(10, {.threads = 257}), std::invalid_argument);
  EXPECT_THROW(GradientPipeline(0, {.threads = 2}), std::invalid_argument);
  EXPECT_THROW(GradientPipeline(10, {.threads = 2, .segment_floats = 0}), std::invalid_argument);
  GradientPipeline pipeline(10, {.threads = 2});
  Fixture f(10), wrong(11);
  EXPECT_THROW(pipeline.step(0, write_values(10, integer_value), f.params.data(), f.opt, 0.0, 0.0f),
               std::invalid_argument);
  EXPECT_THROW(pipeline.step(2, write_values(10, integer_value), f.params.data(), wrong.opt, 0.0, 0.0f),
               std::invalid_argument);
}

TEST(GradientPipeline, ForEachWorkerUsesStableIndices) {
  GradientPipeline pipeline(10, {.threads = 5});
  std::vector<std::thread::id> first(5), second(5);
  pipeline.for_each_worker([&](std::size_t w) { first[w] = std::this_thread::get_id(); });
  pipeline.for_each_worker([&](std::size_t w) { second[w] = std::this_thread::get_id(); });
  EXPECT_EQ(first, second);
}

// More threads than compute lanes (the trainer's setting when threads exceed
// the cores): exact sums, lane indices below lanes(), one thread per lane at a
// time, and per-lane statistics.
TEST(GradientPipeline, FewerLanesThanThreadsKeepsExactSumsAndOneThreadPerLane) {
  for (std::size_t threads : {2u, 8u, 64u}) {
    for (std::size_t lanes : {1u, 2u, 3u}) {
      if (lanes > threads) continue;
      const std::size_t n = 1021;
      GradientPipeline pipeline(n, {.threads = threads, .lanes = lanes, .segment_floats = 16});
      ASSERT_EQ(pipeline.lanes(), lanes);
      Fixture f(n);
      std::vector<std::atomic<int>> in_lane(lanes);
      std::atomic<bool> bad_lane{false}, shared_lane{false};
      const MicroBatchFn inner = write_values(n, integer_value);
      const MicroBatchFn work = [&](std::size_t lane, std::size_t k, float* grad, bool first) {
        if (lane >= lanes) {
          bad_lane = true;
          return 0.0;
        }
        if (in_lane[lane].fetch_add(1) != 0) shared_lane = true;
        const double loss = inner(lane, k, grad, first);
        in_lane[lane].fetch_sub(1);
        return loss;
      };
      for (std::size_t K : {std::size_t{1}, lanes + 1, 2 * threads + 1}) {
        const StepStats stats = pipeline.step(K, work, f.params.data(), f.opt, 0.0, 0.0f);
        const float k_sum = static_cast<float>(K * (K + 1) / 2);
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_EQ(pipeline.gradient()[i], k_sum * static_cast<float>(i % 5 + 1))
              << "threads " << threads << " lanes " << lanes << " K " << K << " i " << i;
        ASSERT_EQ(stats.micro_batches_per_worker.size(), lanes);
        ASSERT_EQ(stats.idle_seconds.size(), lanes);
        ASSERT_EQ(std::accumulate(stats.micro_batches_per_worker.begin(), stats.micro_batches_per_worker.end(),
                                  std::size_t{0}),
                  K);
      }
      EXPECT_FALSE(bad_lane) << "a lane index >= lanes()";
      EXPECT_FALSE(shared_lane) << "two threads in one lane at once";
    }
  }
}

TEST(GradientPipeline, LanesAreCheckedAndFixedModesUseEveryThread) {
  EXPECT_THROW(GradientPipeline(10, {.threads = 2, .lanes = 3}), std::invalid_argument);
  EXPECT_EQ(GradientPipeline(10, {.threads = 4}).lanes(), 4u);
  EXPECT_EQ(GradientPipeline(10, {.threads = 4, .lanes = 2}).lanes(), 2u);
  EXPECT_EQ(GradientPipeline(10, {.threads = 4, .lanes = 2, .deterministic = true}).lanes(), 4u);
  EXPECT_EQ(GradientPipeline(10, {.threads = 4, .lanes = 2, .static_assignment = true}).lanes(), 4u);
  GradientPipeline pipeline(10, {.threads = 6, .lanes = 2});
  std::vector<std::atomic<int>> calls(6);
  pipeline.for_each_lane([&](std::size_t lane) { ++calls[lane]; });
  EXPECT_EQ(calls[0], 1);
  EXPECT_EQ(calls[1], 1);
  for (std::size_t w = 2; w < 6; ++w) EXPECT_EQ(calls[w], 0) << w;
}

// The lock count is measured (pthread_mutex_lock interposed), not assumed:
// a work function that takes a mutex once per micro-batch shows K of them.
TEST(GradientPipeline, BlockingLocksAreMeasuredInTheWorkFunctionToo) {
  const std::size_t n = 100, K = 9;
  GradientPipeline pipeline(n, {.threads = 3, .segment_floats = 16});
  Fixture f(n);
  std::mutex m;
  const MicroBatchFn inner = write_values(n, integer_value);
  const MicroBatchFn locking = [&](std::size_t w, std::size_t k, float* grad, bool first) {
    std::lock_guard lock(m);
    return inner(w, k, grad, first);
  };
  EXPECT_EQ(pipeline.step(K, inner, f.params.data(), f.opt, 0.0, 0.0f).blocking_locks, 0u);
  EXPECT_EQ(pipeline.step(K, locking, f.params.data(), f.opt, 0.0, 0.0f).blocking_locks, K);
}

// A lock that finds its mutex held by another thread counts as contended;
// one that finds it free does not.
TEST(LockCount, ContendedAreTheLocksThatFoundTheMutexHeld) {
  std::mutex m;
  const std::uint64_t locks_before = mutex_locks_so_far(), before = contended_mutex_locks_so_far();
  { const std::lock_guard free_lock(m); }
  EXPECT_EQ(mutex_locks_so_far() - locks_before, 1u);
  EXPECT_EQ(contended_mutex_locks_so_far(), before);
  m.lock();
  std::thread waiter([&] { const std::lock_guard lock(m); });
  // Keep holding it until the waiter has found it held (it then waits in the lock).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (contended_mutex_locks_so_far() == before && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  const std::uint64_t contended = contended_mutex_locks_so_far() - before;
  m.unlock();
  waiter.join();
  EXPECT_EQ(contended, 1u);
}

TEST(Baseline, SumsEveryMicroBatchUnderTheMutex) {
  const std::size_t n = 1001;
  for (std::size_t threads : {1u, 3u, 4u}) {
    const std::size_t K = 10;
    BaselineAccumulator baseline(n, threads);
    for (int step = 0; step < 2; ++step) {
      std::vector<float> grad(n, -1.0f);
      const BaselineStats stats = baseline.step(K, write_values(n, integer_value), grad.data());
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(grad[i], 55.0f * static_cast<float>(i % 5 + 1));
      EXPECT_EQ(stats.blocking_locks, K);
      EXPECT_EQ(stats.threads_created, K);
      EXPECT_DOUBLE_EQ(stats.loss_sum, 0.5 * 45.0);
    }
  }
  EXPECT_THROW(BaselineAccumulator(4, 0), std::invalid_argument);
  EXPECT_THROW(BaselineAccumulator(0, 2), std::invalid_argument);
}

}  // namespace
}  // namespace cllm::parallel
