// Files the reliability tests feed to cllm: a small text corpus, a tiny
// model's weights, hand-made safetensors and .tok files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cllm::reliability {

// A per-test directory under the system temp directory, removed on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }
  const std::filesystem::path& path() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

void write_file(const std::filesystem::path& path, std::string_view bytes);
std::string read_file(const std::filesystem::path& path);

// About 20 KB of word salad a tiny model learns from.
std::string corpus_text(unsigned seed = 7);

// Flags of a tiny model run that takes well under a second per step, to be
// followed by --data and --out.
std::vector<std::string> tiny_train_flags();

// Weights of the tiny model (layers 1, dim 16, heads 2, context 16, byte
// vocabulary) as a valid cllm safetensors file.
void write_tiny_weights(const std::filesystem::path& path);

// A checkpoint of the tiny model (zero moments, no run settings) at `step`
// in RUN_DIR/checkpoints, written as cllm train writes one (with a manifest).
void write_tiny_checkpoint(const std::filesystem::path& run_dir, std::uint64_t step);

// Every F32 tensor of a safetensors file.
std::map<std::string, std::vector<float>> read_tensors(const std::filesystem::path& path);

// A safetensors file: 8-byte little-endian header_length, then header, then data.
std::string safetensors_bytes(std::uint64_t header_length, std::string_view header, std::string_view data);

// A .tok file header (32 bytes) followed by `tokens` raw bytes.
std::string token_file_bytes(std::string_view magic, std::uint32_t version, std::uint32_t width, std::uint64_t count,
                             std::uint32_t vocab, std::string_view tokens);

}  // namespace cllm::reliability
