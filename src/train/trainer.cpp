#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "data/file_io.h"
#include "dist/data_parallel.h"
#include "dist/process_group.h"
#include "kernels/fma_peak.h"
#include "kernels/kernels.h"
#include "optim/adamw.h"
#include "parallel/gradient_pipeline.h"
#include "train/checkpoint.h"
#include "train/lanes.h"
#include "train/loss_spike.h"
#include "train/memory_plan.h"
#include "train/metrics_log.h"
#include "train/process_stats.h"
#include "train/progress.h"
#include "train/sampling.h"
#include "train/stop_signal.h"

namespace cllm::train {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Model FLOPs per trained token (forward + backward), nanoGPT's estimate:
// 6 per non-embedding-position parameter (the tied head counts) plus the
// attention score/value products, 12 * layers * dim * seq.
double flops_per_token(const model::ParamLayout& layout, int seq) {
  const model::Config& c = layout.config();
  const double params = static_cast<double>(layout.total() - layout.find("wpe.weight").size);
  return 6.0 * params + 12.0 * c.layers * c.dim * seq;
}

// Micro-batches per step: far beyond any useful run, small enough that the
// per-step bookkeeping (one loss per micro-batch) stays tiny.
constexpr std::size_t kMaxAccum = std::size_t{1} << 20;

void check_options(const TrainOptions& o) {
  if (o.data.empty()) throw std::invalid_argument("--data is required (a text file, a directory of text files or a .tok file)");
  if (o.batch < 1) throw std::invalid_argument("--batch must be >= 1, got " + std::to_string(o.batch));
  if (o.accum < 1 || o.accum > kMaxAccum)
    throw std::invalid_argument(fmt::format("--accum must be in [1, {}], got {}", kMaxAccum, o.accum));
  if (o.seq < 0) throw std::invalid_argument("--seq must be >= 1, got " + std::to_string(o.seq));
  if (o.steps == 0 && !(o.epochs > 0.0)) throw std::invalid_argument("give --steps N or --epochs X (> 0)");
  if (!(o.val_fraction >= 0.0 && o.val_fraction < 1.0))
    throw std::invalid_argument("--val-fraction must be in [0, 1), got " + std::to_string(o.val_fraction));
  if (o.clip < 0.0f || !std::isfinite(o.clip)) throw std::invalid_argument("--clip must be >= 0 (0 turns it off)");
  if (o.eval_batches < 1) throw std::invalid_argument("--eval-batches must be >= 1");
  if (o.log_every < 1) throw std::invalid_argument("--log-every must be >= 1");
  if (!(o.skip_spikes >= 0.0) || !std::isfinite(o.skip_spikes))
    throw std::invalid_argument("--skip-spikes must be >= 0 standard deviations (0: off)");
}

std::map<std::string, std::string> run_settings(const TrainOptions& o, int seq, std::size_t threads,
                                                model::Precision precision) {
  return {{"seed", std::to_string(o.seed)},
          {"precision", std::string(model::precision_name(precision))},
          {"data", o.data.string()},
          {"data_order", o.data_order == data::DataOrder::shuffled ? "shuffled" : "sequential"},
          {"tokenizer", o.tokenizer},
          {"batch", std::to_string(o.batch)},
          {"seq", std::to_string(seq)},
          {"accum", std::to_string(o.accum)},
          {"deterministic", o.deterministic ? "1" : "0"},
          {"threads", std::to_string(threads)}};
}

// What resuming with a changed setting (a key of run_settings) does; the run
// continues either way, differing from an uninterrupted one.
std::string what_a_change_means(const std::string& key) {
  if (key == "batch" || key == "accum")
    return "the run continues at sequence (step x accum + k) x batch + row of the new shape, so part of this "
           "epoch's sequences are read twice or skipped";
  if (key == "seq") return "the data is cut into windows of the new length, and the order continues in those";
  if (key == "data" || key == "tokenizer") return "the data position now counts in the new data";
  if (key == "data_order" || key == "seed") return "the data order from here on is the new setting's";
  if (key == "precision") return "the products round differently from here on (weights, moments and checkpoints are f32 in both)";
  if (key == "threads" || key == "deterministic") return "only the rounding of the gradient sums changes";
  return "the run will differ from an uninterrupted one";
}

// ", split into 2 work items of 4 seqs over 2 lanes" where the micro-batches
// are cut into pieces (parallel::split_work), else nothing. With several
// processes rank 0's share is described (each rank cuts its own).
std::string describe_split(const parallel::WorkSplit& split, std::size_t lanes, bool several_processes) {
  if (split.pieces == 1) return "";
  const std::size_t least = split.rows / split.pieces, most = split.max_rows();
  return fmt::format(", {}split into {} work items of {} seqs over {} lanes", several_processes ? "rank 0's share " : "",
                     split.items(), least == most ? std::to_string(most) : fmt::format("{}-{}", least, most), lanes);
}

// The learning-rate schedule, checked against the run's length.
optim::LrSchedule checked_schedule(const TrainOptions& opt, std::size_t total_steps) {
  const optim::LrSchedule schedule{opt.schedule, opt.lr, opt.min_lr, opt.warmup, total_steps};
  if (opt.warmup > total_steps)
    throw std::invalid_argument(fmt::format("--warmup {} exceeds the run's {} steps", opt.warmup, total_steps));
  schedule.validate();
  return schedule;
}

// The held-out sequences evaluate() reads, where there is room for one.
std::optional<data::BatchSampler> validation_sampler(const data::Dataset& dataset, int seq, std::uint64_t seed) {
  std::optional<data::BatchSampler> val_sampler;
  if (dataset.validation.size >= static_cast<std::uint64_t>(seq) + 1)
    val_sampler.emplace(dataset.validation, seq, data::DataOrder::sequential, seed);
  return val_sampler;
}

// MFU's denominator: the measured FMA peak of the cores the workers can use.
double fma_peak_gflops(std::size_t cores) {
  try {
    return kernels::measure_fma_peak().gflops * static_cast<double>(cores);
  } catch (const std::exception&) {  // no AVX2/AVX-512: MFU is reported as 0
    return 0.0;
  }
}

// What is decided before anything large is allocated: the model's shape, the
// threads and lanes, and the memory plan, which --dry-run stops after and a
// run that does not fit fails at.
struct RunPlan {
  std::size_t threads;
  std::unique_ptr<data::Tokenizer> tokenizer;
  model::PrecisionChoice precision;
  bool bf16;
  std::optional<LoadedWeights> init;  // --init-from's weights
  model::Config config;
  model::ParamLayout layout;
  int seq;
  dist::ProcessGroup& group;
  bool root;
  std::size_t K, B, cores;
  parallel::PipelineOptions pipeline_options;
  MemoryPlan memory;
};

RunPlan plan_run(const TrainOptions& opt) {
  const std::size_t threads = resolve_threads(opt.threads);
  auto tokenizer = data::make_tokenizer(opt.tokenizer, opt.encoder_json, opt.vocab_bpe);
  const model::PrecisionChoice precision = model::choose_precision(opt.precision);
  const bool bf16 = precision.precision == model::Precision::bf16;

  // Model: fresh, from --init-from, or (below) from the checkpoint resumed.
  std::optional<LoadedWeights> init;
  model::Config config = opt.model;
  if (!opt.init_from.empty()) {
    init = load_weights(opt.init_from, opt.model.heads);
    config = init->config;
  }
  if (config.vocab == 0) config.vocab = tokenizer->vocab_size();
  if (config.vocab < tokenizer->vocab_size())
    throw std::invalid_argument(fmt::format("--vocab {} is smaller than the {} tokenizer's vocabulary ({})", config.vocab,
                                            tokenizer->name(), tokenizer->vocab_size()));
  const model::ParamLayout layout(config);  // validates
  const int seq = opt.seq ? opt.seq : config.context;
  if (seq > config.context)
    throw std::invalid_argument(fmt::format("--seq {} exceeds the model context {}", seq, config.context));

  // Several processes (mpirun): rank 0 alone reads and writes the run
  // directory and prints; the others get its state by broadcast below.
  dist::ProcessGroup& group = opt.group ? *opt.group : dist::world();
  const bool root = group.is_root();

  // Memory, planned before anything large is allocated. The tokens loaded
  // next are not in it (a corpus is read whole today).
  // Threads beyond the cores this process may use get no compute lane (see
  // PipelineOptions::lanes): oversubscription then costs no buffers or cache.
  const std::size_t K = opt.accum;
  const std::size_t B = static_cast<std::size_t>(opt.batch);
  const std::size_t cores = std::min(threads, parallel::available_cores());
  const parallel::PipelineOptions pipeline_options{.threads = threads, .lanes = cores,
                                                   .deterministic = opt.deterministic};
  // A lane's workspace holds the rows of one of its work items (the split
  // dist::DataParallelStep makes below), not necessarily a whole micro-batch.
  const std::size_t lane_rows =
      dist::shard_split(K, B, parallel::compute_lanes(pipeline_options), group.rank(), group.size()).max_rows();
  const MemoryPlan memory =
      plan_training_memory(config, lane_rows, seq, parallel::compute_lanes(pipeline_options), precision.precision);
  const MemoryAvailable available = available_memory();
  fmt::print("memory: {}; {} available ({})\n", memory.describe(), format_bytes(available.bytes),
             available.source.empty() ? "unknown" : available.source);
  check_memory_fits(memory, available);
  return {threads, std::move(tokenizer), precision, bf16, std::move(init), config, layout, seq, group, root, K, B, cores,
          pipeline_options, memory};
}

// One training run after its plan: the state, built by the constructor in
// the order of the members below (data, parameters and optimizer, resume,
// lanes, metrics), then its phases: print_configuration, run_steps, finish.
// The plan's fields are inherited, so the code names them directly.
class TrainingRun : RunPlan {
 public:
  TrainingRun(const TrainOptions& options, RunPlan plan);
  void print_configuration() const;
  void run_steps();
  TrainSummary finish();

 private:
  std::size_t restore_or_initialize();
  Lanes make_lanes();
  double mfu(double tokens_per_s) const;
  double evaluate();
  void log_eval(double val);
  double train_piece(std::size_t w, const parallel::Piece& piece, float* grad, bool first);
  void save();
  void sample(std::uint64_t seed);
  std::string last_checkpoint_name() const;
  bool should_stop();
  void add_to_totals(const parallel::StepStats& st, double idle_s);
  void write_step_metrics(const parallel::StepStats& st, float lr, double tok_s, double idle_s, double elapsed, bool ok);
  void report_step(const parallel::StepStats& st, float lr, double tok_s, double spike_z, double elapsed,
                   const std::string& eta, bool ok, bool logged);
  void evaluate_sample_save();
  void report_summary(double wall);

  const TrainOptions& opt;

  // Data
  const data::Dataset dataset;
  const data::BatchSampler train_sampler;
  const std::optional<data::BatchSampler> val_sampler;
  const std::size_t tokens_per_step;
  const std::size_t steps_per_epoch;
  const std::size_t total_steps;
  const optim::LrSchedule schedule;

  // Parameters and optimizer
  std::vector<float> params;
  optim::AdamW adamw;

  // The run directory and the state training continues from
  CheckpointStore store;
  const std::map<std::string, std::string> settings;
  TrainSummary summary;
  std::optional<std::size_t> saved_at;  // step of the newest checkpoint on disk
  LossSpikeDetector spikes;
  // The next step to run: restore_or_initialize() loads the parameters,
  // moments and loss window above and returns the checkpoint's step (0 when
  // fresh), before the members below copy or use them.
  std::size_t step;

  // Mixed precision: the products read a bf16 copy of the weights, made once
  // here and then by AdamW as it updates each segment.
  std::vector<kernels::bf16> params_bf16;
  const model::Weights weights;

  const StopSignal stop_signal;  // before the pool: its workers must inherit the blocked signals
  parallel::GradientPipeline pipeline;
  const std::size_t lanes;
  dist::DataParallelStep data_parallel;
  const parallel::WorkSplit& split;
  Lanes workers;  // one workspace per lane
  const ForEachLane for_each_lane;

  MetricsLog metrics;
  const double flops_tok;
  const double peak_gflops;

  // The step loop's state.
  std::size_t bad_in_a_row = 0;
  std::size_t current_step = 0;  // read by the work function
  Clock::time_point t_start;

  // Totals for the summary.
  double sum_step_s = 0, sum_acc_s = 0, sum_exposed_s = 0, sum_opt_s = 0, sum_idle_s = 0, sum_phase_thread_s = 0;
  double sum_allreduce_s = 0, sum_hidden_allreduce_s = 0;
  double sum_cpu_s = 0;  // process CPU time inside steps (not saves or evals)
  std::size_t locks = 0, contended_locks = 0, counted_steps = 0;
  std::vector<std::size_t> lane_items;  // work items each lane ran
};

TrainingRun::TrainingRun(const TrainOptions& options, RunPlan plan)
    : RunPlan(std::move(plan)),
      opt(options),
      dataset(data::Dataset::load({opt.data, opt.val_data, opt.val_fraction}, *tokenizer)),
      train_sampler(dataset.train, seq, opt.data_order, opt.seed),
      val_sampler(validation_sampler(dataset, seq, opt.seed)),
      tokens_per_step(K * B * static_cast<std::size_t>(seq)),
      steps_per_epoch(std::max<std::size_t>(1, (train_sampler.sequences_per_epoch() + K * B - 1) / (K * B))),
      total_steps(opt.steps ? opt.steps
                            : static_cast<std::size_t>(std::ceil(opt.epochs * static_cast<double>(steps_per_epoch)))),
      schedule(checked_schedule(opt, total_steps)),
      params(allocate_part(memory, "params", [&] { return std::vector<float>(layout.total()); })),
      adamw(allocate_part(memory, "moments",
                          [&] {
                            std::vector<optim::ParamRange> ranges;
                            for (const auto& t : layout.tensors()) ranges.push_back({t.offset, t.size, t.decay});
                            return optim::AdamW(layout.total(), {opt.lr, opt.beta1, opt.beta2, 1e-8f, opt.weight_decay},
                                                ranges);
                          })),
      store(opt.out),
      settings(run_settings(opt, seq, threads, precision.precision)),
      spikes(opt.skip_spikes),
      step(restore_or_initialize()),
      params_bf16(allocate_part(memory, "bf16 weights", [&] { return model::bf16_copy(params, precision.precision); })),
      weights(params.data(), params_bf16),
      pipeline(allocate_part(memory, "grads", [&] { return parallel::GradientPipeline(layout.total(), pipeline_options); })),
      lanes(pipeline.lanes()),
      data_parallel(group, pipeline, K, B),
      split(data_parallel.split()),
      workers(make_lanes()),
      for_each_lane([this](const std::function<void(std::size_t)>& fn) { pipeline.for_each_lane(fn); }),
      metrics(root ? opt.out / "metrics.jsonl" : fs::path("/dev/null")),  // rank 0 logs
      flops_tok(flops_per_token(layout, seq)),
      peak_gflops(fma_peak_gflops(cores)),
      lane_items(lanes, 0) {
  if (bf16) adamw.set_bf16_copy(params_bf16.data());
}

// Creates the run directory, then sets the parameters, moments and loss
// window: from the newest usable checkpoint with --resume, else from
// --init-from's weights or freshly initialised; with several processes,
// rank 0's, broadcast to all. Returns the step to continue from.
std::size_t TrainingRun::restore_or_initialize() {
  std::error_code ec;
  if (root) fs::create_directories(opt.out, ec);
  if (ec) throw std::runtime_error("cannot create output directory '" + opt.out.string() + "': " + ec.message());
  std::size_t start = 0;
  // --resume takes the newest checkpoint that passes its manifest, saying which it passed over.
  const auto say = [](const std::string& line) { fmt::print("{}\n", line); };
  const auto existing = !root ? std::nullopt : opt.resume ? store.newest_usable(say) : store.latest();
  if (existing && !opt.resume)
    throw std::runtime_error(fmt::format("'{}' already holds checkpoints (newest: {}); pass --resume to continue it, or choose another --out",
                                         opt.out.string(), existing->dir.string()));
  if (existing) {
    const TrainState state = store.load(*existing, layout, params, adamw.m(), adamw.v());
    start = state.step;
    const auto adam_step = state.settings.find("adam_step");
    adamw.set_step(adam_step != state.settings.end() ? std::stoull(adam_step->second) : start);
    if (const auto window = state.settings.find("loss_window"); window != state.settings.end()) {
      try {
        spikes.restore(window->second);
      } catch (const std::exception& e) {
        throw data::file_error(existing->dir / "state.safetensors", e.what());
      }
    }
    summary.last_checkpoint = existing->dir;
    saved_at = start;  // no second save of this step: replacing a checkpoint in place is not atomic
    fmt::print("resuming from {} (step {})\n", existing->dir.string(), start);
    for (const auto& [key, value] : settings) {
      const auto saved = state.settings.find(key);
      if (saved != state.settings.end() && saved->second != value)
        fmt::print("warning: {} was '{}' in the checkpoint and is '{}' now: {}\n", key, saved->second, value,
                   what_a_change_means(key));
    }
  } else if (init) {
    params = std::move(init->params);
  } else {
    if (opt.resume) fmt::print("no checkpoint in '{}': starting from scratch\n", opt.out.string());
    model::init_params(layout, params.data(), opt.seed);
  }
  if (group.size() > 1) {  // checkpoints hold no per-rank state: resume with any P
    group.broadcast(params.data(), params.size() * sizeof(float), 0);
    group.broadcast(adamw.m().data(), adamw.m().size_bytes(), 0);
    group.broadcast(adamw.v().data(), adamw.v().size_bytes(), 0);
    std::uint64_t counters[2] = {start, adamw.step()};
    group.broadcast(counters, sizeof counters, 0);
    start = counters[0];
    adamw.set_step(counters[1]);
    saved_at = start;
    std::string window = spikes.serialize();
    group.broadcast(window, 0);
    spikes.restore(window);
  }
  return start;
}

// Each lane's workspace, built on the lane's own thread, for the rows of one
// work item.
Lanes TrainingRun::make_lanes() {
  Lanes made(lanes);
  allocate_part(memory, "workspaces", [&] {
    pipeline.for_each_lane(
        [&](std::size_t w) { made[w] = std::make_unique<LaneState>(config, split.max_rows(), seq, precision.precision); });
  });
  return made;
}

double TrainingRun::mfu(double tokens_per_s) const {
  return peak_gflops > 0 ? 100.0 * tokens_per_s * flops_tok * 1e-9 / peak_gflops : 0.0;
}

void TrainingRun::print_configuration() const {
  fmt::print("cllm train: {} params (layers {}, dim {}, heads {}, context {}, vocab {})\n", layout.total(),
             config.layers, config.dim, config.heads, config.context, config.vocab);
  fmt::print("  data {}: {} train tokens, {} validation tokens, tokenizer {}{}\n", opt.data.string(), dataset.train.size,
             dataset.validation.size, tokenizer->name(),
             dataset.skipped.empty() ? "" : fmt::format(" ({} non-text files skipped)", dataset.skipped.size()));
  fmt::print("  batch: {} micro-batches x {} seqs x {} tokens = {} tokens/step{}; {} steps/epoch; {} steps\n", K, B, seq,
             tokens_per_step, describe_split(split, lanes, group.size() > 1), steps_per_epoch, total_steps);
  fmt::print("  threads {} ({}{}), lr {:g} -> {:g} {} warmup {}, wd {:g}, betas {:g}/{:g}, clip {:g}, seed {}, out {}\n",
             threads, opt.deterministic ? "deterministic" : "dynamic queue",
             lanes < threads ? fmt::format(", {} compute lanes: more threads than the {} cores", lanes, cores) : "",
             opt.lr, opt.min_lr,
             optim::lr_schedule_name(opt.schedule), opt.warmup, opt.weight_decay, opt.beta1, opt.beta2, opt.clip,
             opt.seed, opt.out.string());
  fmt::print("  precision {} ({}){}\n", model::precision_name(precision.precision), precision.why,
             bf16 ? ": bf16 products with f32 accumulation; f32 weights, gradients, moments and checkpoints" : "");
  if (group.size() > 1)
    fmt::print("  {} processes ({}) x {} threads; micro-batch k on rank k mod {}\n", group.size(), group.backend(), threads,
               group.size());
}

// Mean validation loss over eval_batches micro-batches, spread over the lanes.
double TrainingRun::evaluate() {
  if (!val_sampler || !root) return -1.0;
  const std::size_t n = std::min<std::size_t>(opt.eval_batches, std::max<std::uint64_t>(1, val_sampler->sequences_per_epoch() / B));
  return evaluate_loss(layout, weights, *val_sampler, n * B, workers, for_each_lane).loss;
}

// An eval line on stdout and in the metrics log; none without validation data.
void TrainingRun::log_eval(double val) {
  if (val < 0) return;
  fmt::print("eval step {} | val loss {:.4f} | ppl {:.2f}\n", step, val, std::exp(val));
  metrics.write({{"step", step}, {"val_loss", val}, {"val_ppl", std::exp(val)}});
}

// The work function: lane w's forward and backward over one piece of a
// micro-batch of the current step.
double TrainingRun::train_piece(std::size_t w, const parallel::Piece& piece, float* grad, bool first) {
  LaneState& s = *workers[w];
  const std::size_t rows = piece.rows.size();
  s.fill(train_sampler, (static_cast<std::uint64_t>(current_step) * K + piece.micro_batch) * B + piece.rows.begin, rows);
  // Weighted by the piece's share of the K x B sequences, so loss and
  // gradient are the global batch's means however it is split (a whole
  // micro-batch: exactly 1/K).
  const double global_rows = static_cast<double>(K * B);
  const float loss = model::forward_backward(layout, weights, s.inputs.data(), s.targets.data(), static_cast<int>(rows),
                                             seq, grad, static_cast<float>(static_cast<double>(rows) / global_rows),
                                             first, s.ws);
  return static_cast<double>(loss) * static_cast<double>(rows) / global_rows;
}

void TrainingRun::save() {
  group.barrier();  // every rank has finished the step before its checkpoint exists
  if (!root) return;
  TrainState state{step, settings};
  state.settings["adam_step"] = std::to_string(adamw.step());
  if (spikes.enabled()) state.settings["loss_window"] = spikes.serialize();
  const Checkpoint c = store.save(layout, params, adamw.m(), adamw.v(), state, tokenizer->record(), opt.keep);
  summary.last_checkpoint = c.dir;
  saved_at = step;
  fmt::print("saved checkpoint {}\n", c.dir.string());
}

void TrainingRun::sample(std::uint64_t seed) {
  if (!root) return;
  SamplingOptions so;
  so.tokens = opt.sample_tokens;
  so.seed = seed;
  fmt::print("--- sample at step {} ---\n", step);
  print_generation(layout, weights, *tokenizer, "", so, false);  // in the run's precision
  fmt::print("\n---\n");
}

std::string TrainingRun::last_checkpoint_name() const {
  return summary.last_checkpoint.empty() ? std::string("none") : summary.last_checkpoint.string();
}

// Whether to stop before the next step: a stop signal on any rank, or
// --stop-after steps done in this invocation.
bool TrainingRun::should_stop() {
  double stop_votes = stop_signal.requested() ? 1.0 : 0.0;
  group.allreduce_sum(&stop_votes, 1);  // all ranks stop at the same step
  if (stop_votes > 0.0) {
    summary.stopped_by_signal = true;
    return true;
  }
  if (opt.stop_after && step - summary.first_step >= opt.stop_after) {
    summary.stopped_early = true;
    return true;
  }
  return false;
}

// One optimizer step after another until the last step or a stop; each step
// is logged, then evaluated, sampled and saved when due.
void TrainingRun::run_steps() {
  summary.first_step = step;
  const dist::PieceFn work = [this](std::size_t w, const parallel::Piece& piece, float* grad, bool first) {
    return train_piece(w, piece, grad, first);
  };
  t_start = Clock::now();
  ProgressLine progress;  // between logged steps, on a terminal

  while (step < total_steps) {
    if (should_stop()) break;
    current_step = step;
    const float lr = schedule.at(step);
    const double cpu0 = process_usage().cpu_seconds;
    double spike_z = 0.0;
    const auto accept_loss = [&](double loss) {
      spike_z = spikes.z_score(loss);
      return !spikes.is_spike(loss);
    };
    const parallel::StepStats st =
        data_parallel.step(work, params.data(), adamw, lr, opt.clip, spikes.enabled() ? std::function<bool(double)>(accept_loss) : nullptr);
    sum_cpu_s += process_usage().cpu_seconds - cpu0;
    ++step;
    const double tok_s = static_cast<double>(tokens_per_step) / st.seconds;
    const bool ok = st.finite && std::isfinite(st.loss_sum);
    double idle_s = 0;
    for (double s : st.idle_seconds) idle_s += s;
    add_to_totals(st, idle_s);
    summary.final_loss = st.loss_sum;
    const double elapsed = seconds_since(t_start);
    const std::string eta = format_duration(eta_seconds(elapsed, step - summary.first_step, total_steps - step));
    const bool logged = step % opt.log_every == 0 || step == total_steps;

    write_step_metrics(st, lr, tok_s, idle_s, elapsed, ok);
    progress.clear();
    report_step(st, lr, tok_s, spike_z, elapsed, eta, ok, logged);
    std::fflush(stdout);

    evaluate_sample_save();
    if (!logged) progress.show(fmt::format("step {:>6}/{} | {:.0f} tok/s | ETA {}", step, total_steps, tok_s, eta));
  }
  progress.clear();
}

void TrainingRun::add_to_totals(const parallel::StepStats& st, double idle_s) {
  sum_step_s += st.seconds;
  sum_acc_s += st.accumulate_seconds;
  sum_exposed_s += st.exposed_accumulate_seconds;
  sum_opt_s += st.optimizer_seconds;
  sum_allreduce_s += data_parallel.allreduce_seconds();
  sum_hidden_allreduce_s += data_parallel.hidden_allreduce_seconds();
  sum_idle_s += idle_s;
  sum_phase_thread_s += st.reduce_phase_seconds * static_cast<double>(lanes);
  locks += st.blocking_locks, contended_locks += st.contended_locks;
  for (std::size_t w = 0; w < lanes; ++w) lane_items[w] += st.micro_batches_per_worker[w];
  ++counted_steps;
}

// The step's line in metrics.jsonl (every step is logged there).
void TrainingRun::write_step_metrics(const parallel::StepStats& st, float lr, double tok_s, double idle_s, double elapsed,
                                     bool ok) {
  metrics.write({{"step", step},
                 {"elapsed_s", elapsed},
                 {"loss", ok ? nlohmann::json(st.loss_sum) : nlohmann::json(nullptr)},
                 {"lr", lr},
                 {"grad_norm", std::isfinite(st.grad_norm) ? nlohmann::json(st.grad_norm) : nlohmann::json(nullptr)},
                 {"ms", st.seconds * 1e3},
                 {"tokens_per_s", tok_s},
                 {"gflops", tok_s * flops_tok * 1e-9},
                 {"mfu_pct", mfu(tok_s)},
                 {"accumulate_ms", st.accumulate_seconds * 1e3},
                 {"exposed_accumulate_ms", st.exposed_accumulate_seconds * 1e3},
                 {"optimizer_ms", st.optimizer_seconds * 1e3},
                 {"allreduce_ms", data_parallel.allreduce_seconds() * 1e3},
                 {"hidden_allreduce_ms", data_parallel.hidden_allreduce_seconds() * 1e3},
                 {"idle_pct", 100.0 * idle_s / std::max(1e-12, st.reduce_phase_seconds * static_cast<double>(lanes))},
                 {"items_per_lane", st.micro_batches_per_worker},
                 {"blocking_locks", st.blocking_locks},
                 {"contended_locks", st.contended_locks},
                 {"skipped", !st.finite || st.rejected},
                 {"skip_reason", !st.finite ? nlohmann::json("non-finite") : st.rejected ? nlohmann::json("loss spike") : nlohmann::json(nullptr)}});
}

// The step's line on stdout: always for a skipped update (a non-finite loss
// or norm, which ends the run after max_bad_steps in a row, or a loss
// spike), else on logged steps.
void TrainingRun::report_step(const parallel::StepStats& st, float lr, double tok_s, double spike_z, double elapsed,
                              const std::string& eta, bool ok, bool logged) {
  if (!ok) {
    ++bad_in_a_row;
    fmt::print("step {:>6}/{} | non-finite loss or gradient norm: update skipped ({} in a row)\n", step, total_steps,
               bad_in_a_row);
    if (bad_in_a_row >= opt.max_bad_steps)
      throw std::runtime_error(fmt::format(
          "training diverged: {} steps in a row with a non-finite loss or gradient norm (lower --lr, check the data); "
          "last checkpoint: {}",
          bad_in_a_row, last_checkpoint_name()));
  } else if (st.rejected) {
    bad_in_a_row = 0;
    fmt::print("step {:>6}/{} | loss {:.4f} is a spike ({:.1f} standard deviations above the recent mean): update skipped\n",
               step, total_steps, st.loss_sum, spike_z);
  } else {
    bad_in_a_row = 0;
    spikes.add(st.loss_sum);
    if (logged)
      fmt::print("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} ms | {:.0f} tok/s | MFU {:.1f}% | {}, ETA {}\n",
                 step, total_steps, st.loss_sum, lr, st.grad_norm, st.seconds * 1e3, tok_s, mfu(tok_s),
                 format_duration(elapsed), eta);
  }
}

// Evaluation, a sample and a checkpoint at their intervals; the last step's
// are finish()'s.
void TrainingRun::evaluate_sample_save() {
  if (opt.eval_every && step % opt.eval_every == 0 && step < total_steps) log_eval(evaluate());
  if (opt.sample_every && step % opt.sample_every == 0 && step < total_steps) sample(opt.seed + step);
  if (opt.ckpt_every && step % opt.ckpt_every == 0 && step < total_steps) {
    try {
      save();
    } catch (const std::exception& e) {
      const std::string previous = last_checkpoint_name();
      if (!opt.continue_on_save_error)
        throw std::runtime_error(fmt::format("cannot save the checkpoint of step {}: {} (previous checkpoint, intact: {}); "
                                             "free space or fix the directory and rerun with --resume, or pass --on-save-error continue",
                                             step, e.what(), previous));
      fmt::print(stderr, "cllm: warning: cannot save the checkpoint of step {}: {}; training on (previous checkpoint, intact: {})\n",
                 step, e.what(), previous);
      metrics.write({{"step", step}, {"save_error", e.what()}});
    }
  }
}

// After the loop: the final checkpoint (unless the last step has one), the
// final evaluation, the summary and a sample.
TrainSummary TrainingRun::finish() {
  const double wall = seconds_since(t_start);
  std::uint8_t final_save = saved_at != step;
  group.broadcast(&final_save, 1, 0);  // rank 0's saves decide: all ranks meet in save()
  if (final_save) {
    try {
      save();
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("cannot save the final checkpoint of step {}: {} (last checkpoint, intact: {})", step,
                                           e.what(), last_checkpoint_name()));
    }
  }
  summary.steps_done = step;
  summary.wall_seconds = wall;
  summary.val_loss = evaluate();
  log_eval(summary.val_loss);
  if (counted_steps > 0) report_summary(wall);
  if (opt.sample_tokens > 0) sample(opt.seed);
  if (summary.stopped_by_signal || summary.stopped_early)
    fmt::print("stopped at step {} of {}; continue with the same command and --resume\n", step, total_steps);
  return summary;
}

// The run's throughput into the summary, and the plan's metrics printed.
void TrainingRun::report_summary(double wall) {
  const double n = static_cast<double>(counted_steps);
  summary.tokens_per_second = static_cast<double>(tokens_per_step) * n / sum_step_s;
  const double cpu_util = sum_cpu_s / sum_step_s / static_cast<double>(cores);
  fmt::print("\n== summary ({} steps in {:.1f} s, {} threads) ==\n", counted_steps, wall, threads);
  fmt::print("  time per epoch           {:10.2f} s ({} steps)\n", sum_step_s / n * static_cast<double>(steps_per_epoch), steps_per_epoch);
  fmt::print("  tokens/s                 {:10.0f}\n", summary.tokens_per_second);
  fmt::print("  model GFLOP/s            {:10.2f}\n", summary.tokens_per_second * flops_tok * 1e-9);
  fmt::print("  MFU                      {:10.1f} % (of {:.0f} GFLOP/s measured FMA peak)\n", mfu(summary.tokens_per_second), peak_gflops);
  fmt::print("  step time                {:10.2f} ms\n", sum_step_s / n * 1e3);
  fmt::print("  accumulation (thread-s)  {:10.2f} ms/step\n", sum_acc_s / n * 1e3);
  fmt::print("  exposed accumulation     {:10.2f} ms/step ({:.2f}% of step)\n", sum_exposed_s / n * 1e3, 100.0 * sum_exposed_s / sum_step_s);
  fmt::print("  optimizer                {:10.2f} ms/step\n", sum_opt_s / n * 1e3);
  if (group.size() > 1)
    fmt::print("  all-reduce ({} ranks)     {:10.2f} ms/step ({:.2f} ms hidden behind compute)\n", group.size(),
               sum_allreduce_s / n * 1e3, sum_hidden_allreduce_s / n * 1e3);
  fmt::print("  idle                     {:10.2f} %\n", 100.0 * sum_idle_s / std::max(1e-12, sum_phase_thread_s));
  std::string per_lane;
  for (std::size_t items : lane_items) per_lane += fmt::format("{}{:.1f}", per_lane.empty() ? "" : " | ", static_cast<double>(items) / n);
  fmt::print("  work items per lane      {} per step (of up to {} seqs)\n", per_lane, split.max_rows());
  fmt::print("  blocking lock operations {:10} total (pthread mutexes taken in the process, the sgemm library's included;"
             " {} found the mutex held)\n", locks, contended_locks);
  fmt::print("  CPU utilisation (steps)  {:10.1f} % (of {} cores)\n", 100.0 * cpu_util, cores);
  fmt::print("  peak RSS                 {:10.1f} MiB\n", process_usage().peak_rss_mib);
  fmt::print("  final loss               {:10.4f}\n", summary.final_loss);
}

}  // namespace

// Plan, then (unless --dry-run) build the run, train, and finish.
TrainSummary run_training(const TrainOptions& opt) {
  check_options(opt);
  RunPlan plan = plan_run(opt);
  if (opt.dry_run) {
    fmt::print("dry run: nothing trained\n");
    return {};
  }
  TrainingRun run(opt, std::move(plan));
  run.print_configuration();
  run.run_steps();
  return run.finish();
}

}  // namespace cllm::train
