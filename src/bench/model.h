// `cllm bench model`'s measurements: single-thread forward+backward
// throughput of a named GPT config (bench/configs.h) in one precision, with
// each pass broken down by phase (model/phase_profile.h) and the AdamW update
// (bf16 copy included) timed apart from the pass; and the bf16 peak that
// bf16 rows are compared with.
//
// FLOPs per token, as nanoGPT's estimate_mfu: 6 * N + 12 * L * d * T, where
// N is the parameter count without the position embeddings (wte counts once,
// it is also the LM head), L layers, d = dim, T = sequence length: 6N for
// the forward+backward matrix products, 12LdT for attention's QK^T and AV.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bench/configs.h"
#include "model/gpt.h"
#include "model/phase_profile.h"

namespace cllm::bench {

// The passes whose phases are timed, after the timed passes.
constexpr int kProfiledPasses = 3;

struct ModelMeasurement {
  std::string name;
  model::Precision precision = model::Precision::fp32;
  model::PhaseSeconds phases{};  // per pass, mean over the profiled passes
  double adamw_ms = 0;           // one AdamW update (with the bf16 copy in bf16), median
  std::size_t params = 0, flops_per_token = 0;
  int batch = 0, seq = 0;
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0;
  float loss = 0;
};

// The bf16 matrix units' rate on one core: the best of 5 runs of a
// 1024 x 1024 x 1024 bf16 product (f32 accumulation) after a warm-up.
double measure_bf16_peak_gflops();

// Median over `steps` timed forward+backward passes after `warmup` untimed
// ones, then the phases of up to kProfiledPasses more.
ModelMeasurement measure_model(const NamedConfig& bc, model::Precision precision, int steps, int warmup,
                               std::uint64_t seed);

}  // namespace cllm::bench
