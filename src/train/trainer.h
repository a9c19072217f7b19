// The training loop: data -> N worker spheres (GradientPipeline) -> AdamW,
// with evaluation, checkpoints, metrics, samples, and a summary of the plan's
// metrics at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "data/dataset.h"
#include "model/gpt.h"
#include "dist/process_group.h"
#include "optim/schedule.h"

namespace cllm::train {

struct TrainOptions {
  // Data
  std::filesystem::path data;
  std::filesystem::path val_data;  // empty: hold out val_fraction of data
  double val_fraction = 0.1;
  std::string tokenizer = "byte";
  std::filesystem::path encoder_json, vocab_bpe;  // gpt2 tokenizer files
  data::DataOrder data_order = data::DataOrder::shuffled;

  // Model (vocab 0: the tokenizer's)
  model::Config model{0, 4, 256, 8, 128};
  std::filesystem::path init_from;  // safetensors weights to fine-tune

  // Batch: a step is accum micro-batches of batch sequences of seq tokens,
  // whatever the thread count.
  int batch = 8;
  int seq = 0;  // 0: the model's context
  std::size_t accum = 1;
  std::size_t threads = 0;  // 0: all hardware threads
  bool deterministic = false;
  // Matrix products: auto|fp32|bf16 (model::choose_precision). Weights,
  // gradients, moments and checkpoints stay f32 whichever it is.
  std::string precision = "auto";

  // Optimization
  std::size_t steps = 0;  // 0: from epochs
  double epochs = 0.0;
  float lr = 1e-3f;
  float min_lr = 1e-4f;
  std::size_t warmup = 0;
  optim::LrScheduleKind schedule = optim::LrScheduleKind::cosine;
  float weight_decay = 0.1f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float clip = 1.0f;  // max global grad norm, 0: off
  std::uint64_t seed = 1337;
  std::size_t max_bad_steps = 5;  // consecutive non-finite steps before giving up
  // Skip an update whose loss is more than this many standard deviations
  // above the mean of the last 100 accepted losses (llm.c's rule); 0: off.
  double skip_spikes = 0.0;

  // Evaluation, checkpoints, samples, output
  std::size_t eval_every = 0;  // 0: only at the end
  std::size_t eval_batches = 8;
  std::size_t ckpt_every = 0;  // 0: only at the end (and on a stop signal)
  std::size_t keep = 3;        // complete checkpoints kept, 0: all
  // A periodic checkpoint that cannot be written (disk full, unwritable
  // directory): false stops the run with an error, true warns and trains on.
  // The final checkpoint must always succeed. Either way the previous
  // checkpoint is left as it was.
  bool continue_on_save_error = false;
  std::size_t sample_every = 0;
  int sample_tokens = 200;
  std::filesystem::path out = "out";
  bool resume = false;
  // Stop (with a checkpoint) after this many steps in this invocation, to
  // train in chunks under a job time limit; 0: run to the end.
  std::size_t stop_after = 0;
  std::size_t log_every = 1;  // print a step line every N steps (metrics.jsonl gets all)
  // Print the memory plan (and refuse a run that does not fit), then stop
  // before allocating or training anything.
  bool dry_run = false;
  // The processes training together; nullptr: dist::world() (mpirun's ranks,
  // or this process alone).
  dist::ProcessGroup* group = nullptr;
};

// The run's plan metrics, printed at the end and returned for tests.
struct TrainSummary {
  std::size_t first_step = 0;  // 0, or the step resumed from
  std::size_t steps_done = 0;  // final step count
  double final_loss = 0.0;
  double val_loss = -1.0;  // -1 when there is no validation data
  double wall_seconds = 0.0;
  double tokens_per_second = 0.0;
  bool stopped_by_signal = false;
  bool stopped_early = false;  // --stop-after reached before the last step
  std::filesystem::path last_checkpoint;
};

// Runs training as configured. Prints the configuration, a line per step and
// the summary to stdout. Throws std::runtime_error / std::invalid_argument
// with a message naming the bad input or flag.
TrainSummary run_training(const TrainOptions& options);

}  // namespace cllm::train
