#include "parallel/gradient_accumulator.h"

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "kernels/kernels.h"

namespace cllm::parallel {
namespace {

constexpr std::size_t kFloatsPerLine = kCacheLine / sizeof(float);
constexpr std::uint32_t kPending = 0;
constexpr std::uint32_t kEmpty = 1;
constexpr std::uint32_t kFirstWorker = 2;

std::size_t round_up_to_line(std::size_t n) { return (n + kFloatsPerLine - 1) / kFloatsPerLine * kFloatsPerLine; }

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

void AlignedFree::operator()(float* p) const { ::operator delete[](p, std::align_val_t{kCacheLine}); }

AlignedFloats make_aligned_floats(std::size_t n) {
  return AlignedFloats(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{kCacheLine})));
}

// State of one segment of the gradient. `claimed` is the ownership
// flag; the other fields are only touched by the owner, except `complete`,
// which sweepers read to skip finished segments and pollers to stream them.
struct alignas(kCacheLine) GradientAccumulator::Segment {
  std::atomic<bool> claimed{false};
  std::atomic<bool> complete{false};
  std::size_t slots_added = 0;  // publication slots consumed (data or empty)
  float* base = nullptr;        // the first published buffer with data: the others are added into it
  bool squares_current = false; // sum_squares is that of the segment's values now
  double sum_squares = 0.0;
};

GradientAccumulator::GradientAccumulator(std::size_t n_params, std::size_t n_workers, std::size_t segment_floats)
    : n_params_(n_params), n_workers_(n_workers) {
  if (n_params == 0) throw std::invalid_argument("gradient accumulator: the gradient must have at least 1 float");
  if (n_workers == 0 || n_workers > WorkerPool::kMaxThreads) {
    throw std::invalid_argument("gradient accumulator: workers must be between 1 and " +
                                std::to_string(WorkerPool::kMaxThreads) + ", got " + std::to_string(n_workers));
  }
  if (segment_floats == 0) throw std::invalid_argument("gradient accumulator: segment size must be >= 1 float");
  segment_floats_ = round_up_to_line(segment_floats);
  n_segments_ = (n_params + segment_floats_ - 1) / segment_floats_;
  stride_ = round_up_to_line(n_params);
  buffers_ = make_aligned_floats(stride_ * n_workers);
  segments_ = std::make_unique<Segment[]>(n_segments_);
  slots_ = std::make_unique<std::atomic<std::uint32_t>[]>(n_workers);
}

GradientAccumulator::~GradientAccumulator() = default;

std::size_t GradientAccumulator::segment_end(std::size_t j) const {
  return std::min(n_params_, (j + 1) * segment_floats_);
}

void GradientAccumulator::begin_step(bool worker_order) {
  worker_order_ = worker_order;
  for (std::size_t j = 0; j < n_segments_; ++j) {
    Segment& s = segments_[j];
    s.claimed.store(false, std::memory_order_relaxed);
    s.complete.store(false, std::memory_order_relaxed);
    s.slots_added = 0;
    s.base = nullptr;
    s.squares_current = false;
    s.sum_squares = 0.0;
  }
  for (std::size_t i = 0; i < n_workers_; ++i) slots_[i].store(kPending, std::memory_order_relaxed);
  published_.store(0, std::memory_order_relaxed);
  segments_done_.store(0, std::memory_order_relaxed);
}

void GradientAccumulator::publish(std::size_t w, bool has_data) {
  const std::size_t order = published_.fetch_add(1, std::memory_order_relaxed);
  const std::size_t slot = worker_order_ ? w : order;
  // Release: the buffer's contents happen-before any reader of the slot.
  slots_[slot].store(has_data ? kFirstWorker + static_cast<std::uint32_t>(w) : kEmpty, std::memory_order_release);
  events_.fetch_add(1, std::memory_order_release);
  events_.notify_all();
}

bool GradientAccumulator::advance_segment(std::size_t j, ReduceCounters& counters) {
  Segment& s = segments_[j];
  const float* sources[WorkerPool::kMaxThreads];
  std::size_t n_src = 0;
  std::size_t slot = s.slots_added;
  for (; slot < n_workers_; ++slot) {
    const std::uint32_t state = slots_[slot].load(std::memory_order_acquire);
    if (state == kPending) break;
    if (state == kEmpty) continue;
    float* published = buffer(state - kFirstWorker);
    // Slot order is the same for every segment, so every segment takes the same base.
    if (s.base == nullptr) {
      s.base = published;
    } else {
      sources[n_src++] = published;
    }
  }
  if (slot == s.slots_added) return false;
  s.slots_added = slot;
  const bool complete = slot == n_workers_;
  const std::size_t begin = segment_begin(j);
  const std::size_t count = segment_end(j) - begin;
  const auto t0 = Clock::now();
  if (n_src > 0) {
    s.sum_squares = kernels::active().add_n(s.base, sources, n_src, begin, count, /*accumulate=*/true);
    s.squares_current = true;
    counters.bytes += (n_src + 2) * count * sizeof(float);
    ++counters.passes;
  } else if (complete && s.base == nullptr) {
    // Every worker ran zero micro-batches: the gradient is zero (gradient() is buffer 0 then).
    kernels::active().zero(buffer(0) + begin, count);
    s.sum_squares = 0.0;
    counters.bytes += count * sizeof(float);
    ++counters.passes;
  } else if (complete && !s.squares_current) {
    // The base alone (one buffer with data): its squares, read in place.
    s.sum_squares = kernels::active().sum_squares(s.base + begin, count);
    counters.bytes += count * sizeof(float);
    ++counters.passes;
  }
  counters.add_seconds += seconds_since(t0);
  if (complete) {
    // Release: the segment's floats happen-before a poller's segment_complete().
    s.complete.store(true, std::memory_order_release);
    if (segments_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_segments_) {
      done_time_ = Clock::now();
      events_.fetch_add(1, std::memory_order_release);
      events_.notify_all();
    }
  }
  return true;
}

ReduceCounters GradientAccumulator::reduce(std::size_t w, const std::function<void()>& poll) {
  ReduceCounters counters;
  // Workers start their sweeps at different segments so they rarely collide.
  const std::size_t start = w * n_segments_ / n_workers_;
  for (;;) {
    const std::uint32_t seen = events_.load(std::memory_order_acquire);
    if (segments_done_.load(std::memory_order_acquire) == n_segments_) break;
    bool progress = false;
    for (std::size_t i = 0; i < n_segments_; ++i) {
      std::size_t j = start + i;
      if (j >= n_segments_) j -= n_segments_;
      Segment& s = segments_[j];
      if (s.complete.load(std::memory_order_relaxed)) continue;
      if (s.claimed.exchange(true, std::memory_order_acquire)) continue;  // taken: move on, never block
      const bool advanced = advance_segment(j, counters);
      s.claimed.store(false, std::memory_order_release);
      if (advanced && poll) poll();
      progress |= advanced;
    }
    if (!progress) {
      // Nothing to add until another worker publishes or the reduction ends.
      if (segments_done_.load(std::memory_order_acquire) == n_segments_) break;
      if (poll && published_.load(std::memory_order_relaxed) == n_workers_) {
        // Only other workers' passes are left: poll through them.
        poll();
        std::this_thread::yield();
        continue;
      }
      ++counters.waits;
      events_.wait(seen, std::memory_order_acquire);
    }
  }
  return counters;
}

std::size_t GradientAccumulator::gradient_worker() const {
  for (std::size_t slot = 0; slot < n_workers_; ++slot) {
    const std::uint32_t state = slots_[slot].load(std::memory_order_acquire);
    if (state >= kFirstWorker) return state - kFirstWorker;
  }
  return 0;
}

bool GradientAccumulator::segment_complete(std::size_t j) const {
  return segments_[j].complete.load(std::memory_order_acquire);
}

double GradientAccumulator::sum_squares() const {
  double total = 0.0;
  for (std::size_t j = 0; j < n_segments_; ++j) total += segments_[j].sum_squares;
  return total;
}

}  // namespace cllm::parallel
