#include "bench/scaling.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include "bench/configs.h"
#include "dist/data_parallel.h"
#include "kernels/kernels.h"
#include "model/gpt.h"
#include "optim/adamw.h"
#include "parallel/baseline.h"
#include "parallel/gradient_pipeline.h"
#include "train/lanes.h"
#include "train/process_stats.h"

namespace cllm::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A byte-level "text" of words picked by a fixed LCG: enough structure that
// the loss falls, no file needed, identical in every child.
std::vector<std::int32_t> generated_corpus(std::size_t n, std::uint64_t seed) {
  static const char* const kWords[] = {"the ", "gradient ", "flows ", "through ", "every ", "sphere ", "and ",
                                       "segments ", "are ", "summed ", "without ", "locks. ", "a ", "worker ",
                                       "pulls ", "micro-batches ", "from ", "queue, ", "then ", "Adam ", "steps.\n"};
  constexpr std::size_t kCount = sizeof kWords / sizeof kWords[0];
  std::vector<std::int32_t> out;
  out.reserve(n + 16);
  std::uint64_t state = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  std::size_t previous = 0;
  while (out.size() < n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    // Half the time the word that follows the previous one: a learnable bigram.
    const std::size_t w = (state >> 33) % 2 == 0 ? (previous + 1) % kCount : (state >> 40) % kCount;
    for (const char* c = kWords[w]; *c; ++c) out.push_back(static_cast<unsigned char>(*c));
    previous = w;
  }
  out.resize(n);
  return out;
}

}  // namespace

nlohmann::json to_json(const ScalingMeasurement& m) {
  return {{"design", m.design}, {"threads", m.threads}, {"lanes", m.lanes}, {"steps", m.steps}, {"tokens_per_step", m.tokens_per_step},
          {"step_s", m.step_s}, {"phase_s", m.phase_s}, {"accumulate_s", m.accumulate_s}, {"exposed_s", m.exposed_s},
          {"optimizer_s", m.optimizer_s}, {"busy_thread_s", m.busy_thread_s}, {"idle_thread_s", m.idle_thread_s},
          {"cpu_s", m.cpu_s}, {"peak_rss_mib", m.peak_rss_mib}, {"final_loss", m.final_loss},
          {"blocking_locks", m.blocking_locks}, {"contended_locks", m.contended_locks},
          {"threads_created", m.threads_created}, {"ranks", m.ranks},
          {"allreduce_s", m.allreduce_s}, {"hidden_allreduce_s", m.hidden_allreduce_s},
          {"llc_references", m.llc_references}, {"llc_misses", m.llc_misses}, {"llc_unavailable", m.llc_unavailable}};
}

ScalingMeasurement from_json(const nlohmann::json& j) {
  ScalingMeasurement m;
  m.design = j.at("design");
  m.threads = j.at("threads"), m.lanes = j.at("lanes"), m.steps = j.at("steps"), m.tokens_per_step = j.at("tokens_per_step");
  m.step_s = j.at("step_s"), m.phase_s = j.at("phase_s"), m.accumulate_s = j.at("accumulate_s");
  m.exposed_s = j.at("exposed_s"), m.optimizer_s = j.at("optimizer_s");
  m.busy_thread_s = j.at("busy_thread_s"), m.idle_thread_s = j.at("idle_thread_s");
  m.cpu_s = j.at("cpu_s"), m.peak_rss_mib = j.at("peak_rss_mib"), m.final_loss = j.at("final_loss");
  m.blocking_locks = j.at("blocking_locks"), m.contended_locks = j.at("contended_locks");
  m.threads_created = j.at("threads_created");
  m.ranks = j.at("ranks"), m.allreduce_s = j.at("allreduce_s"), m.hidden_allreduce_s = j.at("hidden_allreduce_s");
  m.llc_references = j.at("llc_references"), m.llc_misses = j.at("llc_misses");
  m.llc_unavailable = j.at("llc_unavailable");
  return m;
}

ScalingMeasurement measure_scaling(const ScalingOptions& o, const std::string& design, std::size_t threads,
                                   dist::ProcessGroup& group) {
  const NamedConfig nc = named_config(o.config);
  const model::ParamLayout layout(nc.config);
  const int T = nc.config.context, B = o.batch;
  const std::size_t K = static_cast<std::size_t>(o.accum), n = layout.total();
  const std::vector<std::int32_t> corpus = generated_corpus(std::size_t{1} << 20, o.seed);
  const train::CacheCounters cache;  // before any worker thread, so that every one inherits it
  train::CacheCounters::Counts cache_start;

  std::vector<float> params(n);
  model::init_params(layout, params.data(), o.seed);
  std::vector<optim::ParamRange> ranges;
  for (const auto& t : layout.tensors()) ranges.push_back({t.offset, t.size, t.decay});
  optim::AdamW adamw(n, {3e-4, 0.9f, 0.95f, 1e-8f, 0.1f}, ranges);
  const model::Precision precision = model::choose_precision(o.precision).precision;
  std::vector<kernels::bf16> params_bf16 = model::bf16_copy(params, precision);
  if (!params_bf16.empty()) adamw.set_bf16_copy(params_bf16.data());
  const model::Weights weights(params.data(), params_bf16);
  constexpr double kLr = 3e-4;
  constexpr float kClip = 1.0f;

  // The pipeline computes on at most one lane per core, as cllm train does;
  // the baseline runs a thread per micro-batch, all of them at once.
  const std::size_t lanes = design == "pipeline" ? std::min(threads, parallel::available_cores()) : threads;
  train::Lanes workers(lanes);
  std::size_t step = 0;
  // Sequence i of the run starts at a scattered offset of the corpus. A piece
  // is weighted by its share of the K x B sequences, as in cllm train.
  const auto work = [&](std::size_t w, const parallel::Piece& piece, float* grad, bool first) -> double {
    train::LaneState& s = *workers[w];
    const auto rows = static_cast<std::ptrdiff_t>(piece.rows.size());
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
      const std::uint64_t i = (static_cast<std::uint64_t>(step) * K + piece.micro_batch) * B + piece.rows.begin + r;
      const std::size_t offset = (i * 2654435761ULL) % (corpus.size() - static_cast<std::size_t>(T) - 1);
      std::copy_n(corpus.begin() + static_cast<std::ptrdiff_t>(offset), T, s.inputs.begin() + r * T);
      std::copy_n(corpus.begin() + static_cast<std::ptrdiff_t>(offset) + 1, T, s.targets.begin() + r * T);
    }
    const double global_rows = static_cast<double>(K) * B;
    const float loss = model::forward_backward(layout, weights, s.inputs.data(), s.targets.data(), static_cast<int>(rows),
                                               T, grad, static_cast<float>(static_cast<double>(rows) / global_rows),
                                               first, s.ws);
    return static_cast<double>(loss) * static_cast<double>(rows) / global_rows;
  };

  ScalingMeasurement m;
  m.design = design;
  m.threads = threads;
  m.lanes = lanes;
  m.ranks = group.size();
  m.tokens_per_step = K * static_cast<std::size_t>(B) * static_cast<std::size_t>(T);
  double cpu_start = 0;
  const auto total_steps = static_cast<std::size_t>(o.warmup + o.steps);
  if (design == "pipeline") {
    parallel::GradientPipeline pipeline(n, {.threads = threads, .lanes = lanes});
    dist::DataParallelStep data_parallel(group, pipeline, K, static_cast<std::size_t>(B));  // one process: pipeline.step
    const std::size_t lane_rows = data_parallel.split().max_rows();
    pipeline.for_each_lane(
        [&](std::size_t w) { workers[w] = std::make_unique<train::LaneState>(nc.config, lane_rows, T, precision); });
    for (; step < total_steps; ++step) {
      if (step == static_cast<std::size_t>(o.warmup)) {
        cpu_start = train::process_usage().cpu_seconds;
        cache_start = cache.read();
      }
      const parallel::StepStats st = data_parallel.step(work, params.data(), adamw, kLr, kClip);
      m.final_loss = st.loss_sum;
      if (step < static_cast<std::size_t>(o.warmup)) continue;
      m.allreduce_s += data_parallel.allreduce_seconds(), m.hidden_allreduce_s += data_parallel.hidden_allreduce_seconds();
      m.step_s += st.seconds, m.phase_s += st.reduce_phase_seconds, m.accumulate_s += st.accumulate_seconds;
      m.exposed_s += st.exposed_accumulate_seconds, m.optimizer_s += st.optimizer_seconds;
      for (const double idle : st.idle_seconds) {
        m.idle_thread_s += idle;
        m.busy_thread_s += st.reduce_phase_seconds - idle;
      }
      m.blocking_locks += st.blocking_locks, m.contended_locks += st.contended_locks;
    }
  } else {
    parallel::BaselineAccumulator baseline(n, threads);
    for (auto& w : workers) w = std::make_unique<train::LaneState>(nc.config, static_cast<std::size_t>(B), T, precision);
    // A thread per whole micro-batch.
    const parallel::MicroBatchFn micro_batch = [&](std::size_t w, std::size_t k, float* grad, bool first) {
      return work(w, {k, {0, static_cast<std::size_t>(B)}}, grad, first);
    };
    std::vector<float> grad(n);
    for (; step < total_steps; ++step) {
      if (step == static_cast<std::size_t>(o.warmup)) {
        cpu_start = train::process_usage().cpu_seconds;
        cache_start = cache.read();
      }
      const auto t0 = Clock::now();
      const parallel::BaselineStats bs = baseline.step(K, micro_batch, grad.data());
      const auto t_reduced = Clock::now();
      const double norm = std::sqrt(kernels::active().sum_squares(grad.data(), n));
      if (std::isfinite(norm)) adamw.update(params.data(), grad.data(), kLr, optim::clip_scale(norm, kClip));
      const double optimizer_s = seconds_since(t_reduced);
      m.final_loss = bs.loss_sum;
      if (step < static_cast<std::size_t>(o.warmup)) continue;
      m.step_s += seconds_since(t0), m.phase_s += bs.seconds, m.accumulate_s += bs.accumulate_seconds;
      m.exposed_s += bs.exposed_accumulate_seconds, m.optimizer_s += optimizer_s;
      // idle_fraction counts adding as not computing; here adding is busy.
      const double idle = std::max(0.0, bs.idle_fraction * static_cast<double>(threads) * bs.seconds - bs.accumulate_seconds);
      m.idle_thread_s += idle;
      m.busy_thread_s += static_cast<double>(threads) * bs.seconds - idle;
      m.blocking_locks += bs.blocking_locks, m.contended_locks += bs.contended_locks;
      m.threads_created += bs.threads_created;
    }
  }
  const train::ProcessUsage usage = train::process_usage();
  const train::CacheCounters::Counts cache_end = cache.read();
  m.llc_references = cache_end.references - cache_start.references;
  m.llc_misses = cache_end.misses - cache_start.misses;
  m.llc_unavailable = cache.unavailable_reason();
  m.steps = static_cast<std::size_t>(o.steps);
  m.cpu_s = usage.cpu_seconds - cpu_start;
  m.peak_rss_mib = usage.peak_rss_mib;
  return m;
}

ScalingMeasurement measure_in_child(std::vector<std::string> args, const std::string& design, std::size_t threads) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error(fmt::format("bench scaling: pipe failed: {}", std::strerror(errno)));
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(fmt::format("bench scaling: fork failed: {}", std::strerror(errno)));
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string output;
  char buf[4096];
  for (ssize_t got; (got = read(fds[0], buf, sizeof buf)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    output.append(buf, static_cast<std::size_t>(got));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(fmt::format("bench scaling: the {} run with {} threads failed ({}); see its message above",
                                         design, threads,
                                         WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                           : fmt::format("signal {}", WTERMSIG(status))));
  try {
    return from_json(nlohmann::json::parse(output));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("bench scaling: the {} run with {} threads printed no measurement ({}): '{}'",
                                         design, threads, e.what(), output));
  }
}

ScalingRow derive_row(const ScalingMeasurement& m, double reference_tokens_per_s, std::size_t reference_threads,
                      double epoch_tokens, unsigned cores) {
  ScalingRow r;
  r.m = m;
  const double steps = static_cast<double>(m.steps);
  r.oversubscribed = m.threads > cores;
  r.tokens_per_s = static_cast<double>(m.tokens_per_step) * steps / m.step_s;
  r.speedup = r.tokens_per_s / reference_tokens_per_s;
  r.efficiency = r.speedup * static_cast<double>(reference_threads) / static_cast<double>(m.threads);
  r.epoch_s = epoch_tokens / r.tokens_per_s;
  r.step_ms = m.step_s / steps * 1e3;
  r.accumulate_ms = m.accumulate_s / steps * 1e3;
  r.exposed_ms = m.exposed_s / steps * 1e3;
  r.exposed_pct = 100.0 * m.exposed_s / m.step_s;
  r.optimizer_ms = m.optimizer_s / steps * 1e3;
  const double thread_s = m.busy_thread_s + m.idle_thread_s;
  r.idle_pct = thread_s > 0 ? 100.0 * m.idle_thread_s / thread_s : 0.0;
  // Breakdown of the mean step: the phase before the last worker finished
  // computing, split into busy (computing or adding behind compute) and idle
  // in proportion to thread time; then exposed accumulation; then optimizer.
  const double before_exposed_ms = std::max(0.0, (m.phase_s - m.exposed_s) / steps * 1e3);
  r.idle_ms = before_exposed_ms * r.idle_pct / 100.0;
  r.compute_ms = before_exposed_ms - r.idle_ms;
  r.locks_per_step = static_cast<double>(m.blocking_locks) / steps;
  r.contended_locks_per_step = static_cast<double>(m.contended_locks) / steps;
  r.threads_created_per_step = static_cast<double>(m.threads_created) / steps;
  r.cpu_util_pct = 100.0 * m.cpu_s / (m.step_s * static_cast<double>(std::min<std::size_t>(m.threads, cores)));
  r.allreduce_ms = m.allreduce_s / steps * 1e3;
  r.hidden_allreduce_ms = m.hidden_allreduce_s / steps * 1e3;
  r.hidden_allreduce_pct = m.allreduce_s > 0 ? 100.0 * m.hidden_allreduce_s / m.allreduce_s : 0.0;
  if (m.llc_unavailable.empty() && m.llc_references > 0) r.llc_miss_pct = 100.0 * m.llc_misses / m.llc_references;
  return r;
}

std::vector<report::Chart> scaling_charts(const std::vector<ScalingRow>& rows, const std::vector<std::size_t>& threads,
                                          const std::string& config) {
  std::vector<std::string> labels;
  for (std::size_t t : threads) labels.push_back(std::to_string(t));
  report::LineChart throughput{fmt::format("Training throughput, {} config", config), "threads", "tokens/s", {}, labels, true};
  report::LineChart efficiency{"Parallel efficiency against the first thread count", "threads", "efficiency (%)", {}, labels,
                               true};
  std::vector<report::Chart> charts;
  std::vector<report::StackedBarChart> breakdowns;
  for (const std::string design : {"pipeline", "baseline"}) {
    report::Series tps{design, {}, {}}, eff{design, {}, {}};
    report::StackedBarChart bars{fmt::format("Mean step time, {}", design), "threads", "ms per step", {},
                                 {"compute", "idle", "exposed accumulation", "optimizer"}, {}};
    for (std::size_t i = 0; i < threads.size(); ++i) {
      for (const ScalingRow& r : rows) {
        if (r.m.design != design || r.m.threads != threads[i]) continue;
        tps.x.push_back(static_cast<double>(i)), tps.y.push_back(r.tokens_per_s);
        eff.x.push_back(static_cast<double>(i)), eff.y.push_back(100.0 * r.efficiency);
        bars.categories.push_back(labels[i] + (r.oversubscribed ? "*" : ""));
        bars.values.push_back({r.compute_ms, r.idle_ms, r.exposed_ms, r.optimizer_ms});
      }
    }
    if (tps.x.empty()) continue;
    throughput.series.push_back(tps);
    efficiency.series.push_back(eff);
    breakdowns.push_back(bars);
  }
  charts.push_back(throughput);
  charts.push_back(efficiency);
  for (auto& b : breakdowns) charts.push_back(b);
  return charts;
}

}  // namespace cllm::bench
