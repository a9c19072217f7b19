#include "bench/accumulate.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "optim/adamw.h"
#include "parallel/baseline.h"

namespace cllm::bench {

using parallel::Clock;

// Micro-batch k computes for work_ms * (1 + unevenness * u_k), u_k spread
// over [-1, 1] in a scrambled order, so durations differ and stragglers
// exist; then writes its gradient (a fixed pattern) into the buffer.
class SyntheticWork {
 public:
  SyntheticWork(const AccumulateOptions& o, std::size_t n) : n_(n), micro_batches_(o.micro_batches) {
    for (std::size_t k = 0; k < o.micro_batches; ++k) {
      const double u = o.micro_batches < 2 ? 0.0
                                           : 2.0 * static_cast<double>((k * 7) % o.micro_batches) /
                                                     static_cast<double>(o.micro_batches - 1) -
                                                 1.0;
      durations_.push_back(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(o.work_ms * (1.0 + o.unevenness * u))));
    }
    pattern_ = parallel::make_aligned_floats(n);
    for (std::size_t i = 0; i < n; ++i) pattern_[i] = static_cast<float>(i % 251) * 0.25f;
  }

  double operator()(std::size_t, std::size_t k, float* grad, bool first) const {
    const auto deadline = Clock::now() + durations_[k];
    while (Clock::now() < deadline) {
    }
    const auto& kern = kernels::active();
    if (first) {
      kern.copy(grad, pattern_.get(), n_);
    } else {
      kern.add(grad, pattern_.get(), n_);
    }
    return 1.0;
  }

  // Whether grad is K times the pattern (exact: the values are small multiples of 1/4).
  bool check(const float* grad) const {
    const float k = static_cast<float>(micro_batches_);
    for (std::size_t i = 0; i < n_; i += std::max<std::size_t>(1, n_ / 4099)) {
      if (grad[i] != k * pattern_[i]) return false;
    }
    return grad[n_ - 1] == k * pattern_[n_ - 1];
  }

 private:
  std::size_t n_;
  std::size_t micro_batches_;
  std::vector<Clock::duration> durations_;
  parallel::AlignedFloats pattern_;
};

namespace {

double measure_memcpy_gb_per_s(std::size_t n) {
  auto a = parallel::make_aligned_floats(n), b = parallel::make_aligned_floats(n);
  std::memset(a.get(), 1, n * sizeof(float));
  std::memset(b.get(), 2, n * sizeof(float));
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    std::memcpy(b.get(), a.get(), n * sizeof(float));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n * sizeof(float)) / s / 1e9);
  }
  return best;
}

template <class Stats>
const Stats& median_by_seconds(std::vector<Stats>& runs) {
  std::sort(runs.begin(), runs.end(), [](const Stats& a, const Stats& b) { return a.seconds < b.seconds; });
  return runs[runs.size() / 2];
}

nlohmann::json pipeline_json(const parallel::StepStats& s) {
  const double threads = static_cast<double>(s.compute_seconds.size());
  const double idle = std::accumulate(s.idle_seconds.begin(), s.idle_seconds.end(), 0.0);
  return {{"step_ms", s.seconds * 1e3},
          {"reduce_phase_ms", s.reduce_phase_seconds * 1e3},
          {"compute_ms_max", *std::max_element(s.compute_seconds.begin(), s.compute_seconds.end()) * 1e3},
          {"accumulate_ms", s.accumulate_seconds * 1e3},
          {"exposed_accumulate_ms", s.exposed_accumulate_seconds * 1e3},
          {"exposed_fraction_of_step", s.exposed_accumulate_seconds / s.seconds},
          {"optimizer_ms", s.optimizer_seconds * 1e3},
          {"idle_fraction", idle / (threads * s.reduce_phase_seconds)},
          {"blocking_locks", s.blocking_locks},
          {"reduce_waits", s.reduce_waits},
          {"bytes_reduced", s.bytes_reduced},
          {"reduce_gb_per_s", static_cast<double>(s.bytes_reduced) / s.accumulate_seconds / 1e9},
          {"micro_batches_per_worker", s.micro_batches_per_worker},
          {"grad_norm", s.grad_norm}};
}

nlohmann::json baseline_json(const parallel::BaselineStats& s) {
  return {{"step_ms", s.seconds * 1e3},
          {"accumulate_ms", s.accumulate_seconds * 1e3},
          {"exposed_accumulate_ms", s.exposed_accumulate_seconds * 1e3},
          {"exposed_fraction_of_step", s.exposed_accumulate_seconds / s.seconds},
          {"idle_fraction", s.idle_fraction},
          {"blocking_locks", s.blocking_locks},
          {"threads_created", s.threads_created},
          {"bytes_reduced", s.bytes_reduced},
          {"reduce_gb_per_s", static_cast<double>(s.bytes_reduced) / s.accumulate_seconds / 1e9}};
}

}  // namespace

AccumulateBench::AccumulateBench(const AccumulateOptions& options)
    : o_(options),
      synthetic_(std::make_unique<const SyntheticWork>(o_, o_.params)),
      memcpy_gbs_(measure_memcpy_gb_per_s(o_.params)) {}

AccumulateBench::~AccumulateBench() = default;

nlohmann::json AccumulateBench::run(std::size_t threads) const {
  const std::size_t n = o_.params;
  const SyntheticWork& synthetic = *synthetic_;
  const parallel::MicroBatchFn work = std::cref(synthetic);
  parallel::GradientPipeline pipeline(
      n, {.threads = threads, .deterministic = o_.deterministic, .segment_floats = o_.segment_floats});
  std::vector<float> params(n, 0.5f);
  optim::AdamW opt(n, {.lr = 1e-4});
  std::vector<parallel::StepStats> runs;
  for (std::size_t s = 0; s <= o_.steps; ++s) {  // step 0 warms up (first touch of the buffers)
    auto stats = pipeline.step(o_.micro_batches, work, params.data(), opt, 1e-4, 1.0f);
    if (!synthetic.check(pipeline.gradient())) {
      throw std::runtime_error("bench accumulate: the pipeline's gradient is wrong");  // a bug, not bad input
    }
    if (s > 0) runs.push_back(std::move(stats));
  }
  nlohmann::json result = {{"threads", threads},
                           {"params", n},
                           {"micro_batches", o_.micro_batches},
                           {"work_ms", o_.work_ms},
                           {"unevenness", o_.unevenness},
                           {"steps", o_.steps},
                           {"kernels", kernels::target_name(kernels::active().target)},
                           {"memcpy_gb_per_s", memcpy_gbs_},
                           {"pipeline", pipeline_json(median_by_seconds(runs))}};
  if (o_.baseline) {
    std::vector<float> grad(n);
    parallel::BaselineAccumulator baseline(n, threads);
    std::vector<parallel::BaselineStats> base_runs;
    for (std::size_t s = 0; s <= o_.steps; ++s) {
      auto stats = baseline.step(o_.micro_batches, work, grad.data());
      if (!synthetic.check(grad.data())) throw std::runtime_error("bench accumulate: the baseline's gradient is wrong");
      if (s > 0) base_runs.push_back(stats);
    }
    result["baseline"] = baseline_json(median_by_seconds(base_runs));
    const auto ratio = [&result](const char* key) {
      return result["baseline"][key].get<double>() / result["pipeline"][key].get<double>();
    };
    result["accumulate_speedup_vs_baseline"] = ratio("accumulate_ms");
    result["exposed_accumulate_speedup_vs_baseline"] = ratio("exposed_accumulate_ms");
  }
  return result;
}

}  // namespace cllm::bench
