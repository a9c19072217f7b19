// Sums the workers' private gradient buffers into one global gradient by
// segment ownership (a reduce-scatter inside one process), streaming while
// stragglers still compute.
//
// Each worker owns buffer(w) and fills it with its micro-batches. When it has
// no more, it publish()es the buffer (a release store into the next
// publication slot) and calls reduce(): it sweeps the segments of the
// gradient, try-claims each (atomic exchange; if taken it moves on, never
// blocks), adds every published buffer not yet added there with one add_n
// pass, and releases it. The sum is made in place, in the first published
// buffer with data (its worker is done with it): no extra gradient-sized
// buffer, and that buffer is never copied. One thread at a time writes a segment, so there are
// no lost updates and no float atomics. A worker whose sweep found nothing to
// do sleeps on an event counter bumped by every publication and by the final
// completion. reduce() returns once every segment holds all buffers.
//
// The sum of squares of each segment falls out of its last add_n pass, so
// the gradient norm costs no extra pass.
//
// A worker may pass reduce() a poll callback (the pipeline's calling thread
// does, to stream finished segments out, e.g. to MPI): it runs after each of
// that worker's passes and, once every buffer is published, instead of
// sleeping (other workers completing segments wake nobody), so it sees
// segments complete while the reduction runs.
//
// Order: in worker order (deterministic) publication slot i belongs to worker
// i, so each element is the left fold buf_0 + buf_1 + ... + buf_{N-1} however
// the passes are chunked, bitwise reproducible. Otherwise slots are taken in
// publication order.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "parallel/worker_pool.h"

namespace cllm::parallel {

using Clock = std::chrono::steady_clock;
inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct AlignedFree {
  void operator()(float* p) const;
};
// Floats on cache-line-aligned storage (uninitialized).
using AlignedFloats = std::unique_ptr<float[], AlignedFree>;
AlignedFloats make_aligned_floats(std::size_t n);

// What one worker did in reduce().
struct ReduceCounters {
  double add_seconds = 0.0;   // time inside add_n passes
  std::size_t bytes = 0;      // bytes read + written by those passes
  std::size_t passes = 0;     // add_n calls
  std::size_t waits = 0;      // atomic waits for a publication (a futex, not a lock)
};

class GradientAccumulator {
 public:
  // n_params >= 1, n_workers in [1, WorkerPool::kMaxThreads], segment_floats
  // >= 1 (rounded up to a whole number of cache lines); throws
  // std::invalid_argument otherwise. Allocates n_workers buffers of
  // n_params floats.
  GradientAccumulator(std::size_t n_params, std::size_t n_workers, std::size_t segment_floats);
  ~GradientAccumulator();

  std::size_t size() const { return n_params_; }
  std::size_t workers() const { return n_workers_; }
  std::size_t segments() const { return n_segments_; }
  std::size_t segment_begin(std::size_t j) const { return j * segment_floats_; }
  std::size_t segment_end(std::size_t j) const;

  // Worker w's private gradient buffer (n_params floats).
  float* buffer(std::size_t w) { return buffers_.get() + w * stride_; }

  // Single-threaded, before the workers of a step start. worker_order: sum
  // in worker order 0..N-1 (deterministic) instead of publication order.
  void begin_step(bool worker_order);
  // Worker w has finished its micro-batches; has_data is false when it ran
  // none (or failed), and then its buffer is not read. Once per step per worker.
  void publish(std::size_t w, bool has_data);
  // Called by every worker after its publish(); returns when the whole
  // gradient is reduced. poll (may be empty): see the top of this file.
  ReduceCounters reduce(std::size_t w, const std::function<void()>& poll = {});
  // True once segment j holds all buffers; acquire, so its floats are then
  // visible to the caller, and no worker touches them again this step.
  bool segment_complete(std::size_t j) const;

  // The reduced gradient: the first published buffer with data (buffer 0,
  // zeroed, when no worker had data). Known once every worker has published,
  // so from the first segment_complete() on; whole after every reduce() has
  // returned, and valid until the next begin_step().
  float* gradient() { return buffer(gradient_worker()); }
  const float* gradient() const { return buffers_.get() + gradient_worker() * stride_; }
  // Squared L2 norm of the reduced gradient, from the reduce passes (summed
  // in segment order, so deterministic).
  double sum_squares() const;
  // When the last segment was completed.
  Clock::time_point done_time() const { return done_time_; }

 private:
  struct Segment;
  std::size_t gradient_worker() const;
  // Adds the published buffers not yet in segment j; the caller owns j.
  bool advance_segment(std::size_t j, ReduceCounters& counters);

  std::size_t n_params_;
  std::size_t n_workers_;
  std::size_t segment_floats_;
  std::size_t n_segments_;
  std::size_t stride_;
  AlignedFloats buffers_;
  std::unique_ptr<Segment[]> segments_;
  // Publication slots: kPending, kEmpty, or kFirstWorker + w.
  std::unique_ptr<std::atomic<std::uint32_t>[]> slots_;
  bool worker_order_ = false;
  Clock::time_point done_time_{};
  // Publications this step (in publication order, also the next slot).
  alignas(kCacheLine) std::atomic<std::size_t> published_{0};
  alignas(kCacheLine) std::atomic<std::size_t> segments_done_{0};
  // Bumped by every publication and by the final completion; sleepers wait on it.
  alignas(kCacheLine) std::atomic<std::uint32_t> events_{0};
};

}  // namespace cllm::parallel
