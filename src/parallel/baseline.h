// The plan's "before" design, kept only to measure the pipeline against in
// the same run: micro-batches run in rounds of `threads`; each round creates
// one thread per micro-batch and joins them all; each thread computes into
// its own buffer, then adds it into the global gradient with a scalar loop
// under one global mutex.
#pragma once

#include <cstddef>
#include <vector>

#include "parallel/gradient_pipeline.h"

namespace cllm::parallel {

struct BaselineStats {
  double loss_sum = 0.0;
  double seconds = 0.0;
  double accumulate_seconds = 0.0;          // thread-seconds inside the locked add loop
  double exposed_accumulate_seconds = 0.0;  // per round: last compute end to join
  double idle_fraction = 0.0;               // 1 - compute thread-seconds / (threads * seconds)
  std::size_t blocking_locks = 0;           // pthread_mutex_lock calls in the process (measured, lock_count.h)
  std::size_t contended_locks = 0;          // of those, the ones that found the mutex held
  std::size_t threads_created = 0;
  std::size_t bytes_reduced = 0;
};

class BaselineAccumulator {
 public:
  // Allocates one buffer per thread of a round once, as the pipeline does, so
  // that only the designs differ. threads in [1, 256], n_params >= 1; throws
  // std::invalid_argument otherwise.
  BaselineAccumulator(std::size_t n_params, std::size_t threads);

  // Sums the gradients of micro-batches 0..K-1 (K >= 1) into grad (n_params
  // floats, overwritten). work is called with first = true and worker = the
  // index of the thread within its round.
  BaselineStats step(std::size_t K, const MicroBatchFn& work, float* grad);

 private:
  std::size_t n_params_;
  std::size_t threads_;
  std::vector<AlignedFloats> buffers_;
};

}  // namespace cllm::parallel
