// Model weights and training checkpoints.
//
// Weights: safetensors with Hugging Face GPT-2 names and layouts (see
// model/gpt.h), F32, the config in __metadata__ (format "pt", cllm.vocab,
// cllm.layers, cllm.dim, cllm.heads, cllm.context, cllm.tokenizer; a
// checkpoint's also cllm.step, cllm.tokenizer_vocab_size and
// cllm.tokenizer_vocab_hash, see data::TokenizerRecord).
//
// A training run's directory:
//   OUT/checkpoints/step_00000100/model.safetensors   weights
//   OUT/checkpoints/step_00000100/state.safetensors   AdamW m and v, with the
//       step, seed and data settings in its metadata
//   OUT/checkpoints/step_00000100/manifest.json       size and xxHash64 of
//       both files (train/manifest.h), written before the rename below
//   OUT/checkpoints/LATEST                            name of the newest
//       complete checkpoint, for people and scripts
// A checkpoint is written into a hidden .tmp directory, every file fsynced,
// then the directory is renamed into place and LATEST is replaced
// atomically, so a crash at any moment leaves the previous checkpoint whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/gpt.h"

namespace cllm::train {

// Weights as loaded from a safetensors file.
struct LoadedWeights {
  model::Config config;
  std::string tokenizer;  // "byte" unless the file says otherwise
  // What a cllm file records of its tokenizer (the vocabulary size and hash
  // only in checkpoints that have them); nullopt for a Hugging Face file.
  std::optional<data::TokenizerRecord> tokenizer_record;
  std::vector<float> params;
};

// Loads GPT-2 weights: a cllm file (config in metadata) or a Hugging Face
// GPT-2 model.safetensors (config inferred from the shapes; names may carry a
// "transformer." prefix; attn.bias / attn.masked_bias buffers and a tied
// lm_head.weight are ignored). heads_hint is used when the file does not say
// (Hugging Face files: pass the model's n_head; 0 means dim / 64).
// Throws std::runtime_error naming the file on a missing or misshapen
// tensor, an unexpected tensor, or a non-finite weight.
LoadedWeights load_weights(const std::filesystem::path& path, int heads_hint = 0);

// Writes weights crash-safely (temporary file, fsync, rename).
void save_weights(const std::filesystem::path& path, const model::ParamLayout& layout,
                  std::span<const float> params, const std::string& tokenizer,
                  const std::map<std::string, std::string>& extra_metadata = {});

// What, besides weights and moments, a resume needs to continue exactly.
struct TrainState {
  std::uint64_t step = 0;  // optimizer steps completed
  std::map<std::string, std::string> settings;  // seed, data order, batch shape... (checked on resume)
};

struct Checkpoint {
  std::filesystem::path dir;  // OUT/checkpoints/step_NNNNNNNN
  std::uint64_t step = 0;
};

// What verify() found.
enum class CheckpointHealth {
  intact,      // every file matches the manifest
  unverified,  // written before manifests existed: no manifest, none expected
  damaged,     // a file is missing, truncated or changed, or the manifest is missing or bad
};

struct CheckpointCheck {
  CheckpointHealth health = CheckpointHealth::damaged;
  std::string problem;  // damaged: what is wrong, naming the file
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::filesystem::path run_dir);

  // Saves weights, moments, state and manifest as checkpoint `state.step`,
  // then points LATEST at it and prunes checkpoints beyond the newest `keep`
  // (keep 0 keeps all), never the one just written, the newest intact one
  // even when newer damaged ones are there. Throws naming the path on any
  // I/O failure; the previous checkpoint is then untouched.
  Checkpoint save(const model::ParamLayout& layout, std::span<const float> params,
                  std::span<const float> adam_m, std::span<const float> adam_v,
                  const TrainState& state, const data::TokenizerRecord& tokenizer, std::size_t keep);

  // Every checkpoint (step_* directory, whatever its health), oldest first.
  std::vector<Checkpoint> checkpoints() const;

  // The newest checkpoint (step_* directory, whatever its health), nullopt if none.
  std::optional<Checkpoint> latest() const;

  // Checks a checkpoint's files against its manifest (reads them whole).
  CheckpointCheck verify(const Checkpoint& ckpt) const;

  // The newest checkpoint that is intact or unverified, nullopt when there is
  // none at all. Each damaged one passed over, an unverified one taken, a
  // LATEST naming a missing one (latest_problem) and a fallback past
  // the newest are told to `say`, one line each. Throws
  // naming the directory when there are checkpoints but every one is damaged.
  std::optional<Checkpoint> newest_usable(const std::function<void(const std::string&)>& say) const;

  // What is wrong with LATEST, or nullopt when it names a checkpoint that is
  // there or is absent: it names a step directory that is not there (the
  // newest checkpoint removed by hand), is not a step directory's name, or
  // cannot be read.
  std::optional<std::string> latest_problem() const;

  // Loads a checkpoint into params, m, v (sizes must match the layout) and
  // returns its state. Throws naming the file on any mismatch.
  TrainState load(const Checkpoint& ckpt, const model::ParamLayout& layout, std::span<float> params,
                  std::span<float> adam_m, std::span<float> adam_v) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;  // OUT/checkpoints
};

}  // namespace cllm::train
