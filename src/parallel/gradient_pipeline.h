// One optimizer step over K micro-batches on a persistent pool of N workers:
//
//   BatchQueue ──► worker w: work(w, k, buffer_w, first) for each k it takes
//              ──► publish buffer_w ──► streaming segment reduce (+ fused norm)
//                  [gradient stream: the calling thread hands on the finished
//                   front of the gradient, e.g. to a bucketed all-reduce]
//              ──► [gradient hook, e.g. waits for that all-reduce]
//              ──► global norm ──► clip factor ──► AdamW, segment-parallel
//
// No mutex is taken during the step: the queue, segment ownership and the
// publication slots are atomics. Loss and gradient are sums over the
// micro-batches (the work function scales them, e.g. by 1/K, to make means).
// A micro-batch here is whatever the work function runs as one unit:
// dist::DataParallelStep hands it the work items of parallel::split_work,
// pieces of the trainer's micro-batches when there are fewer than lanes.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "optim/adamw.h"
#include "parallel/batch_queue.h"
#include "parallel/gradient_accumulator.h"
#include "parallel/worker_pool.h"

namespace cllm::parallel {

// Runs micro-batch `micro_batch` on lane `worker` (index in [0, lanes()),
// one thread at a time per lane) and puts its gradient into grad (n_params floats): when
// `first` is true the buffer holds garbage from an earlier step and the
// function must overwrite it (or zero it first); otherwise it must add to it.
// Returns the micro-batch's loss. May throw: the step then rethrows it and
// leaves the parameters untouched.
using MicroBatchFn =
    std::function<double(std::size_t worker, std::size_t micro_batch, float* grad, bool first)>;

// Called once per step on the reduced local gradient before the norm, e.g.
// to all-reduce it across processes. May modify grad in place.
using GradientHook = std::function<void(float* grad, std::size_t n)>;

// Called during the reduction on the thread that called step() (worker 0,
// the only one that may call MPI under MPI_THREAD_FUNNELED), after each of
// its segment passes and while it waits for other workers' passes: grad[0,
// ready) holds its final local value and no worker touches it again this
// step, so the stream may hand it on (e.g. start an all-reduce of the
// buckets inside it) and modify it in place. ready never decreases and is
// below n in every call but the last of the step, which has ready == n and
// comes before the gradient hook.
using GradientStream = std::function<void(float* grad, std::size_t ready)>;

inline constexpr std::size_t kDefaultSegmentFloats = std::size_t{1} << 15;  // 128 KiB

struct PipelineOptions {
  std::size_t threads = 1;
  // Compute lanes: how many workers compute a step, each with its own
  // gradient buffer (the work function's `worker` index is the lane).
  // 0 = all threads. With fewer lanes than threads (the trainer sets lanes to
  // the cores it may use), the calling thread (lane 0, the one a gradient
  // stream needs) and the next `lanes` - 1 workers to start a step take its
  // micro-batches from the dynamic queue and the others sit it out, so
  // more threads than cores cost no extra buffers, workspaces or cache.
  // Deterministic and static modes use every thread (a fixed assignment
  // needs them all).
  std::size_t lanes = 0;
  // Static assignment (micro-batch i on worker i mod N) and buffers summed in
  // worker order: bitwise identical results run to run.
  bool deterministic = false;
  // Static assignment without the fixed reduction order.
  bool static_assignment = false;
  std::size_t segment_floats = kDefaultSegmentFloats;
};

// The lanes a pipeline with these options computes on (lanes() below), for
// planning memory before making one. Throws std::invalid_argument for
// lanes above threads.
std::size_t compute_lanes(const PipelineOptions& options);

struct StepStats {
  double loss_sum = 0.0;   // sum over micro-batches, added in micro-batch order
  double grad_norm = 0.0;  // global L2 norm before clipping
  float clip_scale = 1.0f;
  bool finite = true;      // false: non-finite norm, update skipped
  bool rejected = false;   // true: the caller's accept_loss said no, update skipped
  double seconds = 0.0;    // the whole step
  // Compute + reduce phase (wall).
  double reduce_phase_seconds = 0.0;
  // Thread-seconds spent adding buffers into the global gradient.
  double accumulate_seconds = 0.0;
  // Wall time from the last worker's end of compute to the end of the
  // reduction: the accumulation not hidden behind compute.
  double exposed_accumulate_seconds = 0.0;
  // Hook (if any) + norm + AdamW (wall).
  double optimizer_seconds = 0.0;
  // Per lane, within the compute + reduce phase: time in the work function,
  // and time neither computing nor adding (waiting, sleeping, scanning).
  std::vector<double> compute_seconds;
  std::vector<double> idle_seconds;
  std::vector<std::size_t> micro_batches_per_worker;
  // pthread_mutex_lock calls in the whole process during the step (measured,
  // lock_count.h), the work function's included: the pipeline takes none.
  std::size_t blocking_locks = 0;
  std::size_t contended_locks = 0;  // of those, the ones that found the mutex held
  std::size_t reduce_waits = 0;    // atomic waits of idle workers for a publication
  std::size_t bytes_reduced = 0;   // bytes read + written by the reduction
};

class GradientPipeline {
 public:
  // Creates the worker pool and n_params-float buffers per lane once.
  // Throws std::invalid_argument for threads outside [1, 256], lanes above
  // threads, n_params 0 or segment_floats 0.
  GradientPipeline(std::size_t n_params, PipelineOptions options);

  // One optimizer step: runs micro-batches 0..K-1 (K >= 1), reduces their
  // gradients, calls the hook, computes the global norm, clips to max_norm
  // (0 = off) and applies opt (opt.size() must be n_params) with learning
  // rate lr, segment-parallel on the workers. A non-finite norm skips the
  // update (params, moments and opt.step() untouched) and sets finite=false;
  // so does accept_loss (when given) returning false for the step's loss sum
  // (e.g. a loss spike), which sets rejected=true.
  StepStats step(std::size_t K, const MicroBatchFn& work, float* params, optim::AdamW& opt, double lr,
                 float max_norm, const std::function<bool(double loss_sum)>& accept_loss = {});

  // Installs (or clears, with an empty function) the gradient hook.
  void set_gradient_hook(GradientHook hook) { hook_ = std::move(hook); }
  // Installs (or clears) the gradient stream.
  void set_gradient_stream(GradientStream stream) { stream_ = std::move(stream); }

  // Runs fn(w) on every worker w at once (w = 0 on the calling thread), e.g.
  // to build per-worker state on the thread that will use it.
  void for_each_worker(const std::function<void(std::size_t worker)>& fn) { pool_.run(fn); }
  // Runs fn(lane) for every lane at once, each on its own worker: to build
  // per-lane state (workspaces) or to run other work spread like a step.
  void for_each_lane(const std::function<void(std::size_t lane)>& fn);

  // The reduced gradient of the last step (before clipping).
  const float* gradient() const { return accumulator_.gradient(); }
  std::size_t size() const { return n_params_; }
  std::size_t threads() const { return pool_.threads(); }
  std::size_t lanes() const { return lanes_; }
  const PipelineOptions& options() const { return options_; }

 private:
  // Runs fn(segment, begin, end) for every segment, spread over the workers.
  void for_each_segment(const std::function<void(std::size_t segment, std::size_t begin, std::size_t end)>& fn);

  std::size_t n_params_;
  PipelineOptions options_;
  std::size_t lanes_;
  WorkerPool pool_;
  BatchQueue queue_;
  GradientAccumulator accumulator_;
  GradientHook hook_;
  GradientStream stream_;
};

}  // namespace cllm::parallel
