// `cllm bench accumulate`: one optimizer step of the gradient pipeline with a
// synthetic work function, per thread count, against the plan's "before"
// design and memcpy measured in the same run (bench/accumulate.h). Prints
// figures only; it never judges them.
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "bench/accumulate.h"
#include "cli/commands.h"
#include "kernels/kernels.h"
#include "parallel/worker_pool.h"

namespace cllm::cli {
namespace {

struct Options {
  std::string params = "25M";
  std::string threads = "1,2";
  bench::AccumulateOptions bench;
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
  const bench::AccumulateOptions& b = o.bench;
  return fmt::format(
      "cllm bench accumulate --params {} --threads {} --micro-batches {} --work-ms {:g} --unevenness {:g} "
      "--steps {} --segment-floats {}{}{}{}",
      o.params, o.threads, b.micro_batches, b.work_ms, b.unevenness, b.steps, b.segment_floats,
      b.deterministic ? " --deterministic" : "", b.baseline ? "" : " --no-baseline", o.json ? " --json" : "");
}

void print_row(const char* design, const nlohmann::json& r, double memcpy_gbs) {
  const double gbs = r["reduce_gb_per_s"].get<double>();
  fmt::print("  {:<9} {:>9.1f} {:>11.1f} {:>11.2f} {:>8.1f}% {:>7.1f}% {:>6} {:>9.2f} {:>9.2f}\n", design,
             r["step_ms"].get<double>(), r["accumulate_ms"].get<double>(), r["exposed_accumulate_ms"].get<double>(),
             100.0 * r["exposed_fraction_of_step"].get<double>(), 100.0 * r["idle_fraction"].get<double>(),
             r["blocking_locks"].get<std::size_t>(), gbs, gbs / memcpy_gbs);
}

void run_bench(Options o) {
  bench::AccumulateOptions& b = o.bench;
  b.params = parse_count(o.params);
  const std::vector<std::size_t> thread_counts = parse_threads(o.threads);
  if (b.micro_batches == 0) throw std::invalid_argument("--micro-batches: expected >= 1, got 0");
  if (!(b.work_ms >= 0.0)) throw std::invalid_argument("--work-ms: expected >= 0, got " + fmt::format("{}", b.work_ms));
  if (!(b.unevenness >= 0.0 && b.unevenness <= 1.0)) {
    throw std::invalid_argument("--unevenness: expected a fraction in [0, 1], got " + fmt::format("{}", b.unevenness));
  }
  if (b.steps == 0) throw std::invalid_argument("--steps: expected >= 1, got 0");
  if (b.segment_floats == 0) throw std::invalid_argument("--segment-floats: expected >= 1, got 0");

  const std::string command = command_line(o);
  const bench::AccumulateBench measurements(b);
  const double memcpy_gbs = measurements.memcpy_gb_per_s();
  if (!o.json) {
    fmt::print("$ {}\n", command);
    fmt::print("params {} floats ({:.1f} MB per buffer), {} micro-batches of {:g} ms +-{:g}%, kernels {}, "
               "memcpy {:.2f} GB/s (1 thread)\n",
               b.params, static_cast<double>(b.params * sizeof(float)) / 1e6, b.micro_batches, b.work_ms,
               100.0 * b.unevenness, kernels::target_name(kernels::active().target), memcpy_gbs);
    fmt::print("medians of {} steps; accumulate = thread-seconds adding gradients; exposed = from the last end of "
               "compute to the end of the reduction; GB/s = bytes reduced per adding thread-second (understated when threads "
               "outnumber cores: a preempted pass counts its wait)\n",
               b.steps);
  }
  for (std::size_t threads : thread_counts) {
    nlohmann::json result = measurements.run(threads);
    result["command"] = command;
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
    if (b.baseline) {
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
  cmd->add_option("--micro-batches", o->bench.micro_batches, "Micro-batches per step (K)")->capture_default_str();
  cmd->add_option("--work-ms", o->bench.work_ms, "Mean compute per micro-batch, in ms (busy)")->capture_default_str();
  cmd->add_option("--unevenness", o->bench.unevenness, "Spread of durations: each is work-ms * (1 +- this)")
      ->capture_default_str();
  cmd->add_option("--steps", o->bench.steps, "Measured steps (after one warm-up); medians are reported")
      ->capture_default_str();
  cmd->add_option("--segment-floats", o->bench.segment_floats, "Reduction segment size in floats")->capture_default_str();
  cmd->add_flag("--deterministic", o->bench.deterministic, "Static assignment and worker-order reduction");
  cmd->add_flag("--no-baseline", [o](std::int64_t) { o->bench.baseline = false; }, "Skip the baseline");
  cmd->add_flag("--json", o->json, "One JSON object per thread count per line");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace cllm::cli
