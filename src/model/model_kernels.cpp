#include "model/model_kernels.h"

#include <algorithm>
#include <cmath>

namespace cllm::model::detail {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

void gelu_forward(float* out, const float* inp, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + std::tanh(kGeluScale * (x + kGeluCubic * x * x * x)));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float x = inp[i];
    const float th = std::tanh(kGeluScale * (x + kGeluCubic * x * x * x));
    const float dtanh = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dtanh);
  }
}

float exp_shift_sum(float* x, float shift, std::size_t n) {
  float sum = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

float max(const float* x, std::size_t n) { return *std::max_element(x, x + n); }

// Eight independent partial sums: the loops vectorize without reassociation
// flags, and the order is fixed (deterministic).
constexpr std::size_t kLanes = 8;

template <class Term>
float lane_sum(std::size_t n, const Term& term) {
  float acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) acc[j] += term(i + j);
  float total = 0.0f;
  for (std::size_t j = 0; j < kLanes; ++j) total += acc[j];
  for (; i < n; ++i) total += term(i);
  return total;
}

void layernorm_stats(const float* x, std::size_t n, float eps, float* mean, float* rstd) {
  const float m = lane_sum(n, [&](std::size_t i) { return x[i]; }) / static_cast<float>(n);
  const float var = lane_sum(n, [&](std::size_t i) { return (x[i] - m) * (x[i] - m); }) / static_cast<float>(n);
  *mean = m;
  *rstd = 1.0f / std::sqrt(var + eps);
}

void layernorm_apply(float* y, const float* x, float mean, float rstd, const float* w, const float* b,
                     std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

void layernorm_backward(float* dx, float* dw, float* db, const float* d, const float* x, const float* w, float mean,
                        float rstd, std::size_t n) {
  // means of dnorm = d * w and of dnorm * norm, norm = (x - mean) * rstd
  const float dnorm_mean = lane_sum(n, [&](std::size_t i) { return d[i] * w[i]; }) / static_cast<float>(n);
  const float dnorm_norm_mean =
      lane_sum(n, [&](std::size_t i) { return d[i] * w[i] * (x[i] - mean); }) * rstd / static_cast<float>(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float norm = (x[i] - mean) * rstd;
    db[i] += d[i];
    dw[i] += norm * d[i];
    dx[i] += (d[i] * w[i] - dnorm_mean - norm * dnorm_norm_mean) * rstd;
  }
}

}  // namespace

const ModelKernels& scalar_model_kernels() {
  static const ModelKernels table{gelu_forward,    gelu_backward,   exp_shift_sum,     max,
                                  layernorm_stats, layernorm_apply, layernorm_backward};
  return table;
}

const ModelKernels& model_kernels() {
  static const ModelKernels& chosen = [&]() -> const ModelKernels& {
#if CLLM_HAVE_HWY
    if (const ModelKernels* t = simd_model_kernels(kernels::active().target)) return *t;
#endif
    return scalar_model_kernels();
  }();
  return chosen;
}

#if !CLLM_HAVE_HWY
const ModelKernels* simd_model_kernels(kernels::Target) { return nullptr; }
#endif

}  // namespace cllm::model::detail
