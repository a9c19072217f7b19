// Scalar kernels. This file is built with -fno-tree-vectorize (see
// CMakeLists.txt) so that "scalar" means scalar: it is the no-SIMD fallback,
// the plan's "before" add loop, and the reference the tests compare against.
#include <cmath>

#include "kernels/kernels_internal.h"

namespace cllm::kernels::detail {
namespace {

void zero(float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = 0.0f;
}

void copy(float* dst, const float* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
}

void add(float* dst, const float* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
}

double add_n(float* dst, const float* const* srcs, std::size_t n_src, std::size_t offset,
             std::size_t count, bool accumulate) {
  double sumsq = 0.0;
  for (std::size_t i = offset; i < offset + count; ++i) {
    float s = accumulate ? dst[i] : 0.0f;
    for (std::size_t k = 0; k < n_src; ++k) s += srcs[k][i];
    dst[i] = s;
    sumsq += static_cast<double>(s) * static_cast<double>(s);
  }
  return sumsq;
}

void scale(float* dst, float a, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] *= a;
}

void axpy(float* dst, float a, const float* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] += a * x[i];
}

double dot(const float* a, const float* b, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

double sum_squares(const float* x, std::size_t n) { return dot(x, x, n); }

void adamw(float* p, const float* g, float* m, float* v, std::size_t n, const AdamWParams& hp) {
  const float decay = 1.0f - hp.lr * hp.weight_decay;
  const float step_size = hp.lr / hp.bias_correction1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(hp.bias_correction2);
  for (std::size_t i = 0; i < n; ++i) {
    const float grad = g[i] * hp.grad_scale;
    m[i] = hp.beta1 * m[i] + (1.0f - hp.beta1) * grad;
    v[i] = hp.beta2 * v[i] + (1.0f - hp.beta2) * grad * grad;
    const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + hp.eps;
    p[i] = p[i] * decay - step_size * m[i] / denom;
  }
}

constexpr KernelTable kScalarTable{Target::scalar, zero, copy, add, add_n, scale,
                                   axpy, dot, sum_squares, adamw};

}  // namespace

const KernelTable& scalar_table() { return kScalarTable; }

}  // namespace cllm::kernels::detail
