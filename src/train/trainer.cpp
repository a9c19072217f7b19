#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
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

}  // namespace

TrainSummary run_training(const TrainOptions& opt) {
  check_options(opt);
  const std::size_t threads = resolve_threads(opt.threads);
  const auto tokenizer = data::make_tokenizer(opt.tokenizer, opt.encoder_json, opt.vocab_bpe);
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
  if (opt.dry_run) {
    fmt::print("dry run: nothing trained\n");
    return {};
  }

  // Data
  const auto dataset = data::Dataset::load({opt.data, opt.val_data, opt.val_fraction}, *tokenizer);
  const data::BatchSampler train_sampler(dataset.train, seq, opt.data_order, opt.seed);
  std::optional<data::BatchSampler> val_sampler;
  if (dataset.validation.size >= static_cast<std::uint64_t>(seq) + 1)
    val_sampler.emplace(dataset.validation, seq, data::DataOrder::sequential, opt.seed);

  const std::size_t tokens_per_step = K * B * static_cast<std::size_t>(seq);
  const std::size_t steps_per_epoch =
      std::max<std::size_t>(1, (train_sampler.sequences_per_epoch() + K * B - 1) / (K * B));
  const std::size_t total_steps =
      opt.steps ? opt.steps : static_cast<std::size_t>(std::ceil(opt.epochs * static_cast<double>(steps_per_epoch)));
  const optim::LrSchedule schedule{opt.schedule, opt.lr, opt.min_lr, opt.warmup, total_steps};
  if (opt.warmup > total_steps)
    throw std::invalid_argument(fmt::format("--warmup {} exceeds the run's {} steps", opt.warmup, total_steps));
  schedule.validate();

  // Parameters and optimizer
  std::vector<float> params = allocate_part(memory, "params", [&] { return std::vector<float>(layout.total()); });
  std::vector<optim::ParamRange> ranges;
  for (const auto& t : layout.tensors()) ranges.push_back({t.offset, t.size, t.decay});
  optim::AdamW adamw = allocate_part(memory, "moments", [&] {
    return optim::AdamW(layout.total(), {opt.lr, opt.beta1, opt.beta2, 1e-8f, opt.weight_decay}, ranges);
  });

  std::error_code ec;
  if (root) fs::create_directories(opt.out, ec);
  if (ec) throw std::runtime_error("cannot create output directory '" + opt.out.string() + "': " + ec.message());
  CheckpointStore store(opt.out);
  const auto settings = run_settings(opt, seq, threads, precision.precision);
  std::size_t step = 0;
  TrainSummary summary;
  std::optional<std::size_t> saved_at;  // step of the newest checkpoint on disk
  LossSpikeDetector spikes(opt.skip_spikes);
  // --resume takes the newest checkpoint that passes its manifest, saying which it passed over.
  const auto say = [](const std::string& line) { fmt::print("{}\n", line); };
  const auto existing = !root ? std::nullopt : opt.resume ? store.newest_usable(say) : store.latest();
  if (existing && !opt.resume)
    throw std::runtime_error(fmt::format("'{}' already holds checkpoints (newest: {}); pass --resume to continue it, or choose another --out",
                                         opt.out.string(), existing->dir.string()));
  if (existing) {
    const TrainState state = store.load(*existing, layout, params, adamw.m(), adamw.v());
    step = state.step;
    const auto adam_step = state.settings.find("adam_step");
    adamw.set_step(adam_step != state.settings.end() ? std::stoull(adam_step->second) : step);
    if (const auto window = state.settings.find("loss_window"); window != state.settings.end()) {
      try {
        spikes.restore(window->second);
      } catch (const std::exception& e) {
        throw data::file_error(existing->dir / "state.safetensors", e.what());
      }
    }
    summary.last_checkpoint = existing->dir;
    saved_at = step;  // no second save of this step: replacing a checkpoint in place is not atomic
    fmt::print("resuming from {} (step {})\n", existing->dir.string(), step);
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
    std::uint64_t counters[2] = {step, adamw.step()};
    group.broadcast(counters, sizeof counters, 0);
    step = counters[0];
    adamw.set_step(counters[1]);
    saved_at = step;
    std::string window = spikes.serialize();
    group.broadcast(window, 0);
    spikes.restore(window);
  }

  // Mixed precision: the products read a bf16 copy of the weights, made once
  // here and then by AdamW as it updates each segment.
  std::vector<kernels::bf16> params_bf16 =
      allocate_part(memory, "bf16 weights", [&] { return model::bf16_copy(params, precision.precision); });
  if (bf16) adamw.set_bf16_copy(params_bf16.data());
  const model::Weights weights(params.data(), params_bf16);

  const StopSignal stop_signal;  // before the pool: its workers must inherit the blocked signals
  parallel::GradientPipeline pipeline =
      allocate_part(memory, "grads", [&] { return parallel::GradientPipeline(layout.total(), pipeline_options); });
  const std::size_t lanes = pipeline.lanes();
  dist::DataParallelStep data_parallel(group, pipeline, K, B);
  const parallel::WorkSplit& split = data_parallel.split();
  Lanes workers(lanes);  // one workspace per lane
  allocate_part(memory, "workspaces", [&] {
    pipeline.for_each_lane(
        [&](std::size_t w) { workers[w] = std::make_unique<LaneState>(config, split.max_rows(), seq, precision.precision); });
  });
  const ForEachLane for_each_lane = [&](const std::function<void(std::size_t)>& fn) { pipeline.for_each_lane(fn); };

  MetricsLog metrics(root ? opt.out / "metrics.jsonl" : fs::path("/dev/null"));  // rank 0 logs
  const double flops_tok = flops_per_token(layout, seq);
  // MFU's denominator: the measured FMA peak of the cores the workers can use.
  double peak_gflops = 0.0;
  try {
    peak_gflops = kernels::measure_fma_peak().gflops * static_cast<double>(cores);
  } catch (const std::exception&) {  // no AVX2/AVX-512: MFU is reported as 0
  }
  const auto mfu = [&](double tokens_per_s) {
    return peak_gflops > 0 ? 100.0 * tokens_per_s * flops_tok * 1e-9 / peak_gflops : 0.0;
  };

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

  // Mean validation loss over eval_batches micro-batches, spread over the lanes.
  auto evaluate = [&]() -> double {
    if (!val_sampler || !root) return -1.0;
    const std::size_t n = std::min<std::size_t>(opt.eval_batches, std::max<std::uint64_t>(1, val_sampler->sequences_per_epoch() / B));
    return evaluate_loss(layout, weights, *val_sampler, n * B, workers, for_each_lane).loss;
  };

  summary.first_step = step;
  std::size_t bad_in_a_row = 0;
  std::size_t current_step = step;  // captured by the work function
  const auto work = [&](std::size_t w, const parallel::Piece& piece, float* grad, bool first) -> double {
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
  };
  auto save = [&]() {
    group.barrier();  // every rank has finished the step before its checkpoint exists
    if (!root) return;
    TrainState state{step, settings};
    state.settings["adam_step"] = std::to_string(adamw.step());
    if (spikes.enabled()) state.settings["loss_window"] = spikes.serialize();
    const Checkpoint c = store.save(layout, params, adamw.m(), adamw.v(), state, tokenizer->record(), opt.keep);
    summary.last_checkpoint = c.dir;
    saved_at = step;
    fmt::print("saved checkpoint {}\n", c.dir.string());
  };
  auto sample = [&](std::uint64_t seed) {
    if (!root) return;
    SamplingOptions so;
    so.tokens = opt.sample_tokens;
    so.seed = seed;
    fmt::print("--- sample at step {} ---\n", step);
    print_generation(layout, weights, *tokenizer, "", so, false);  // in the run's precision
    fmt::print("\n---\n");
  };

  // Totals for the summary.
  double sum_step_s = 0, sum_acc_s = 0, sum_exposed_s = 0, sum_opt_s = 0, sum_idle_s = 0, sum_phase_thread_s = 0;
  double sum_allreduce_s = 0, sum_hidden_allreduce_s = 0;
  double sum_cpu_s = 0;  // process CPU time inside steps (not saves or evals)
  std::size_t locks = 0, contended_locks = 0, counted_steps = 0;
  std::vector<std::size_t> lane_items(lanes, 0);  // work items each lane ran
  const auto t_start = Clock::now();
  ProgressLine progress;  // between logged steps, on a terminal

  while (step < total_steps) {
    double stop_votes = stop_signal.requested() ? 1.0 : 0.0;
    group.allreduce_sum(&stop_votes, 1);  // all ranks stop at the same step
    if (stop_votes > 0.0) {
      summary.stopped_by_signal = true;
      break;
    }
    if (opt.stop_after && step - summary.first_step >= opt.stop_after) {
      summary.stopped_early = true;
      break;
    }
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
    summary.final_loss = st.loss_sum;
    const double elapsed = seconds_since(t_start);
    const std::string eta = format_duration(eta_seconds(elapsed, step - summary.first_step, total_steps - step));
    const bool logged = step % opt.log_every == 0 || step == total_steps;

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
    progress.clear();
    if (!ok) {
      ++bad_in_a_row;
      fmt::print("step {:>6}/{} | non-finite loss or gradient norm: update skipped ({} in a row)\n", step, total_steps,
                 bad_in_a_row);
      if (bad_in_a_row >= opt.max_bad_steps)
        throw std::runtime_error(fmt::format(
            "training diverged: {} steps in a row with a non-finite loss or gradient norm (lower --lr, check the data); "
            "last checkpoint: {}",
            bad_in_a_row, summary.last_checkpoint.empty() ? std::string("none") : summary.last_checkpoint.string()));
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
    std::fflush(stdout);

    if (opt.eval_every && step % opt.eval_every == 0 && step < total_steps) {
      const double val = evaluate();
      if (val >= 0) {
        fmt::print("eval step {} | val loss {:.4f} | ppl {:.2f}\n", step, val, std::exp(val));
        metrics.write({{"step", step}, {"val_loss", val}, {"val_ppl", std::exp(val)}});
      }
    }
    if (opt.sample_every && step % opt.sample_every == 0 && step < total_steps) sample(opt.seed + step);
    if (opt.ckpt_every && step % opt.ckpt_every == 0 && step < total_steps) {
      try {
        save();
      } catch (const std::exception& e) {
        const std::string previous = summary.last_checkpoint.empty() ? "none" : summary.last_checkpoint.string();
        if (!opt.continue_on_save_error)
          throw std::runtime_error(fmt::format("cannot save the checkpoint of step {}: {} (previous checkpoint, intact: {}); "
                                               "free space or fix the directory and rerun with --resume, or pass --on-save-error continue",
                                               step, e.what(), previous));
        fmt::print(stderr, "cllm: warning: cannot save the checkpoint of step {}: {}; training on (previous checkpoint, intact: {})\n",
                   step, e.what(), previous);
        metrics.write({{"step", step}, {"save_error", e.what()}});
      }
    }
    if (!logged) progress.show(fmt::format("step {:>6}/{} | {:.0f} tok/s | ETA {}", step, total_steps, tok_s, eta));
  }
  progress.clear();

  const double wall = seconds_since(t_start);
  std::uint8_t final_save = saved_at != step;
  group.broadcast(&final_save, 1, 0);  // rank 0's saves decide: all ranks meet in save()
  if (final_save) {
    try {
      save();
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("cannot save the final checkpoint of step {}: {} (last checkpoint, intact: {})", step,
                                           e.what(), summary.last_checkpoint.empty() ? std::string("none") : summary.last_checkpoint.string()));
    }
  }
  summary.steps_done = step;
  summary.wall_seconds = wall;
  summary.val_loss = evaluate();
  if (summary.val_loss >= 0) {
    fmt::print("eval step {} | val loss {:.4f} | ppl {:.2f}\n", step, summary.val_loss, std::exp(summary.val_loss));
    metrics.write({{"step", step}, {"val_loss", summary.val_loss}, {"val_ppl", std::exp(summary.val_loss)}});
  }

  if (counted_steps > 0) {
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
  if (opt.sample_tokens > 0) sample(opt.seed);
  if (summary.stopped_by_signal || summary.stopped_early)
    fmt::print("stopped at step {} of {}; continue with the same command and --resume\n", step, total_steps);
  return summary;
}

}  // namespace cllm::train
