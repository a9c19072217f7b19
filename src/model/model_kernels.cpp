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

}  // namespace

const ModelKernels& scalar_model_kernels() {
  static const ModelKernels table{gelu_forward, gelu_backward, exp_shift_sum, max};
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
