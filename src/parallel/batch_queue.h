// Hands micro-batch indices 0..K-1 to workers without a lock.
//   dynamic:  one atomic counter; a worker takes the next index when it is
//             free, so a slow worker simply takes fewer.
//   fixed:    micro-batch i goes to worker i mod N (deterministic runs).
#pragma once

#include <atomic>
#include <cstddef>
#include <limits>

#include "parallel/worker_pool.h"

namespace cllm::parallel {

enum class Assignment { dynamic, fixed };

class BatchQueue {
 public:
  static constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

  // Starts a step of n_batches micro-batches over n_workers. Single-threaded,
  // before the workers start pulling.
  void reset(std::size_t n_batches, std::size_t n_workers, Assignment assignment) {
    n_batches_ = n_batches;
    n_workers_ = n_workers;
    assignment_ = assignment;
    next_.store(0, std::memory_order_relaxed);
  }

  // The next micro-batch for `worker`, which has already taken `taken` of
  // them in this step, or kNone when there is none left.
  std::size_t next(std::size_t worker, std::size_t taken) {
    if (assignment_ == Assignment::fixed) {
      if (next_.load(std::memory_order_relaxed) >= n_batches_) return kNone;  // stopped
      const std::size_t k = worker + taken * n_workers_;
      return k < n_batches_ ? k : kNone;
    }
    const std::size_t k = next_.fetch_add(1, std::memory_order_relaxed);
    return k < n_batches_ ? k : kNone;
  }

  // Hands out nothing more in this step (a worker failed).
  void stop() { next_.store(n_batches_, std::memory_order_relaxed); }

 private:
  std::size_t n_batches_ = 0;
  std::size_t n_workers_ = 1;
  Assignment assignment_ = Assignment::dynamic;
  alignas(kCacheLine) std::atomic<std::size_t> next_{0};
};

}  // namespace cllm::parallel
