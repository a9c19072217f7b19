// The named model configs of the benchmarks (issue 4), vocab 256, sequence
// length = context; the same as bench/torch_gpt.py's CONFIGS.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/sgemm.h"
#include "model/gpt.h"

namespace cllm::bench {

struct NamedConfig {
  std::string name;
  model::Config config;
  int batch = 0;  // sequences per step of the PyTorch comparison
};

// tiny, small or medium; throws std::invalid_argument for another name.
inline NamedConfig named_config(const std::string& name) {
  auto make = [&](int layers, int dim, int heads, int context, int batch) {
    NamedConfig c{name, {}, batch};
    c.config.vocab = 256;
    c.config.layers = layers;
    c.config.dim = dim;
    c.config.heads = heads;
    c.config.context = context;
    return c;
  };
  if (name == "tiny") return make(2, 128, 4, 64, 16);
  if (name == "small") return make(4, 256, 8, 128, 8);
  if (name == "medium") return make(6, 384, 6, 256, 4);
  throw std::invalid_argument("--config: unknown config '" + name + "': expected tiny, small or medium");
}

// A benchmark's --precision list: auto is fp32, and bf16 too where the CPU
// has native bf16; otherwise comma-separated fp32 and/or bf16.
inline std::vector<model::Precision> select_bench_precisions(const std::string& list) {
  if (list == "auto") {
    if (kernels::bf16_support().native) return {model::Precision::fp32, model::Precision::bf16};
    return {model::Precision::fp32};
  }
  std::vector<model::Precision> out;
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (name == "auto") throw std::invalid_argument("--precision: auto stands alone, not in a list");
    out.push_back(model::choose_precision(name).precision);
  }
  if (out.empty()) throw std::invalid_argument("--precision is empty: expected auto, fp32, bf16 or fp32,bf16");
  return out;
}

}  // namespace cllm::bench
