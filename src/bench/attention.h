// `cllm bench attention`'s measurements: the causal attention core
// (model/layers.h) alone, one thread: forward and backward time per layer and
// the memory it needs. "kept" is what one layer keeps from its forward for
// its backward (the attention state; its inputs and output are the model's
// activations either way), "scratch" the per-thread buffers every layer
// reuses.
//
// FLOPs: the causal products count once per (query, key <= query) pair:
// forward QK^T and PV = 4 * hs per pair, backward 8 * hs per pair
// (dP, dV, dQ, dK), so GFLOP/s compare between kernels that recompute more.
#pragma once

#include <cstddef>

#include "model/gpt.h"

namespace cllm::bench {

struct AttentionMeasurement {
  double forward_ms = 0, backward_ms = 0;  // medians
  double forward_gflops = 0, backward_gflops = 0;
  std::size_t kept_bytes = 0, scratch_bytes = 0;
};

// One layer of `heads` heads over batch sequences of seq tokens of width
// dim (dim % heads == 0): the median of reps timed passes after a warm-up.
AttentionMeasurement measure_attention(model::Precision precision, int batch, int seq, int dim, int heads, int reps);

}  // namespace cllm::bench
