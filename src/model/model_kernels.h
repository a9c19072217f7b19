// The model's row and elementwise kernels that the compiler does not
// vectorize well for the baseline ISA (GELU, softmax's exp, LayerNorm's
// rows), one table per compiled SIMD target like kernels/kernels.h: the
// scalar table always exists, Highway tables come from model_simd.cpp.
// Internal to src/model; no SIMD types here.
#pragma once

#include <cstddef>

#include "kernels/kernels.h"

namespace cllm::model::detail {

struct ModelKernels {
  // out[i] = gelu_tanh(inp[i])
  void (*gelu_forward)(float* out, const float* inp, std::size_t n);
  // dinp[i] = dout[i] * gelu_tanh'(inp[i]); dinp may alias dout
  void (*gelu_backward)(float* dinp, const float* inp, const float* dout, std::size_t n);
  // x[i] = exp(x[i] - shift); returns the sum of the new x[i]
  float (*exp_shift_sum)(float* x, float shift, std::size_t n);
  // max of x[0..n), n >= 1
  float (*max)(const float* x, std::size_t n);
  // One row's LayerNorm statistics, n >= 1: the mean, and 1 / sqrt(variance + eps)
  // with the variance summed around the mean (a second pass, not E[x^2] - mean^2).
  void (*layernorm_stats)(const float* x, std::size_t n, float eps, float* mean, float* rstd);
  // y[i] = (x[i] - mean) * rstd * w[i] + b[i]
  void (*layernorm_apply)(float* y, const float* x, float mean, float rstd, const float* w, const float* b,
                          std::size_t n);
  // One row's LayerNorm backward from its output gradient d: dx[i] +=, and
  // the parameter gradients dw[i] += d[i] * norm[i], db[i] += d[i].
  void (*layernorm_backward)(float* dx, float* dw, float* db, const float* d, const float* x, const float* w,
                             float mean, float rstd, std::size_t n);
};

const ModelKernels& scalar_model_kernels();
// Highway table for t, or nullptr when t is not compiled in.
const ModelKernels* simd_model_kernels(kernels::Target t);
// The table of the target kernels::active() chose (CLLM_SIMD respected).
const ModelKernels& model_kernels();

}  // namespace cllm::model::detail
