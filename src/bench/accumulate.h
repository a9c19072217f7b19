// `cllm bench accumulate`'s measurements: one optimizer step of the gradient
// pipeline with a synthetic work function (busy compute of adjustable, uneven
// duration, then the micro-batch's gradient written into the worker's
// buffer), per thread count, against the plan's "before" design (threads per
// round, one global mutex, scalar add) and memcpy measured in the same run.
#pragma once

#include <cstddef>
#include <memory>

#include <nlohmann/json.hpp>

#include "parallel/gradient_pipeline.h"

namespace cllm::bench {

struct AccumulateOptions {
  std::size_t params = 0;  // gradient floats
  std::size_t micro_batches = 12;
  double work_ms = 20.0;     // mean compute per micro-batch
  double unevenness = 0.5;   // each lasts work_ms * (1 +- this)
  std::size_t steps = 3;     // measured, after one warm-up
  std::size_t segment_floats = parallel::kDefaultSegmentFloats;
  bool deterministic = false;
  bool baseline = true;
};

class SyntheticWork;

class AccumulateBench {
 public:
  // Builds the synthetic work and measures memcpy on buffers of the
  // gradient's size. The options must be valid (the CLI checks them).
  explicit AccumulateBench(const AccumulateOptions& options);
  ~AccumulateBench();
  double memcpy_gb_per_s() const { return memcpy_gbs_; }
  // One thread count: the medians of the steps of the pipeline ("pipeline")
  // and of the baseline ("baseline", with the speedups against it), with the
  // options, as one JSON record.
  nlohmann::json run(std::size_t threads) const;

 private:
  AccumulateOptions o_;
  std::unique_ptr<const SyntheticWork> synthetic_;
  double memcpy_gbs_;
};

}  // namespace cllm::bench
