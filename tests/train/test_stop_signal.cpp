// StopSignal keeps SIGINT/SIGTERM away from the threads that compute (oneDNN's
// JIT sgemm cannot take a signal frame, see stop_signal.h) and still sees them.
#include "train/stop_signal.h"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <gtest/gtest.h>

#include "parallel/worker_pool.h"

namespace cllm::train {
namespace {

bool blocks(int sig) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, sig) == 1;
}

bool wait_for_request(const StopSignal& s) {
  for (int i = 0; i < 500 && !s.requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return s.requested();
}

TEST(StopSignal, ComputeThreadsBlockTheSignalsAndTheWatcherTakesThem) {
  ASSERT_FALSE(blocks(SIGTERM));
  {
    const StopSignal stop;
    EXPECT_TRUE(blocks(SIGINT));
    EXPECT_TRUE(blocks(SIGTERM));
    parallel::WorkerPool pool(4);  // started after the StopSignal, as the trainer does
    std::atomic<int> blocking{0};
    pool.run([&](std::size_t) { blocking += blocks(SIGINT) && blocks(SIGTERM); });
    EXPECT_EQ(blocking.load(), 4);

    EXPECT_FALSE(stop.requested());
    ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);  // process-directed, like kill(1) or Ctrl-C
    EXPECT_TRUE(wait_for_request(stop));
    EXPECT_EQ(stop.signal_number(), SIGTERM);
  }
  EXPECT_FALSE(blocks(SIGTERM)) << "the destructor restores the mask";
}

TEST(StopSignal, EachInstanceStartsUnrequested) {
  const StopSignal stop;
  EXPECT_FALSE(stop.requested());
  ASSERT_EQ(::kill(::getpid(), SIGINT), 0);
  EXPECT_TRUE(wait_for_request(stop));
  EXPECT_EQ(stop.signal_number(), SIGINT);
}

}  // namespace
}  // namespace cllm::train
