// `cllm bench accumulate`: one optimizer step of the gradient pipeline with a
// synthetic work function (busy compute of adjustable, uneven duration, then
// the micro-batch's gradient written into the worker's buffer), per thread
// count, against the plan's "before" design (threads per round, one global
// mutex, scalar add) and memcpy measured in the same run. Prints figures
// only; it never judges them.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "kernels/kernels.h"
#include "optim/adamw.h"
#include "parallel/baseline.h"
#include "parallel/gradient_pipeline.h"

namespace cllm::cli {
namespace {

using parallel::Clock;

struct Options {
  std::string params = "25M";
  std::string threads = "1,2";
  std::size_t micro_batches = 12;
  double work_ms = 20.0;
  double unevenness = 0.5;
  std::size_t steps = 3;
  std::size_t segment_floats = parallel::kDefaultSegmentFloats;
  bool deterministic = false;
  bool baseline = true;
  bool json = false;
};

// "25000000", "25M", "512K" -> floats.
std::size_t parse_count(const std::string& text) {
  std::size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string suffix = text.substr(used);
  const double scale = suffix.empty() ? 1.0 : suffix == "K" ? 1e3 : suffix == "M" ? 1e6 : suffix == "G" ? 1e9 : 0.0;
  if (used == 0 || scale == 0.0 || !(value * scale >= 1.0)) {
    throw std::invalid_argument("--params: '" + text + "' is not a positive count (e.g. 25000000 or 25M)");
  }
  return static_cast<std::size_t>(value * scale);
}

// "1,2,4" -> {1, 2, 4}, each in [1, 256].
std::vector<std::size_t> parse_threads(const std::string& list) {
  std::vector<std::size_t> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    unsigned long value = 0;
    try {
      value = std::stoul(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value < 1 || value > parallel::WorkerPool::kMaxThreads) {
      throw std::invalid_argument("--threads: '" + item + "' in '" + list +
                                  "' is not a thread count (expected a comma-separated list of 1..256)");
    }
    out.push_back(value);
  }
  if (out.empty()) throw std::invalid_argument("--threads: empty list '" + list + "'");
  return out;
}

// The command as it ran, with every default spelled out.
std::string command_line(const Options& o) {
  return fmt::format(
      "cllm bench accumulate --params {} --threads {} --micro-batches {} --work-ms {:g} --unevenness {:g} "
      "--steps {} --segment-floats {}{}{}{}",
      o.params, o.threads, o.micro_batches, o.work_ms, o.unevenness, o.steps, o.segment_floats,
      o.deterministic ? " --deterministic" : "", o.baseline ? "" : " --no-baseline", o.json ? " --json" : "");
}

// Micro-batch k computes for work_ms * (1 + unevenness * u_k), u_k spread
// over [-1, 1] in a scrambled order, so durations differ and stragglers
// exist; then writes its gradient (a fixed pattern) into the buffer.
class SyntheticWork {
 public:
  SyntheticWork(const Options& o, std::size_t n) : n_(n), micro_batches_(o.micro_batches) {
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

double memcpy_gb_per_s(std::size_t n) {
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

void print_row(const char* design, const nlohmann::json& r, double memcpy_gbs) {
  const double gbs = r["reduce_gb_per_s"].get<double>();
  fmt::print("  {:<9} {:>9.1f} {:>11.1f} {:>11.2f} {:>8.1f}% {:>7.1f}% {:>6} {:>9.2f} {:>9.2f}\n", design,
             r["step_ms"].get<double>(), r["accumulate_ms"].get<double>(), r["exposed_accumulate_ms"].get<double>(),
             100.0 * r["exposed_fraction_of_step"].get<double>(), 100.0 * r["idle_fraction"].get<double>(),
             r["blocking_locks"].get<std::size_t>(), gbs, gbs / memcpy_gbs);
}

void run_bench(const Options& o) {
  const std::size_t n = parse_count(o.params);
  const std::vector<std::size_t> thread_counts = parse_threads(o.threads);
  if (o.micro_batches == 0) throw std::invalid_argument("--micro-batches: expected >= 1, got 0");
  if (!(o.work_ms >= 0.0)) throw std::invalid_argument("--work-ms: expected >= 0, got " + fmt::format("{}", o.work_ms));
  if (!(o.unevenness >= 0.0 && o.unevenness <= 1.0)) {
    throw std::invalid_argument("--unevenness: expected a fraction in [0, 1], got " + fmt::format("{}", o.unevenness));
  }
  if (o.steps == 0) throw std::invalid_argument("--steps: expected >= 1, got 0");
  if (o.segment_floats == 0) throw std::invalid_argument("--segment-floats: expected >= 1, got 0");

  const std::string command = command_line(o);
  const SyntheticWork synthetic(o, n);
  const parallel::MicroBatchFn work = std::cref(synthetic);
  const double memcpy_gbs = memcpy_gb_per_s(n);
  if (!o.json) {
    fmt::print("$ {}\n", command);
    fmt::print("params {} floats ({:.1f} MB per buffer), {} micro-batches of {:g} ms +-{:g}%, kernels {}, "
               "memcpy {:.2f} GB/s (1 thread)\n",
               n, static_cast<double>(n * sizeof(float)) / 1e6, o.micro_batches, o.work_ms, 100.0 * o.unevenness,
               kernels::target_name(kernels::active().target), memcpy_gbs);
    fmt::print("medians of {} steps; accumulate = thread-seconds adding gradients; exposed = from the last end of "
               "compute to the end of the reduction; GB/s = bytes reduced per adding thread-second (understated when threads "
               "outnumber cores: a preempted pass counts its wait)\n",
               o.steps);
  }
  for (std::size_t threads : thread_counts) {
    parallel::GradientPipeline pipeline(
        n, {.threads = threads, .deterministic = o.deterministic, .segment_floats = o.segment_floats});
    std::vector<float> params(n, 0.5f);
    optim::AdamW opt(n, {.lr = 1e-4});
    std::vector<parallel::StepStats> runs;
    for (std::size_t s = 0; s <= o.steps; ++s) {  // step 0 warms up (first touch of the buffers)
      auto stats = pipeline.step(o.micro_batches, work, params.data(), opt, 1e-4, 1.0f);
      if (!synthetic.check(pipeline.gradient())) {
        throw std::runtime_error("bench accumulate: the pipeline's gradient is wrong");  // a bug, not bad input
      }
      if (s > 0) runs.push_back(std::move(stats));
    }
    nlohmann::json result = {{"command", command},
                             {"threads", threads},
                             {"params", n},
                             {"micro_batches", o.micro_batches},
                             {"work_ms", o.work_ms},
                             {"unevenness", o.unevenness},
                             {"steps", o.steps},
                             {"kernels", kernels::target_name(kernels::active().target)},
                             {"memcpy_gb_per_s", memcpy_gbs},
                             {"pipeline", pipeline_json(median_by_seconds(runs))}};
    if (o.baseline) {
      std::vector<float> grad(n);
      parallel::BaselineAccumulator baseline(n, threads);
      std::vector<parallel::BaselineStats> base_runs;
      for (std::size_t s = 0; s <= o.steps; ++s) {
        auto stats = baseline.step(o.micro_batches, work, grad.data());
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
    if (o.json) {
      std::cout << result.dump() << std::endl;
      continue;
    }
    const auto& p = result["pipeline"];
    fmt::print("\nthreads {}: micro-batches per worker {}, reduce waits {}, optimizer {:.1f} ms\n", threads,
               p["micro_batches_per_worker"].dump(), p["reduce_waits"].get<std::size_t>(),
               p["optimizer_ms"].get<double>());
    fmt::print("  {:<9} {:>9} {:>11} {:>11} {:>9} {:>8} {:>6} {:>9} {:>9}\n", "design", "step ms", "accum ms",
               "exposed ms", "exposed", "idle", "locks", "GB/s", "x memcpy");
    print_row("pipeline", p, memcpy_gbs);
    if (o.baseline) {
      print_row("baseline", result["baseline"], memcpy_gbs);
      fmt::print("  vs baseline: accumulation thread-time {:.2f}x less, exposed accumulation {:.2f}x less\n",
                 result["accumulate_speedup_vs_baseline"].get<double>(),
                 result["exposed_accumulate_speedup_vs_baseline"].get<double>());
    }
    std::fflush(stdout);
  }
}

}  // namespace

void add_bench_accumulate_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("accumulate", "Gradient pipeline step against the locked baseline");
  auto o = std::make_shared<Options>();
  cmd->add_option("--params", o->params, "Gradient size in floats (e.g. 25000000 or 25M)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Comma-separated thread counts, 1..256 each")->capture_default_str();
  cmd->add_option("--micro-batches", o->micro_batches, "Micro-batches per step (K)")->capture_default_str();
  cmd->add_option("--work-ms", o->work_ms, "Mean compute per micro-batch, in ms (busy)")->capture_default_str();
  cmd->add_option("--unevenness", o->unevenness, "Spread of durations: each is work-ms * (1 +- this)")
      ->capture_default_str();
  cmd->add_option("--steps", o->steps, "Measured steps (after one warm-up); medians are reported")
      ->capture_default_str();
  cmd->add_option("--segment-floats", o->segment_floats, "Reduction segment size in floats")->capture_default_str();
  cmd->add_flag("--deterministic", o->deterministic, "Static assignment and worker-order reduction");
  cmd->add_flag("--no-baseline", [o](std::int64_t) { o->baseline = false; }, "Skip the baseline");
  cmd->add_flag("--json", o->json, "One JSON object per thread count per line");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace cllm::cli
