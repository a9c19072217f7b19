#include "fixtures.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#include "data/safetensors.h"
#include "data/tokenizer.h"
#include "model/gpt.h"
#include "train/checkpoint.h"

namespace cllm::reliability {
namespace fs = std::filesystem;

ScratchDir::ScratchDir(const std::string& name)
    : dir_(fs::temp_directory_path() / ("cllm_reliab_" + name + "_" + std::to_string(::getpid()))) {
  fs::remove_all(dir_);
  fs::create_directories(dir_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write test file " + path.string());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string corpus_text(unsigned seed) {
  std::mt19937 rng(seed);
  const char* words[] = {"alpha", "beta", "gamma", "delta", "one", "two", "three", "cat", "dog", "the"};
  std::string out;
  for (int line = 0; line < 400; ++line)
    for (int w = 0; w < 8; ++w) out += std::string(words[rng() % 10]) + (w == 7 ? ".\n" : " ");
  return out;
}

std::vector<std::string> tiny_train_flags() {
  return {"train", "--layers", "1", "--dim", "16", "--heads", "2", "--context", "16", "--batch", "2",
          "--steps", "2", "--threads", "1", "--sample-tokens", "0"};
}

namespace {

const model::Config kTinyConfig{256, 1, 16, 2, 16};

std::vector<float> tiny_params(const model::ParamLayout& layout) {
  std::vector<float> params(layout.total());
  model::init_params(layout, params.data(), 1);
  return params;
}

}  // namespace

void write_tiny_weights(const fs::path& path) {
  const model::ParamLayout layout(kTinyConfig);
  train::save_weights(path, layout, tiny_params(layout), "byte");
}

void write_tiny_checkpoint(const fs::path& run_dir, std::uint64_t step) {
  const model::ParamLayout layout(kTinyConfig);
  const std::vector<float> moments(layout.total(), 0.0f);
  train::TrainState state;
  state.step = step;
  train::CheckpointStore(run_dir).save(layout, tiny_params(layout), moments, moments, state, data::ByteTokenizer().record(), 0);
}

std::map<std::string, std::vector<float>> read_tensors(const fs::path& path) {
  const auto file = data::SafetensorsFile::open(path);
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, t] : file.tensors()) out[name] = file.f32(name);
  return out;
}

std::string safetensors_bytes(std::uint64_t header_length, std::string_view header, std::string_view data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header_length >> (8 * i)) & 0xFF);
  out += header;
  out += data;
  return out;
}

std::string token_file_bytes(std::string_view magic, std::uint32_t version, std::uint32_t width, std::uint64_t count,
                             std::uint32_t vocab, std::string_view tokens) {
  std::string out(32, '\0');
  std::memcpy(out.data(), magic.data(), std::min<std::size_t>(8, magic.size()));
  std::memcpy(out.data() + 8, &version, 4);  // little-endian host (x86-64, aarch64)
  std::memcpy(out.data() + 12, &width, 4);
  std::memcpy(out.data() + 16, &count, 8);
  std::memcpy(out.data() + 24, &vocab, 4);
  out += tokens;
  return out;
}

}  // namespace cllm::reliability
