#include "parallel/baseline.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/kernels.h"
#include "parallel/lock_count.h"

namespace cllm::parallel {

BaselineAccumulator::BaselineAccumulator(std::size_t n_params, std::size_t threads)
    : n_params_(n_params), threads_(threads) {
  if (threads == 0 || threads > WorkerPool::kMaxThreads) {
    throw std::invalid_argument("threads must be between 1 and " + std::to_string(WorkerPool::kMaxThreads) +
                                ", got " + std::to_string(threads));
  }
  if (n_params == 0) throw std::invalid_argument("baseline: the gradient must have at least 1 float");
  for (std::size_t t = 0; t < threads; ++t) buffers_.push_back(make_aligned_floats(n_params));
}

BaselineStats BaselineAccumulator::step(std::size_t K, const MicroBatchFn& work, float* grad) {
  if (K == 0) throw std::invalid_argument("baseline: a step needs at least 1 micro-batch");
  // The "before" adds with a plain scalar loop: the non-vectorized kernel.
  const auto& scalar = kernels::table_for(kernels::Target::scalar);

  BaselineStats stats;
  const std::uint64_t locks_before = mutex_locks_so_far(), contended_before = contended_mutex_locks_so_far();
  std::mutex global;
  std::vector<double> losses(K, 0.0);
  std::vector<double> compute(threads_, 0.0), add(threads_, 0.0);
  std::vector<Clock::time_point> compute_end(threads_);
  std::vector<std::exception_ptr> errors(threads_);
  const auto t_start = Clock::now();
  scalar.zero(grad, n_params_);
  for (std::size_t round = 0; round * threads_ < K; ++round) {
    const auto t_round = Clock::now();
    const std::size_t first = round * threads_;
    const std::size_t count = std::min(threads_, K - first);
    std::vector<std::thread> crew;
    for (std::size_t t = 0; t < count; ++t) {
      crew.emplace_back([&, t] {
        const auto t0 = Clock::now();
        try {
          losses[first + t] = work(t, first + t, buffers_[t].get(), true);
        } catch (...) {
          errors[t] = std::current_exception();
          return;
        }
        compute_end[t] = Clock::now();
        compute[t] += seconds_between(t0, compute_end[t]);
        std::lock_guard lock(global);
        const auto t1 = Clock::now();
        scalar.add(grad, buffers_[t].get(), n_params_);
        add[t] += seconds_between(t1, Clock::now());
      });
    }
    for (auto& th : crew) th.join();
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    const auto t_joined = Clock::now();
    stats.threads_created += count;
    Clock::time_point last = t_round;
    for (std::size_t t = 0; t < count; ++t) last = std::max(last, compute_end[t]);
    stats.exposed_accumulate_seconds += seconds_between(last, t_joined);
  }
  stats.seconds = seconds_between(t_start, Clock::now());
  stats.blocking_locks = static_cast<std::size_t>(mutex_locks_so_far() - locks_before);
  stats.contended_locks = static_cast<std::size_t>(contended_mutex_locks_so_far() - contended_before);
  double compute_total = 0.0;
  for (std::size_t t = 0; t < threads_; ++t) {
    compute_total += compute[t];
    stats.accumulate_seconds += add[t];
  }
  for (double loss : losses) stats.loss_sum += loss;
  stats.idle_fraction = 1.0 - compute_total / (static_cast<double>(threads_) * stats.seconds);
  stats.bytes_reduced = (3 * K + 1) * n_params_ * sizeof(float);  // zero, then per buffer: read src + dst, write dst
  return stats;
}

}  // namespace cllm::parallel
