// WorkerPool and BatchQueue: every worker runs once per run with a stable
// index, errors propagate, bad sizes are refused, the queue hands out each
// micro-batch once.
#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "parallel/batch_queue.h"
#include "parallel/worker_pool.h"

namespace cllm::parallel {
namespace {

TEST(WorkerPool, RejectsZeroAndTooMany) {
  EXPECT_THROW(WorkerPool(0), std::invalid_argument);
  EXPECT_THROW(WorkerPool(257), std::invalid_argument);
  try {
    WorkerPool pool(0);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("between 1 and 256"), std::string::npos) << e.what();
  }
}

TEST(WorkerPool, EveryWorkerOncePerRunWithStableThreads) {
  for (std::size_t n : {1u, 2u, 3u, 17u}) {
    WorkerPool pool(n);
    std::vector<std::thread::id> ids(n);
    pool.run([&](std::size_t w) { ids[w] = std::this_thread::get_id(); });
    EXPECT_EQ(ids[0], std::this_thread::get_id());  // worker 0 is the caller
    for (int run = 0; run < 200; ++run) {
      std::vector<std::atomic<int>> calls(n);
      pool.run([&](std::size_t w) {
        calls[w].fetch_add(1);
        EXPECT_EQ(ids[w], std::this_thread::get_id());
      });
      for (std::size_t w = 0; w < n; ++w) ASSERT_EQ(calls[w].load(), 1) << "worker " << w << " run " << run;
    }
  }
}

TEST(WorkerPool, MaxThreadsRun) {
  WorkerPool pool(WorkerPool::kMaxThreads);
  std::atomic<std::size_t> sum{0};
  pool.run([&](std::size_t w) { sum.fetch_add(w + 1); });
  EXPECT_EQ(sum.load(), 256u * 257u / 2u);
}

TEST(WorkerPool, RethrowsTheLowestWorkersErrorAndStaysUsable) {
  WorkerPool pool(4);
  try {
    pool.run([](std::size_t w) {
      if (w >= 2) throw std::runtime_error("worker " + std::to_string(w));
    });
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "worker 2");
  }
  std::atomic<int> ran{0};
  pool.run([&](std::size_t) { ran.fetch_add(1); });
  EXPECT_EQ(ran.load(), 4);
}

TEST(BatchQueue, DynamicHandsOutEachIndexOnce) {
  const std::size_t K = 1000, n = 4;
  WorkerPool pool(n);
  BatchQueue queue;
  queue.reset(K, n, Assignment::dynamic);
  std::vector<std::atomic<int>> seen(K);
  pool.run([&](std::size_t w) {
    std::size_t taken = 0;
    for (std::size_t k; (k = queue.next(w, taken)) != BatchQueue::kNone; ++taken) seen[k].fetch_add(1);
  });
  for (std::size_t k = 0; k < K; ++k) ASSERT_EQ(seen[k].load(), 1) << k;
}

TEST(BatchQueue, FixedAssignsRoundRobin) {
  BatchQueue queue;
  queue.reset(7, 3, Assignment::fixed);
  std::vector<std::size_t> got;
  for (std::size_t taken = 0;; ++taken) {
    const std::size_t k = queue.next(1, taken);
    if (k == BatchQueue::kNone) break;
    got.push_back(k);
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{1, 4}));
  queue.stop();
  EXPECT_EQ(queue.next(0, 0), BatchQueue::kNone);
}

}  // namespace
}  // namespace cllm::parallel
