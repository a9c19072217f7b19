// The named model configs of the benchmarks (issue 4), vocab 256, sequence
// length = context; the same as bench/torch_gpt.py's CONFIGS.
#pragma once

#include <stdexcept>
#include <string>

#include "model/gpt.h"

namespace cllm::cli {

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

}  // namespace cllm::cli
