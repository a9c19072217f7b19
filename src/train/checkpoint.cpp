#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <new>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "data/file_io.h"
#include "data/safetensors.h"
#include "train/manifest.h"
#include "train/memory_plan.h"

namespace cllm::train {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kStepPrefix = "step_";
constexpr const char* kStateFormat = "cllm-train-state";
constexpr const char* kStateVersion = "1";
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kStateFile = "state.safetensors";
// State metadata key saying the checkpoint has a manifest, so a missing one
// is damage, not an old checkpoint.
constexpr const char* kManifestKey = "manifest";

// fsync a directory so a rename inside it survives a crash.
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    throw data::file_error(dir, "cannot fsync directory");
  }
  ::close(fd);
}

std::string step_dir_name(std::uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08llu", static_cast<unsigned long long>(step));
  return buf;
}

std::optional<std::uint64_t> parse_step_dir(std::string_view name) {
  if (!name.starts_with(kStepPrefix)) return std::nullopt;
  name.remove_prefix(kStepPrefix.size());
  std::uint64_t step = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), step);
  if (ec != std::errc{} || end != name.data() + name.size() || name.empty()) return std::nullopt;
  return step;
}

int metadata_int(const data::SafetensorsFile& file, const std::string& key) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end()) return 0;
  int value = 0;
  const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  if (ec != std::errc{} || end != it->second.data() + it->second.size())
    throw data::file_error(file.path(), "metadata '" + key + "' is not an integer: '" + it->second + "'");
  return value;
}

// Hugging Face names without the optional "transformer." prefix; empty for
// tensors cllm does not store (attention mask buffers, the tied LM head).
std::string canonical_name(std::string name) {
  constexpr std::string_view prefix = "transformer.";
  if (name.starts_with(prefix)) name.erase(0, prefix.size());
  if (name == "lm_head.weight" || name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")) return {};
  return name;
}

// Model config from a weights file: cllm metadata when present, else the
// tensor shapes of a Hugging Face GPT-2 file.
model::Config infer_config(const data::SafetensorsFile& file, const std::map<std::string, std::string>& names,
                           int heads_hint) {
  model::Config config;
  if (file.metadata().count("cllm.dim")) {
    config.vocab = metadata_int(file, "cllm.vocab");
    config.layers = metadata_int(file, "cllm.layers");
    config.dim = metadata_int(file, "cllm.dim");
    config.heads = metadata_int(file, "cllm.heads");
    config.context = metadata_int(file, "cllm.context");
  } else {
    auto shape_of = [&](const std::string& name) {
      const auto it = names.find(name);
      if (it == names.end()) throw data::file_error(file.path(), "missing tensor '" + name + "' (not a GPT-2 weights file?)");
      const auto& shape = file.tensor(it->second).shape;
      if (shape.size() != 2) throw data::file_error(file.path(), "tensor '" + it->second + "' is not 2-D");
      return shape;
    };
    const auto wte = shape_of("wte.weight");
    const auto wpe = shape_of("wpe.weight");
    config.vocab = static_cast<int>(wte[0]);
    config.dim = static_cast<int>(wte[1]);
    config.context = static_cast<int>(wpe[0]);
    while (names.count("h." + std::to_string(config.layers) + ".ln_1.weight")) ++config.layers;
    config.heads = heads_hint > 0 ? heads_hint : std::max(1, config.dim / 64);
  }
  if (heads_hint > 0 && heads_hint != config.heads)
    throw data::file_error(file.path(), "file says " + std::to_string(config.heads) + " heads, but " +
                                            std::to_string(heads_hint) + " were asked for");
  try {
    config.validate();
  } catch (const std::exception& e) {
    throw data::file_error(file.path(), std::string("invalid model config: ") + e.what());
  }
  return config;
}

// Checks that `file` holds every tensor of `layout` (names mapped by `names`)
// with its shape, so a small file whose metadata claims a huge model is
// rejected before anything of the model's size is allocated.
void check_shapes(const data::SafetensorsFile& file, const std::map<std::string, std::string>& names,
                  const model::ParamLayout& layout) {
  for (const auto& t : layout.tensors()) {
    const auto it = names.find(t.name);
    if (it == names.end()) throw data::file_error(file.path(), "missing tensor '" + t.name + "'");
    const auto& st = file.tensor(it->second);
    if (st.shape != t.shape) {
      std::string want, got;
      for (auto d : t.shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      for (auto d : st.shape) got += (got.empty() ? "" : ",") + std::to_string(d);
      throw data::file_error(file.path(), "tensor '" + it->second + "' has shape [" + got + "], expected [" + want + "]");
    }
  }
}

// Reads every tensor of `layout` from `file` into params (after
// check_shapes), checking finiteness.
void read_params(const data::SafetensorsFile& file, const std::map<std::string, std::string>& names,
                 const model::ParamLayout& layout, std::span<float> params) {
  check_shapes(file, names, layout);
  for (const auto& t : layout.tensors()) {
    const std::string& name = names.at(t.name);
    const std::span<float> out = params.subspan(t.offset, t.size);
    file.read_f32(name, out);
    if (!std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }))
      throw data::file_error(file.path(), "tensor '" + name + "' contains NaN or infinite values");
  }
}

}  // namespace

LoadedWeights load_weights(const fs::path& path, int heads_hint) {
  const auto file = data::SafetensorsFile::open(path);
  std::map<std::string, std::string> names;  // canonical -> name in file
  for (const auto& [name, tensor] : file.tensors()) {
    const std::string canon = canonical_name(name);
    if (canon.empty()) continue;
    if (!names.emplace(canon, name).second)
      throw data::file_error(path, "tensor '" + canon + "' appears twice (with and without 'transformer.')");
  }
  LoadedWeights out;
  out.config = infer_config(file, names, heads_hint);
  const model::ParamLayout layout(out.config);
  for (const auto& [canon, name] : names) {
    bool known = false;
    for (const auto& t : layout.tensors()) known = known || t.name == canon;
    if (!known) throw data::file_error(path, "unexpected tensor '" + name + "' for a GPT-2 with " +
                                                 std::to_string(out.config.layers) + " layers");
  }
  check_shapes(file, names, layout);
  try {
    out.params.resize(layout.total());
  } catch (const std::bad_alloc&) {
    throw data::file_error(path, fmt::format("out of memory allocating its weights ({} parameters, {}): the system has "
                                             "no memory left, or a limit (ulimit -v, a cgroup's memory.max) is below it",
                                             layout.total(), format_bytes(layout.total() * sizeof(float))));
  }
  read_params(file, names, layout, out.params);
  const auto tok = file.metadata().find("cllm.tokenizer");
  out.tokenizer = tok != file.metadata().end() ? tok->second : (file.metadata().count("cllm.dim") ? "byte" : "gpt2");
  if (tok != file.metadata().end()) {
    const int vocab = metadata_int(file, "cllm.tokenizer_vocab_size");
    if (vocab < 0) throw data::file_error(path, "metadata 'cllm.tokenizer_vocab_size' is negative");
    const auto hash = file.metadata().find("cllm.tokenizer_vocab_hash");
    out.tokenizer_record = {tok->second, static_cast<std::uint32_t>(vocab), hash != file.metadata().end() ? hash->second : ""};
  }
  return out;
}

void save_weights(const fs::path& path, const model::ParamLayout& layout, std::span<const float> params,
                  const std::string& tokenizer, const std::map<std::string, std::string>& extra_metadata) {
  const model::Config& c = layout.config();
  std::map<std::string, std::string> metadata = extra_metadata;
  metadata["format"] = "pt";
  metadata["cllm.vocab"] = std::to_string(c.vocab);
  metadata["cllm.layers"] = std::to_string(c.layers);
  metadata["cllm.dim"] = std::to_string(c.dim);
  metadata["cllm.heads"] = std::to_string(c.heads);
  metadata["cllm.context"] = std::to_string(c.context);
  metadata["cllm.tokenizer"] = tokenizer;
  std::vector<data::TensorToWrite> tensors;
  for (const auto& t : layout.tensors()) tensors.push_back({t.name, t.shape, params.data() + t.offset});
  data::write_safetensors(path, metadata, tensors);
}

CheckpointStore::CheckpointStore(fs::path run_dir) : dir_(std::move(run_dir) / "checkpoints") {}

Checkpoint CheckpointStore::save(const model::ParamLayout& layout, std::span<const float> params,
                                 std::span<const float> adam_m, std::span<const float> adam_v,
                                 const TrainState& state, const data::TokenizerRecord& tokenizer, std::size_t keep) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw data::file_error(dir_, "cannot create checkpoint directory: " + ec.message());

  const std::string name = step_dir_name(state.step);
  const fs::path final_dir = dir_ / name;
  const fs::path tmp_dir = dir_ / ("." + name + ".tmp");
  fs::remove_all(tmp_dir, ec);  // leftover of a crashed save
  fs::create_directory(tmp_dir, ec);
  if (ec) throw data::file_error(tmp_dir, "cannot create directory: " + ec.message());
  try {
    save_weights(tmp_dir / kModelFile, layout, params, tokenizer.name,
                 {{"cllm.step", std::to_string(state.step)},
                  {"cllm.tokenizer_vocab_size", std::to_string(tokenizer.vocab_size)},
                  {"cllm.tokenizer_vocab_hash", tokenizer.vocab_hash}});
    std::map<std::string, std::string> metadata = state.settings;
    metadata["format"] = kStateFormat;
    metadata["version"] = kStateVersion;
    metadata["step"] = std::to_string(state.step);
    metadata[kManifestKey] = kManifestName;
    const std::vector<std::size_t> shape{adam_m.size()};
    const data::TensorToWrite moments[] = {{"adam.m", shape, adam_m.data()}, {"adam.v", shape, adam_v.data()}};
    data::write_safetensors(tmp_dir / kStateFile, metadata, moments);
    write_manifest(tmp_dir, {kModelFile, kStateFile});
    sync_directory(tmp_dir);
    if (fs::exists(final_dir)) fs::remove_all(final_dir);  // re-saving the same step
    fs::rename(tmp_dir, final_dir);
    sync_directory(dir_);
  } catch (...) {
    fs::remove_all(tmp_dir, ec);
    throw;
  }
  data::AtomicFileWriter latest(dir_ / "LATEST");
  latest.write(name + "\n");
  latest.commit();

  if (keep > 0) {
    // The one just written counts toward `keep` and always stays: a resume
    // that fell back past damaged newer checkpoints must not prune itself.
    auto others = checkpoints();
    std::erase_if(others, [&](const Checkpoint& c) { return c.dir == final_dir; });
    for (std::size_t i = 0; i + keep - 1 < others.size(); ++i) fs::remove_all(others[i].dir, ec);
  }
  return {final_dir, state.step};
}

std::vector<Checkpoint> CheckpointStore::checkpoints() const {
  // A step_* directory exists under its final name only once it was written
  // completely (it is renamed there); LATEST is kept for people and scripts.
  std::vector<Checkpoint> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const auto step = parse_step_dir(entry.path().filename().string());
    std::error_code status_ec;
    if (step && entry.is_directory(status_ec)) out.push_back({entry.path(), *step});
  }
  std::sort(out.begin(), out.end(), [](const Checkpoint& a, const Checkpoint& b) { return a.step < b.step; });
  return out;
}

std::optional<Checkpoint> CheckpointStore::latest() const {
  const auto all = checkpoints();
  if (all.empty()) return std::nullopt;
  return all.back();
}

CheckpointCheck CheckpointStore::verify(const Checkpoint& ckpt) const {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(ckpt.dir / kManifestName, ec))) {
    try {
      const Manifest manifest = read_manifest(ckpt.dir);
      for (const char* name : {kModelFile, kStateFile})
        if (!manifest.count(name))
          return {CheckpointHealth::damaged, fmt::format("'{}': does not list {}", (ckpt.dir / kManifestName).string(), name)};
      std::string problem = manifest_mismatch(ckpt.dir, manifest);
      if (!problem.empty()) return {CheckpointHealth::damaged, std::move(problem)};
    } catch (const std::runtime_error& e) {
      return {CheckpointHealth::damaged, e.what()};
    }
    return {CheckpointHealth::intact, ""};
  }
  // No manifest: an older cllm's checkpoint, unless its state says otherwise.
  try {
    (void)data::InputFile::open(ckpt.dir / kModelFile);
    const auto state = data::SafetensorsFile::open(ckpt.dir / kStateFile);
    if (state.metadata().count(kManifestKey))
      return {CheckpointHealth::damaged, fmt::format("'{}': missing ({} says the checkpoint was written with one)",
                                                     (ckpt.dir / kManifestName).string(), kStateFile)};
  } catch (const std::runtime_error& e) {
    return {CheckpointHealth::damaged, e.what()};
  }
  return {CheckpointHealth::unverified, ""};
}

std::optional<std::string> CheckpointStore::latest_problem() const {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir_ / "LATEST", ec))) return std::nullopt;
  std::string name;
  try {
    name = data::InputFile::open(dir_ / "LATEST").read_all(4096);
  } catch (const std::runtime_error& e) {
    return fmt::format("LATEST cannot be read ({}), so whether a newer checkpoint was removed is unknown", e.what());
  }
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  const auto step = parse_step_dir(name);
  if (!step) return fmt::format("'{}': names '{}', which is not a checkpoint name", (dir_ / "LATEST").string(), name);
  for (const Checkpoint& c : checkpoints())
    if (c.dir.filename() == name) return std::nullopt;
  return fmt::format("'{}': names {}, which is not there (removed since it was written?)", (dir_ / "LATEST").string(),
                     (dir_ / name).string());
}

std::optional<Checkpoint> CheckpointStore::newest_usable(const std::function<void(const std::string&)>& say) const {
  const auto all = checkpoints();
  const auto latest_issue = latest_problem();
  if (latest_issue) say("warning: " + *latest_issue);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const CheckpointCheck check = verify(*it);
    if (check.health == CheckpointHealth::damaged) {
      say(fmt::format("warning: checkpoint {} is damaged: {}", it->dir.string(), check.problem));
      continue;
    }
    if (it != all.rbegin() || latest_issue)
      say(fmt::format("falling back to {} (step {}), the newest {} checkpoint", it->dir.string(), it->step,
                      check.health == CheckpointHealth::intact ? "intact" : "unverified"));
    if (check.health == CheckpointHealth::unverified)
      say(fmt::format("note: {} has no {} (written by an older cllm): loading it unverified", it->dir.string(), kManifestName));
    return *it;
  }
  if (all.empty()) return std::nullopt;
  throw data::file_error(dir_, fmt::format("no intact checkpoint: all {} are damaged (see above)", all.size()));
}

TrainState CheckpointStore::load(const Checkpoint& ckpt, const model::ParamLayout& layout, std::span<float> params,
                                 std::span<float> adam_m, std::span<float> adam_v) const {
  const auto weights = data::SafetensorsFile::open(ckpt.dir / kModelFile);
  std::map<std::string, std::string> names;
  for (const auto& [name, t] : weights.tensors()) names.emplace(name, name);
  const model::Config saved = infer_config(weights, names, 0);
  const model::Config& want = layout.config();
  if (saved.vocab != want.vocab || saved.layers != want.layers || saved.dim != want.dim ||
      saved.heads != want.heads || saved.context != want.context)
    throw data::file_error(weights.path(), "checkpoint model config differs from the run's (vocab/layers/dim/heads/context)");
  read_params(weights, names, layout, params);

  const auto state_file = data::SafetensorsFile::open(ckpt.dir / kStateFile);
  const auto& meta = state_file.metadata();
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kStateFormat)
    throw data::file_error(state_file.path(), "not a cllm training state (metadata format != cllm-train-state)");
  const auto version = meta.find("version");
  if (version == meta.end() || version->second != kStateVersion)
    throw data::file_error(state_file.path(), "unsupported training state version (expected 1)");
  state_file.read_f32("adam.m", adam_m);
  state_file.read_f32("adam.v", adam_v);
  TrainState state;
  state.settings = meta;
  state.settings.erase("format");
  state.settings.erase("version");
  state.settings.erase(kManifestKey);
  const auto step = meta.find("step");
  if (step == meta.end()) throw data::file_error(state_file.path(), "metadata has no 'step'");
  state.settings.erase("step");
  const auto [end, ec] = std::from_chars(step->second.data(), step->second.data() + step->second.size(), state.step);
  if (ec != std::errc{} || end != step->second.data() + step->second.size())
    throw data::file_error(state_file.path(), "metadata 'step' is not an integer");
  return state;
}

}  // namespace cllm::train
