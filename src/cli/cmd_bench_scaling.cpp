// `cllm bench scaling`: training throughput against the thread count, for
// the gradient pipeline and for the plan's baseline design in the same run
// (bench/scaling.h measures).
//
// Every (design, thread count) runs in a fresh child process (this binary,
// re-executed with the hidden --child flag), which prints one JSON line of
// raw measurements; the parent derives speedup, efficiency and time per
// epoch, prints the table (or JSON Lines) and draws the plots.
//
// Under mpirun with P > 1 processes the pipeline rows run data-parallel
// (dist::DataParallelStep, as `cllm train` does) and add the all-reduce time
// and the part of it hidden behind the local reduction. Those rows run inside
// each rank's own process, not in children: a re-executed child cannot join
// the ranks' MPI job (MPI_Init once per process, and the job's processes are
// the ones mpirun started), so there peak RSS is the process's high-water
// mark so far and earlier rows warm caches for later ones. The baseline has
// no data-parallel form and is not run then. Rank 0 alone prints.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/configs.h"
#include "bench/scaling.h"
#include "cli/commands.h"
#include "dist/process_group.h"
#include "kernels/kernels.h"
#include "model/gpt.h"
#include "parallel/worker_pool.h"
#include "report/svg_plot.h"

namespace cllm::cli {
namespace {

// The flags: the measurement's (config, steps, warmup, accum, batch, seed,
// precision) and the sweep's.
struct Options : bench::ScalingOptions {
  std::string threads = "1,2,4,8,12,24,48,64";
  double epoch_tokens = 1 << 20;
  bool baseline = true, json = false;
  std::string plot;
  std::string child;  // hidden: run one design at one thread count
};

// Thread counts from "1,2,4": each in [1, WorkerPool::kMaxThreads].
std::vector<std::size_t> parse_threads(const std::string& list) {
  std::vector<std::size_t> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
    }
    if (used != item.size() || v < 1 || v > static_cast<long>(parallel::WorkerPool::kMaxThreads))
      throw std::invalid_argument(fmt::format("--threads: '{}' is not a thread count in [1, {}]; expected e.g. 1,2,4,8",
                                              item, parallel::WorkerPool::kMaxThreads));
    out.push_back(static_cast<std::size_t>(v));
  }
  if (out.empty()) throw std::invalid_argument("--threads is empty: expected e.g. 1,2,4,8");
  return out;
}

// The arguments of a child that measures one design at one thread count.
std::vector<std::string> child_args(const Options& o, const std::string& design, std::size_t threads) {
  return {"cllm", "bench", "scaling", "--config", o.config, "--threads", std::to_string(threads),
          "--steps", std::to_string(o.steps), "--warmup", std::to_string(o.warmup), "--accum",
          std::to_string(o.accum), "--batch", std::to_string(o.batch), "--seed",
          std::to_string(o.seed), "--precision", o.precision, "--child", design};
}

nlohmann::json row_json(const bench::ScalingRow& r, const Options& o, const std::string& command) {
  return {{"command", command},
          {"config", o.config},
          {"design", r.m.design},
          {"threads", r.m.threads},
          {"lanes", r.m.lanes},
          {"oversubscribed", r.oversubscribed},
          {"steps", r.m.steps},
          {"tokens_per_step", r.m.tokens_per_step},
          {"tokens_per_s", r.tokens_per_s},
          {"speedup", r.speedup},
          {"efficiency", r.efficiency},
          {"epoch_tokens", o.epoch_tokens},
          {"epoch_s", r.epoch_s},
          {"step_ms", r.step_ms},
          {"compute_ms", r.compute_ms},
          {"idle_ms", r.idle_ms},
          {"accumulate_thread_ms", r.accumulate_ms},
          {"exposed_accumulate_ms", r.exposed_ms},
          {"exposed_accumulate_pct", r.exposed_pct},
          {"optimizer_ms", r.optimizer_ms},
          {"idle_pct", r.idle_pct},
          {"blocking_locks_per_step", r.locks_per_step},
          {"contended_locks_per_step", r.contended_locks_per_step},
          {"threads_created_per_step", r.threads_created_per_step},
          {"cpu_util_pct", r.cpu_util_pct},
          {"peak_rss_mib", r.m.peak_rss_mib},
          {"final_loss", r.m.final_loss},
          {"ranks", r.m.ranks},
          {"allreduce_ms", r.allreduce_ms},
          {"hidden_allreduce_ms", r.hidden_allreduce_ms},
          {"hidden_allreduce_pct", r.hidden_allreduce_pct},
          {"llc_miss_pct", r.llc_miss_pct ? nlohmann::json(*r.llc_miss_pct) : nlohmann::json(nullptr)},
          {"llc_unavailable", r.m.llc_unavailable.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.m.llc_unavailable)}};
}

// "LLC miss rate (...): pipeline 1t 3.1%, 2t 3.4%; baseline 1t 3.0%", or
// "LLC miss rate (...): unavailable (reason)" where no row has counts.
std::string cache_miss_line(const std::vector<bench::ScalingRow>& rows) {
  std::string line = "LLC miss rate (cache misses / references, every thread, timed steps):", design, unavailable;
  bool any = false;
  for (const bench::ScalingRow& r : rows) {
    any |= r.llc_miss_pct.has_value();
    if (unavailable.empty()) unavailable = r.m.llc_unavailable;
  }
  if (!any) return line + " unavailable (" + (unavailable.empty() ? "no cache references counted" : unavailable) + ")";
  for (const bench::ScalingRow& r : rows) {
    line += r.m.design == design ? "," : (design.empty() ? " " : "; ") + r.m.design;
    design = r.m.design;
    line += fmt::format(" {}t ", r.m.threads) + (r.llc_miss_pct ? fmt::format("{:.1f}%", *r.llc_miss_pct)
                                                                 : "unavailable (" + r.m.llc_unavailable + ")");
  }
  return line;
}

// The all-reduce columns only with several processes.
void print_header(bool all_reduce) {
  std::printf("%-8s %7s %5s %10s %7s %5s %9s %9s %9s %14s %8s %6s %8s %8s %5s %8s %7s", "design", "threads", "lanes",
              "tokens/s", "speedup", "eff", "epoch s", "step ms", "accum ms", "exposed ms (%)", "optim ms", "idle%",
              "locks/st", "waits/st", "cpu%", "RSS MiB", "loss");
  if (all_reduce) std::printf(" %9s %15s", "allred ms", "hidden ms (%)");
  std::printf("\n");
}

void print_row(const bench::ScalingRow& r) {
  std::printf("%-8s %5zu%-2s %5zu %10.0f %6.2fx %4.0f%% %9.1f %9.1f %9.2f %7.2f (%4.1f) %8.2f %6.1f %8.0f %8.1f %5.0f %8.1f %7.4f",
              r.m.design.c_str(), r.m.threads, r.oversubscribed ? " *" : "", r.m.lanes, r.tokens_per_s, r.speedup,
              100.0 * r.efficiency, r.epoch_s, r.step_ms, r.accumulate_ms, r.exposed_ms, r.exposed_pct, r.optimizer_ms,
              r.idle_pct, r.locks_per_step, r.contended_locks_per_step, r.cpu_util_pct, r.m.peak_rss_mib, r.m.final_loss);
  if (r.m.ranks > 1) std::printf(" %9.2f %8.2f (%4.1f)", r.allreduce_ms, r.hidden_allreduce_ms, r.hidden_allreduce_pct);
  std::printf("\n");
  std::fflush(stdout);
}

void run_sweep(const Options& o) {
  // Bad flags fail here, before minutes of runs.
  const bench::NamedConfig nc = bench::named_config(o.config);
  const std::vector<std::size_t> threads = parse_threads(o.threads);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (const auto dir = std::filesystem::path(o.plot).parent_path(); !o.plot.empty() && !dir.empty() && !std::filesystem::is_directory(dir))
    throw std::invalid_argument(fmt::format("--plot {}: directory '{}' does not exist", o.plot, dir.string()));
  const std::string command = fmt::format(
      "cllm bench scaling --config {} --threads {} --steps {} --warmup {} --accum {} --batch {} --epoch-tokens {:.0f} "
      "--seed {} --precision {}{}{}{}",
      o.config, o.threads, o.steps, o.warmup, o.accum, o.batch, o.epoch_tokens, o.seed, o.precision, o.baseline ? "" : " --no-baseline",
      o.json ? " --json" : "", o.plot.empty() ? "" : " --plot " + o.plot);
  dist::ProcessGroup& group = dist::world();  // MPI only when mpirun started this process
  const bool distributed = group.size() > 1;
  if (!group.is_root() && !std::freopen("/dev/null", "w", stdout))  // rank 0 alone prints
    throw std::runtime_error("cannot silence stdout on rank " + std::to_string(group.rank()));
  const model::PrecisionChoice precision = model::choose_precision(o.precision);
  if (!o.json) {
    std::printf("command: %s\n", command.c_str());
    std::printf("precision %s (%s)\n", std::string(model::precision_name(precision.precision)).c_str(),
                precision.why.c_str());
    std::printf("config %s: layers %d, dim %d, heads %d, context %d, vocab %d; a step is %d micro-batches x %d seq x %d "
                "tokens = %d tokens, whatever the thread and process count\n",
                o.config.c_str(), nc.config.layers, nc.config.dim, nc.config.heads, nc.config.context, nc.config.vocab,
                o.accum, o.batch, nc.config.context, o.accum * o.batch * nc.config.context);
    std::printf("%u hardware threads (* = oversubscribed; lanes = threads that compute); each row is %s: %d warm-up + %d timed steps; SIMD "
                "%s\n",
                cores, distributed ? "run in every rank's own process (RSS: high-water mark so far)" : "a fresh process",
                o.warmup, o.steps, std::string(kernels::target_name(kernels::active().target)).c_str());
    if (distributed)
      std::printf("%d processes (mpirun), each with the row's threads; micro-batch k on rank k mod %d; figures of rank 0; "
                  "baseline not run (one process only); allred ms = all-reduce wall time, hidden = the part behind the "
                  "local reduction (%% of allred); optim ms includes waiting for the all-reduce\n",
                  group.size(), group.size());
    std::printf("speedup/efficiency: against the pipeline at %zu threads; epoch = %.0f tokens; accum ms = thread-time "
                "adding gradients; exposed = accumulation after the last compute; locks/st = pthread mutexes taken per "
                "step (the sgemm library's included), waits/st = those that found the mutex held; cpu%% = CPU time / "
                "(wall x min(threads, cores))\n",
                threads.front(), o.epoch_tokens);
    print_header(distributed);
  }
  std::vector<bench::ScalingRow> rows;
  double reference_tps = 0;
  for (const std::string design : {"pipeline", "baseline"}) {
    if (design == "baseline" && (!o.baseline || distributed)) continue;
    for (std::size_t t : threads) {
      bench::ScalingMeasurement m;
      if (!distributed) {
        m = bench::measure_in_child(child_args(o, design, t), design, t);
      } else {
        try {
          m = bench::measure_scaling(o, design, t, group);
        } catch (const std::exception& e) {
          group.abort(e.what());  // the other ranks wait in an all-reduce: end them all, never a hang
        }
      }
      if (rows.empty()) reference_tps = static_cast<double>(m.tokens_per_step) * static_cast<double>(m.steps) / m.step_s;
      rows.push_back(bench::derive_row(m, reference_tps, threads.front(), o.epoch_tokens, cores));
      if (o.json) {
        std::printf("%s\n", row_json(rows.back(), o, command).dump().c_str());
        std::fflush(stdout);
      } else {
        print_row(rows.back());
      }
    }
  }
  if (!o.json) std::printf("%s\n", cache_miss_line(rows).c_str());
  if (!o.plot.empty() && group.is_root()) {
    report::write_svg(o.plot, bench::scaling_charts(rows, threads, o.config));
    if (!o.json) std::printf("wrote %s\n", o.plot.c_str());
  }
}

}  // namespace

void add_bench_scaling_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand(
      "scaling", "Training throughput against threads: gradient pipeline vs the plan's baseline, plan metrics, plots; "
      "under mpirun, data-parallel with the all-reduce time and its hidden part");
  auto opt = std::make_shared<Options>();
  cmd->add_option("--config", opt->config, "Model: tiny, small or medium")->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Comma-separated thread counts (the first is the reference)")
      ->capture_default_str();
  cmd->add_option("--steps", opt->steps, "Timed optimizer steps per run")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--warmup", opt->warmup, "Untimed steps before them")->check(CLI::Range(0, 1000))->capture_default_str();
  cmd->add_option("--accum", opt->accum, "Micro-batches per step: enough to keep the largest thread count busy")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--batch", opt->batch, "Sequences per micro-batch")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--epoch-tokens", opt->epoch_tokens, "Corpus size for the time-per-epoch column")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--baseline,!--no-baseline", opt->baseline, "Also run the plan's baseline design (default: on; never under mpirun with P > 1)");
  cmd->add_flag("--json", opt->json, "Print one JSON object per row instead of the table");
  cmd->add_option("--plot", opt->plot, "Write throughput, efficiency and step-time breakdown charts to this SVG file");
  cmd->add_option("--seed", opt->seed, "Seed of the weights and the generated corpus")->capture_default_str();
  cmd->add_option("--precision", opt->precision, "Matrix products: auto, fp32 or bf16 (as cllm train)")
      ->capture_default_str();
  cmd->add_option("--child", opt->child, "internal: run one design at one thread count and print raw JSON")
      ->check(CLI::IsMember({"pipeline", "baseline"}))
      ->group("");
  cmd->callback([opt] {
    if (opt->child.empty()) return run_sweep(*opt);
    const std::vector<std::size_t> threads = parse_threads(opt->threads);
    if (threads.size() != 1) throw std::invalid_argument("--child runs one thread count");
    // Never MPI: children run only where the parent is the job's one process.
    const auto single = dist::make_single_process_group();
    std::printf("%s\n", bench::to_json(bench::measure_scaling(*opt, opt->child, threads.front(), *single)).dump().c_str());
  });
}

}  // namespace cllm::cli
