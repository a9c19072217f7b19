// `cllm train`, `cllm generate`, `cllm eval`: the product's main commands.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/token_file.h"
#include "dist/process_group.h"
#include "model/gpt.h"
#include "parallel/worker_pool.h"
#include "train/checkpoint.h"
#include "train/lanes.h"
#include "train/memory_plan.h"
#include "train/sampling.h"
#include "train/trainer.h"

namespace cllm::cli {
namespace fs = std::filesystem;
namespace {

// Sizes and counts given on the command line: zero or negative is an error
// naming the flag ("--seq: must be >= 1, got 0"). CLI11's PositiveNumber
// would say "Value 0 not in range 2.22507e-308 to 1.79769e+308".
CLI::Validator at_least(double min, bool inclusive) {
  const std::string rule = (inclusive ? ">= " : "> ") + fmt::format("{}", min);
  return CLI::Validator(
      [=](std::string& value) {
        double v = 0.0;
        const bool ok = CLI::detail::lexical_cast(value, v) && (inclusive ? v >= min : v > min);
        return ok ? std::string() : "must be " + rule + ", got " + value;
      },
      rule);
}

// Tokenizer flags shared by train, generate and eval. Without --tokenizer a
// command uses the tokenizer its input records (a .tok file's, a
// checkpoint's), and any tokenizer is checked against that record.
struct TokenizerFlags {
  std::string name;
  fs::path encoder_json, vocab_bpe;
  void add(CLI::App& cmd) {
    cmd.add_option("--tokenizer", name,
                   "byte (vocab 256) or gpt2 (GPT-2's BPE); default: the one the input records, else byte")
        ->check(CLI::IsMember({"byte", "gpt2"}));
    cmd.add_option("--encoder-json", encoder_json, "GPT-2 encoder.json (gpt2; default: the data directory's)");
    cmd.add_option("--vocab-bpe", vocab_bpe, "GPT-2 vocab.bpe (gpt2; default: the data directory's)");
  }
  // --tokenizer when given, else `recorded`.
  std::string chosen(const std::string& recorded) const { return name.empty() ? recorded : name; }
};

// The tokenizer --data records: a version 2 .tok file's, else byte.
std::string data_tokenizer(const fs::path& data) {
  if (!data::is_token_file(data)) return "byte";
  const auto record = data::read_token_file_tokenizer(data);
  return record ? record->name : "byte";
}

// The tokenizer for a model's weights (read from `path`): the flags', else
// the one the weights record; an error when it is not the recorded one.
std::unique_ptr<data::Tokenizer> model_tokenizer(const TokenizerFlags& tok, const fs::path& path,
                                                 const train::LoadedWeights& weights) {
  auto tokenizer = data::make_tokenizer(tok.chosen(weights.tokenizer), tok.encoder_json, tok.vocab_bpe);
  if (weights.tokenizer_record) data::check_tokenizer(path, *weights.tokenizer_record, *tokenizer);
  return tokenizer;
}

// --ckpt: a weights file, a checkpoint directory or a run directory (its
// newest intact checkpoint, the damaged ones passed over named on stderr).
fs::path resolve_weights(const fs::path& ckpt) {
  if (!fs::is_directory(ckpt)) return ckpt;  // the reader names a missing file, a FIFO, a device...
  if (fs::is_regular_file(ckpt / "model.safetensors")) return ckpt / "model.safetensors";
  const auto say = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (const auto usable = train::CheckpointStore(ckpt).newest_usable(say)) return usable->dir / "model.safetensors";
  throw std::runtime_error("'" + ckpt.string() + "' holds no model.safetensors and no complete checkpoint");
}

// --precision, shared by train, generate and eval (checked by model::choose_precision).
void add_precision_option(CLI::App& cmd, std::string& precision) {
  cmd.add_option("--precision", precision,
                 "Matrix products: auto (bf16 where the CPU has AMX-BF16 or AVX512_BF16), fp32 or bf16")
      ->capture_default_str();
}

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a GPT on text with N worker threads");
  auto o = std::make_shared<train::TrainOptions>();
  auto tok = std::make_shared<TokenizerFlags>();
  auto order = std::make_shared<std::string>("shuffled");
  auto schedule = std::make_shared<std::string>("cosine");
  auto on_save_error = std::make_shared<std::string>("stop");
  tok->add(*cmd);
  cmd->add_option("--data", o->data, "Training text file, directory of text files, or .tok file")->required();
  cmd->add_option("--val-data", o->val_data, "Validation data (default: the last --val-fraction of --data)");
  cmd->add_option("--val-fraction", o->val_fraction, "Share of --data held out for validation")->capture_default_str();
  cmd->add_option("--vocab", o->model.vocab, "Vocabulary size (default: the tokenizer's)");
  cmd->add_option("--layers", o->model.layers, "Transformer blocks")->capture_default_str();
  cmd->add_option("--dim", o->model.dim, "Model width")->capture_default_str();
  cmd->add_option("--heads", o->model.heads, "Attention heads")->capture_default_str();
  cmd->add_option("--context", o->model.context, "Context length (positions)")->capture_default_str();
  cmd->add_option("--seq", o->seq, "Tokens per sequence (default: --context)");
  cmd->add_option("--batch", o->batch, "Sequences per micro-batch")->capture_default_str();
  cmd->add_option("--accum", o->accum, "Micro-batches per step (the global batch does not depend on --threads)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Worker threads, 1-256 (default: all hardware threads)");
  cmd->add_option("--steps", o->steps, "Optimizer steps");
  cmd->add_option("--epochs", o->epochs, "Epochs over the training tokens (when --steps is not given)");
  cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "Final learning rate")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Warmup steps")->capture_default_str();
  cmd->add_option("--schedule", *schedule, "cosine, linear or constant")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (2-D tensors only)")->capture_default_str();
  cmd->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--clip", o->clip, "Max global gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed for init and data order")->capture_default_str();
  cmd->add_option("--data-order", *order, "shuffled or sequential")->capture_default_str();
  cmd->add_flag("--deterministic", o->deterministic, "Static batch assignment and fixed reduction order: bitwise repeatable");
  add_precision_option(*cmd, o->precision);
  cmd->add_option("--max-bad-steps", o->max_bad_steps, "Stop after this many non-finite steps in a row")->capture_default_str();
  cmd->add_option("--skip-spikes", o->skip_spikes,
                  "Skip an update whose loss is more than Z standard deviations above the mean of the last 100 (0: off)")
      ->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Evaluate every N steps (0: at the end only)")->capture_default_str();
  cmd->add_option("--eval-batches", o->eval_batches, "Micro-batches per evaluation")->capture_default_str();
  cmd->add_option("--ckpt-every", o->ckpt_every, "Checkpoint every N steps (0: at the end only)")->capture_default_str();
  cmd->add_option("--keep", o->keep, "Complete checkpoints to keep (0: all)")->capture_default_str();
  cmd->add_option("--on-save-error", *on_save_error,
                  "A periodic checkpoint cannot be written: stop (exit 1) or continue training without it")
      ->check(CLI::IsMember({"stop", "continue"}))
      ->capture_default_str();
  cmd->add_option("--sample-every", o->sample_every, "Print a generated sample every N steps")->capture_default_str();
  cmd->add_option("--sample-tokens", o->sample_tokens, "Tokens per sample (0: no samples)")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "Print a step line every N steps")->capture_default_str();
  cmd->add_option("--out", o->out, "Run directory: checkpoints and metrics.jsonl")->capture_default_str();
  auto dist_backend = std::make_shared<std::string>("auto");
  cmd->add_option("--dist", *dist_backend, "Processes training together: auto (MPI when started by mpirun), none or mpi")
      ->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Continue from the newest complete checkpoint in --out");
  cmd->add_flag("--dry-run", o->dry_run, "Print the memory plan and stop before training (a run that does not fit is an error)");
  cmd->add_option("--stop-after", o->stop_after, "Save and stop after N steps of this invocation (0: run to the end)");
  cmd->add_option("--init-from", o->init_from, "GPT-2 safetensors weights to start from (fine-tuning)");
  // Counts are unsigned, and CLI11 would wrap "-1" to 2^64 - 1.
  for (const char* name : {"--warmup", "--max-bad-steps", "--eval-every", "--ckpt-every", "--keep", "--sample-every",
                           "--stop-after"})
    cmd->get_option(name)->check(CLI::NonNegativeNumber);
  for (const char* name : {"--vocab", "--layers", "--dim", "--heads", "--context", "--seq", "--batch", "--accum", "--steps",
                           "--eval-batches", "--log-every"})
    cmd->get_option(name)->check(at_least(1, true));
  cmd->get_option("--epochs")->check(at_least(0, false));
  cmd->get_option("--threads")->check(CLI::Range(std::size_t{1}, parallel::WorkerPool::kMaxThreads));
  cmd->callback([o, tok, order, schedule, on_save_error, dist_backend] {
    o->continue_on_save_error = *on_save_error == "continue";
    o->tokenizer = tok->chosen(data_tokenizer(o->data));
    o->encoder_json = tok->encoder_json;
    o->vocab_bpe = tok->vocab_bpe;
    o->data_order = data::parse_data_order(*order);
    o->schedule = optim::parse_lr_schedule(*schedule);
    dist::select(dist::parse_backend(*dist_backend));
    dist::ProcessGroup& group = dist::world();
    if (!group.is_root() && !std::freopen("/dev/null", "w", stdout))  // rank 0 alone prints
      throw std::runtime_error("cannot silence stdout on rank " + std::to_string(group.rank()));
    train::TrainSummary summary;
    try {
      summary = train::run_training(*o);
    } catch (const std::exception& e) {
      if (group.size() > 1) group.abort(e.what());  // ends every rank, never a hang
      throw;
    }
    if (summary.stopped_by_signal) throw CLI::RuntimeError(130);
  });
}

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a trained model");
  auto tok = std::make_shared<TokenizerFlags>();
  auto ckpt = std::make_shared<fs::path>();
  auto prompt = std::make_shared<std::string>();
  auto so = std::make_shared<train::SamplingOptions>();
  auto heads = std::make_shared<int>(0);
  auto raw = std::make_shared<bool>(false);
  auto precision = std::make_shared<std::string>("auto");
  tok->add(*cmd);
  add_precision_option(*cmd, *precision);
  cmd->add_option("--ckpt", *ckpt, "Weights (.safetensors), checkpoint directory or run directory")->required();
  cmd->add_option("--prompt", *prompt, "Text to continue");
  cmd->add_flag("--raw", *raw, "Write the generated bytes exactly (default: invalid UTF-8 is printed as U+FFFD)");
  cmd->add_option("--tokens", so->tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", so->temperature, "Sampling temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", so->top_k, "Keep the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", so->top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", so->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--heads", *heads, "Attention heads, for weights that do not record them (Hugging Face files)");
  for (const char* name : {"--tokens", "--heads"}) cmd->get_option(name)->check(at_least(1, true));
  cmd->callback([=] {
    so->validate();
    const model::Precision products = model::choose_precision(*precision).precision;  // as `cllm info` says
    const fs::path weights_path = resolve_weights(*ckpt);
    auto weights = train::load_weights(weights_path, *heads);
    const auto tokenizer = model_tokenizer(*tok, weights_path, weights);
    const model::ParamLayout layout(weights.config);
    const std::vector<kernels::bf16> weights_bf16 = train::allocate_named(
        "the bf16 copy of the weights", products == model::Precision::bf16 ? weights.params.size() * sizeof(kernels::bf16) : 0,
        [&] { return model::bf16_copy(weights.params, products); });
    train::print_generation(layout, model::Weights(weights.params.data(), weights_bf16), *tokenizer, *prompt, *so,
                            *raw);
    std::fputc('\n', stdout);
  });
}

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Validation loss and perplexity of a model on a file");
  auto tok = std::make_shared<TokenizerFlags>();
  auto ckpt = std::make_shared<fs::path>();
  auto data_path = std::make_shared<fs::path>();
  auto seq = std::make_shared<int>(0);
  auto batch = std::make_shared<int>(8);
  auto max_batches = std::make_shared<std::size_t>(0);
  auto threads = std::make_shared<std::size_t>(0);
  auto heads = std::make_shared<int>(0);
  auto precision = std::make_shared<std::string>("auto");
  tok->add(*cmd);
  add_precision_option(*cmd, *precision);
  cmd->add_option("--ckpt", *ckpt, "Weights (.safetensors), checkpoint directory or run directory")->required();
  cmd->add_option("--data", *data_path, "Text file, directory or .tok file to evaluate on")->required();
  cmd->add_option("--seq", *seq, "Tokens per sequence (default: the model context)");
  cmd->add_option("--batch", *batch, "Sequences per forward pass, at most")->capture_default_str();
  cmd->add_option("--max-batches", *max_batches, "Evaluate the first N x --batch sequences (0: the whole file)")
      ->capture_default_str();
  cmd->add_option("--threads", *threads, "Worker threads, 1-256 (default: all hardware threads)");
  cmd->add_option("--heads", *heads, "Attention heads, for weights that do not record them");
  for (const char* name : {"--seq", "--batch", "--heads"}) cmd->get_option(name)->check(at_least(1, true));
  cmd->get_option("--max-batches")->check(CLI::NonNegativeNumber);
  cmd->get_option("--threads")->check(CLI::Range(std::size_t{1}, parallel::WorkerPool::kMaxThreads));
  cmd->callback([=] {
    const model::Precision products = model::choose_precision(*precision).precision;
    const fs::path weights_path = resolve_weights(*ckpt);
    const auto weights = train::load_weights(weights_path, *heads);
    const auto tokenizer = model_tokenizer(*tok, weights_path, weights);
    const model::ParamLayout layout(weights.config);
    const std::vector<kernels::bf16> weights_bf16 = train::allocate_named(
        "the bf16 copy of the weights", products == model::Precision::bf16 ? weights.params.size() * sizeof(kernels::bf16) : 0,
        [&] { return model::bf16_copy(weights.params, products); });
    const model::Weights pass_weights(weights.params.data(), weights_bf16);
    const int T = *seq ? *seq : weights.config.context;
    if (T > weights.config.context)
      throw std::invalid_argument(fmt::format("--seq {} exceeds the model context {}", T, weights.config.context));
    const auto ds = data::Dataset::load({*data_path, {}, 0.0}, *tokenizer);
    const data::BatchSampler sampler(ds.train, T, data::DataOrder::sequential, 0);
    const auto B = static_cast<std::uint64_t>(*batch);
    std::uint64_t n = sampler.sequences_per_epoch();
    if (*max_batches) n = std::min<std::uint64_t>(n, *max_batches * B);
    // At most one lane per core, as in train, and none without a sequence.
    const std::size_t lanes = static_cast<std::size_t>(
        std::min<std::uint64_t>({train::resolve_threads(*threads), parallel::available_cores(), n}));
    const std::uint64_t pieces = train::eval_pieces(n, static_cast<std::size_t>(*batch), lanes);
    const auto rows = static_cast<std::size_t>((n + pieces - 1) / pieces);  // a lane's pass at most
    parallel::WorkerPool pool(lanes);
    train::Lanes lane_state(lanes);
    train::allocate_named("the evaluation workspaces",
                          lanes * model::Workspace::planned_bytes(weights.config, static_cast<int>(rows), T, products), [&] {
                            pool.run([&](std::size_t w) {
                              lane_state[w] = std::make_unique<train::LaneState>(weights.config, rows, T, products);
                            });
                          });
    const train::EvalResult result = train::evaluate_loss(
        layout, pass_weights, sampler, n, lane_state, [&](const std::function<void(std::size_t)>& fn) { pool.run(fn); });
    std::string per_lane;
    for (const std::uint64_t s : result.sequences_per_lane) per_lane += (per_lane.empty() ? "" : " + ") + std::to_string(s);
    fmt::print("{}: {} tokens in {} sequences of {}: loss {:.4f}, perplexity {:.3f} ({} lane{}: {} sequences)\n",
               data_path->string(), n * static_cast<std::uint64_t>(T), n, T, result.loss, std::exp(result.loss), lanes,
               lanes == 1 ? "" : "s", per_lane);
  });
}

}  // namespace

void add_train_commands(CLI::App& app) {
  add_train(app);
  add_generate(app);
  add_eval(app);
}

}  // namespace cllm::cli
