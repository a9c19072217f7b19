#include "parallel/worker_pool.h"

#include <sched.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace cllm::parallel {
namespace {

// Spinning before sleeping pays off only when every worker has a core;
// with more workers than cores a spinning worker steals time from one
// that computes.
constexpr std::size_t kSpinIterations = 20000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits until `value` differs from `old`: spins, then sleeps on a futex.
template <typename T>
T wait_change(const std::atomic<T>& value, T old, std::size_t spins) {
  for (std::size_t i = 0; i < spins; ++i) {
    const T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
    cpu_relax();
  }
  value.wait(old, std::memory_order_acquire);
  return value.load(std::memory_order_acquire);
}

}  // namespace

std::size_t available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

WorkerPool::WorkerPool(std::size_t threads) : n_threads_(threads) {
  if (threads == 0 || threads > kMaxThreads) {
    throw std::invalid_argument("threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " +
                                std::to_string(threads));
  }
  spin_iterations_ = threads <= available_cores() ? kSpinIterations : 0;
  errors_.resize(threads);
  threads_.reserve(threads - 1);
  for (std::size_t w = 1; w < threads; ++w) threads_.emplace_back([this, w] { worker_main(w); });
}

WorkerPool::~WorkerPool() {
  stopping_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::execute(std::size_t w) {
  try {
    (*job_)(w);
  } catch (...) {
    errors_[w] = std::current_exception();
  }
}

void WorkerPool::worker_main(std::size_t w) {
  std::uint32_t seen = 0;
  for (;;) {
    seen = wait_change(generation_, seen, spin_iterations_);
    if (stopping_.load(std::memory_order_relaxed)) return;
    execute(w);
    // The last one out wakes the caller.
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_one();
  }
}

void WorkerPool::run(const std::function<void(std::size_t)>& fn) {
  job_ = &fn;
  for (auto& e : errors_) e = nullptr;
  const auto helpers = static_cast<std::uint32_t>(n_threads_ - 1);
  if (helpers > 0) {
    remaining_.store(helpers, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes job_ and remaining_
    generation_.notify_all();
  }
  execute(0);
  for (std::uint32_t left = remaining_.load(std::memory_order_acquire); left != 0;) {
    left = wait_change(remaining_, left, spin_iterations_);
  }
  job_ = nullptr;
  for (auto& e : errors_) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cllm::parallel
