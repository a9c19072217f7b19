#include "parallel/gradient_pipeline.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"
#include "parallel/lock_count.h"

namespace cllm::parallel {
namespace {

// What one worker did in the compute + reduce phase; one cache line each.
struct alignas(kCacheLine) WorkerRecord {
  double compute_seconds = 0.0;
  std::size_t micro_batches = 0;
  Clock::time_point compute_end{};
  ReduceCounters reduce;
  std::exception_ptr error;
};


}  // namespace

std::size_t compute_lanes(const PipelineOptions& o) {
  if (o.lanes > o.threads) {
    throw std::invalid_argument("gradient pipeline: " + std::to_string(o.lanes) + " compute lanes for " +
                                std::to_string(o.threads) + " threads (lanes must be at most threads)");
  }
  const bool fixed = o.deterministic || o.static_assignment;
  return o.lanes == 0 || fixed ? o.threads : o.lanes;
}

GradientPipeline::GradientPipeline(std::size_t n_params, PipelineOptions options)
    : n_params_(n_params),
      options_(options),
      lanes_(compute_lanes(options)),
      pool_(options.threads),
      accumulator_(n_params, lanes_, options.segment_floats) {}

void GradientPipeline::for_each_lane(const std::function<void(std::size_t)>& fn) {
  pool_.run([&](std::size_t w) {
    if (w < lanes_) fn(w);
  });
}

void GradientPipeline::for_each_segment(
    const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) {
  alignas(kCacheLine) std::atomic<std::size_t> next{0};
  const std::size_t n = accumulator_.segments();
  for_each_lane([&](std::size_t) {
    for (std::size_t j; (j = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      fn(j, accumulator_.segment_begin(j), accumulator_.segment_end(j));
    }
  });
}

StepStats GradientPipeline::step(std::size_t K, const MicroBatchFn& work, float* params, optim::AdamW& opt,
                                 double lr, float max_norm, const std::function<bool(double)>& accept_loss) {
  if (K == 0) throw std::invalid_argument("gradient pipeline: a step needs at least 1 micro-batch");
  if (opt.size() != n_params_) {
    throw std::invalid_argument("gradient pipeline: optimizer has " + std::to_string(opt.size()) +
                                " parameters, expected " + std::to_string(n_params_));
  }
  const std::size_t n = lanes_;
  const std::uint64_t locks_before = mutex_locks_so_far(), contended_before = contended_mutex_locks_so_far();
  const auto t_start = Clock::now();
  queue_.reset(K, n, options_.deterministic || options_.static_assignment ? Assignment::fixed : Assignment::dynamic);
  accumulator_.begin_step(options_.deterministic);
  std::vector<double> losses(K, 0.0);
  std::vector<WorkerRecord> records(n);
  // With every thread a lane, worker w is lane w (fixed assignment relies on
  // it); otherwise the calling thread takes lane 0 (the stream runs there)
  // and the first other workers to arrive take the rest.
  alignas(kCacheLine) std::atomic<std::size_t> next_lane{1};
  // Leading segments complete, as lane 0's poll has seen them.
  std::size_t ready_segments = 0;
  const std::size_t n_segments = accumulator_.segments();
  const auto poll = [&] {
    while (ready_segments < n_segments && accumulator_.segment_complete(ready_segments)) ++ready_segments;
    // All of it is ready only once reduce() has returned (the last call,
    // below); where it lies is known from the first complete segment on.
    if (ready_segments > 0 && ready_segments < n_segments)
      stream_(accumulator_.gradient(), accumulator_.segment_begin(ready_segments));
  };

  pool_.run([&](std::size_t w) {
    const std::size_t lane =
        n == pool_.threads() || w == 0 ? w : next_lane.fetch_add(1, std::memory_order_relaxed);
    if (lane >= n) return;  // more threads than lanes: this one sits the step out
    WorkerRecord& r = records[lane];
    float* grad = accumulator_.buffer(lane);
    try {
      for (std::size_t k; (k = queue_.next(lane, r.micro_batches)) != BatchQueue::kNone;) {
        const auto t0 = Clock::now();
        losses[k] = work(lane, k, grad, r.micro_batches == 0);
        r.compute_seconds += seconds_between(t0, Clock::now());
        ++r.micro_batches;
      }
    } catch (...) {
      r.error = std::current_exception();
      queue_.stop();
    }
    r.compute_end = Clock::now();
    // A failed worker still publishes (as empty) so the others finish.
    accumulator_.publish(lane, r.micro_batches > 0 && !r.error);
    if (w == 0 && stream_) {
      r.reduce = accumulator_.reduce(lane, poll);
      stream_(accumulator_.gradient(), n_params_);
    } else {
      r.reduce = accumulator_.reduce(lane);
    }
  });
  const auto t_reduced = Clock::now();
  for (const auto& r : records) {
    if (r.error) std::rethrow_exception(r.error);
  }

  StepStats stats;
  stats.reduce_phase_seconds = seconds_between(t_start, t_reduced);
  Clock::time_point last_compute_end = t_start;
  for (const auto& r : records) {
    last_compute_end = std::max(last_compute_end, r.compute_end);
    stats.accumulate_seconds += r.reduce.add_seconds;
    stats.bytes_reduced += r.reduce.bytes;
    stats.reduce_waits += r.reduce.waits;
    stats.compute_seconds.push_back(r.compute_seconds);
    stats.idle_seconds.push_back(
        std::max(0.0, stats.reduce_phase_seconds - r.compute_seconds - r.reduce.add_seconds));
    stats.micro_batches_per_worker.push_back(r.micro_batches);
  }
  stats.exposed_accumulate_seconds = std::max(0.0, seconds_between(last_compute_end, accumulator_.done_time()));
  for (double loss : losses) stats.loss_sum += loss;  // micro-batch order: deterministic

  float* grad = accumulator_.gradient();
  double sum_squares = 0.0;
  if (hook_ || stream_) {
    // The hook and the stream may change the gradient, so the fused norm no
    // longer holds.
    if (hook_) hook_(grad, n_params_);
    std::vector<double> per_segment(accumulator_.segments(), 0.0);
    for_each_segment([&](std::size_t j, std::size_t begin, std::size_t end) {
      per_segment[j] = kernels::active().sum_squares(grad + begin, end - begin);
    });
    for (double s : per_segment) sum_squares += s;  // segment order: deterministic
  } else {
    sum_squares = accumulator_.sum_squares();
  }
  stats.grad_norm = std::sqrt(sum_squares);
  stats.finite = std::isfinite(stats.grad_norm);
  stats.rejected = stats.finite && accept_loss && !accept_loss(stats.loss_sum);
  if (stats.finite && !stats.rejected) {
    stats.clip_scale = optim::clip_scale(stats.grad_norm, max_norm);
    opt.begin_step();
    for_each_segment([&](std::size_t, std::size_t begin, std::size_t end) {
      opt.update_range(params, grad, begin, end, lr, stats.clip_scale);
    });
  }
  const auto t_end = Clock::now();
  stats.optimizer_seconds = seconds_between(t_reduced, t_end);
  stats.seconds = seconds_between(t_start, t_end);
  stats.blocking_locks = static_cast<std::size_t>(mutex_locks_so_far() - locks_before);
  stats.contended_locks = static_cast<std::size_t>(contended_mutex_locks_so_far() - contended_before);
  return stats;
}

}  // namespace cllm::parallel
