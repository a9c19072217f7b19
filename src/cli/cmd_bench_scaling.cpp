// `cllm bench scaling`: training throughput against the thread count, for
// the gradient pipeline and for the plan's baseline design in the same run.
//
// Every (design, thread count) runs in a fresh child process (this binary,
// re-executed with the hidden --child flag), so that peak RSS is that
// configuration's own high-water mark and no run warms caches or the
// allocator for the next. A child trains the named config on a generated
// byte-level corpus with a fixed global batch (--accum micro-batches of
// --batch sequences), whatever the thread count, and prints one JSON line of
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
//
// Designs:
//   pipeline  what `cllm train` runs: persistent workers, dynamic queue,
//             lock-free streaming segment reduce, segment-parallel AdamW.
//   baseline  the plan's "before": a thread per micro-batch, created and
//             joined per round of `threads` micro-batches, each adding its
//             gradient into the global one with a scalar loop under one
//             global mutex; then norm and AdamW on the calling thread (there
//             is no pool to spread them over).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/bench_configs.h"
#include "cli/commands.h"
#include "dist/data_parallel.h"
#include "dist/process_group.h"
#include "kernels/kernels.h"
#include "model/gpt.h"
#include "optim/adamw.h"
#include "parallel/baseline.h"
#include "parallel/gradient_pipeline.h"
#include "report/svg_plot.h"
#include "train/lanes.h"
#include "train/process_stats.h"

namespace cllm::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  std::string config = "small";
  std::string threads = "1,2,4,8,12,24,48,64";
  int steps = 5, warmup = 1, accum = 64, batch = 1;
  double epoch_tokens = 1 << 20;
  bool baseline = true, json = false;
  std::string plot;
  std::uint64_t seed = 1337;
  std::string precision = "auto";
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

// What a child measures over the timed steps (sums; the parent averages).
struct Measurement {
  std::string design;
  std::size_t threads = 0, lanes = 0, steps = 0, tokens_per_step = 0;  // lanes: workers that compute
  double step_s = 0, phase_s = 0, accumulate_s = 0, exposed_s = 0, optimizer_s = 0;
  double busy_thread_s = 0, idle_thread_s = 0;  // within the compute + reduce phase
  double cpu_s = 0, peak_rss_mib = 0, final_loss = 0;
  std::size_t blocking_locks = 0, contended_locks = 0, threads_created = 0;
  int ranks = 1;                                   // processes in the data-parallel step
  double allreduce_s = 0, hidden_allreduce_s = 0;  // 0 with one process
  double llc_references = 0, llc_misses = 0;       // every thread, timed steps (train::CacheCounters)
  std::string llc_unavailable;                     // why there are no counts; empty when there are
};

nlohmann::json to_json(const Measurement& m) {
  return {{"design", m.design}, {"threads", m.threads}, {"lanes", m.lanes}, {"steps", m.steps}, {"tokens_per_step", m.tokens_per_step},
          {"step_s", m.step_s}, {"phase_s", m.phase_s}, {"accumulate_s", m.accumulate_s}, {"exposed_s", m.exposed_s},
          {"optimizer_s", m.optimizer_s}, {"busy_thread_s", m.busy_thread_s}, {"idle_thread_s", m.idle_thread_s},
          {"cpu_s", m.cpu_s}, {"peak_rss_mib", m.peak_rss_mib}, {"final_loss", m.final_loss},
          {"blocking_locks", m.blocking_locks}, {"contended_locks", m.contended_locks},
          {"threads_created", m.threads_created}, {"ranks", m.ranks},
          {"allreduce_s", m.allreduce_s}, {"hidden_allreduce_s", m.hidden_allreduce_s},
          {"llc_references", m.llc_references}, {"llc_misses", m.llc_misses}, {"llc_unavailable", m.llc_unavailable}};
}

Measurement from_json(const nlohmann::json& j) {
  Measurement m;
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

// --warmup untimed then --steps timed optimizer steps of one design; the
// pipeline's split over group's processes (every rank calls this alike).
Measurement run_one(const Options& o, const std::string& design, std::size_t threads, dist::ProcessGroup& group) {
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

  Measurement m;
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

// Re-executes this binary as a child for one design and thread count and
// parses the JSON line it prints. The child's stderr passes through.
Measurement run_child(const Options& o, const std::string& design, std::size_t threads) {
  std::vector<std::string> args = {"cllm", "bench", "scaling", "--config", o.config, "--threads", std::to_string(threads),
                                   "--steps", std::to_string(o.steps), "--warmup", std::to_string(o.warmup), "--accum",
                                   std::to_string(o.accum), "--batch", std::to_string(o.batch), "--seed",
                                   std::to_string(o.seed), "--precision", o.precision, "--child", design};
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

// One row of the report: a measurement plus what is derived from it.
struct Row {
  Measurement m;
  bool oversubscribed = false;
  double tokens_per_s = 0, speedup = 0, efficiency = 0, epoch_s = 0;
  double step_ms = 0, accumulate_ms = 0, exposed_ms = 0, exposed_pct = 0, optimizer_ms = 0, idle_pct = 0;
  double compute_ms = 0, idle_ms = 0;  // the step-time breakdown's other parts
  double locks_per_step = 0, contended_locks_per_step = 0, threads_created_per_step = 0, cpu_util_pct = 0;
  double allreduce_ms = 0, hidden_allreduce_ms = 0, hidden_allreduce_pct = 0;  // 0 with one process
  std::optional<double> llc_miss_pct;  // none where the counters are unavailable (or counted nothing)
};

Row derive(const Measurement& m, double reference_tokens_per_s, std::size_t reference_threads, double epoch_tokens,
           unsigned cores) {
  Row r;
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

nlohmann::json row_json(const Row& r, const Options& o, const std::string& command) {
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
std::string cache_miss_line(const std::vector<Row>& rows) {
  std::string line = "LLC miss rate (cache misses / references, every thread, timed steps):", design, unavailable;
  bool any = false;
  for (const Row& r : rows) {
    any |= r.llc_miss_pct.has_value();
    if (unavailable.empty()) unavailable = r.m.llc_unavailable;
  }
  if (!any) return line + " unavailable (" + (unavailable.empty() ? "no cache references counted" : unavailable) + ")";
  for (const Row& r : rows) {
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

void print_row(const Row& r) {
  std::printf("%-8s %5zu%-2s %5zu %10.0f %6.2fx %4.0f%% %9.1f %9.1f %9.2f %7.2f (%4.1f) %8.2f %6.1f %8.0f %8.1f %5.0f %8.1f %7.4f",
              r.m.design.c_str(), r.m.threads, r.oversubscribed ? " *" : "", r.m.lanes, r.tokens_per_s, r.speedup,
              100.0 * r.efficiency, r.epoch_s, r.step_ms, r.accumulate_ms, r.exposed_ms, r.exposed_pct, r.optimizer_ms,
              r.idle_pct, r.locks_per_step, r.contended_locks_per_step, r.cpu_util_pct, r.m.peak_rss_mib, r.m.final_loss);
  if (r.m.ranks > 1) std::printf(" %9.2f %8.2f (%4.1f)", r.allreduce_ms, r.hidden_allreduce_ms, r.hidden_allreduce_pct);
  std::printf("\n");
  std::fflush(stdout);
}

std::vector<report::Chart> scaling_charts(const std::vector<Row>& rows, const std::vector<std::size_t>& threads,
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
      for (const Row& r : rows) {
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

void run_sweep(const Options& o) {
  // Bad flags fail here, before minutes of runs.
  const NamedConfig nc = named_config(o.config);
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
  std::vector<Row> rows;
  double reference_tps = 0;
  for (const std::string design : {"pipeline", "baseline"}) {
    if (design == "baseline" && (!o.baseline || distributed)) continue;
    for (std::size_t t : threads) {
      Measurement m;
      if (!distributed) {
        m = run_child(o, design, t);
      } else {
        try {
          m = run_one(o, design, t, group);
        } catch (const std::exception& e) {
          group.abort(e.what());  // the other ranks wait in an all-reduce: end them all, never a hang
        }
      }
      if (rows.empty()) reference_tps = static_cast<double>(m.tokens_per_step) * static_cast<double>(m.steps) / m.step_s;
      rows.push_back(derive(m, reference_tps, threads.front(), o.epoch_tokens, cores));
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
    report::write_svg(o.plot, scaling_charts(rows, threads, o.config));
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
    std::printf("%s\n", to_json(run_one(*opt, opt->child, threads.front(), *single)).dump().c_str());
  });
}

}  // namespace cllm::cli
