// Scalar kernels. This file is built with -fno-tree-vectorize (see
// CMakeLists.txt) so that "scalar" means scalar: it is the no-SIMD fallback,
// the plan's "before" add loop, and the reference the tests compare against.
#include <cmath>
#include <stdexcept>
#include <string>

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
  const AdamWConstants c = adamw_constants(hp);
  for (std::size_t i = 0; i < n; ++i) {
    const float grad = g[i] * c.grad_scale;
    m[i] = m[i] * c.beta1 + c.one_minus_beta1 * grad;
    v[i] = v[i] * c.beta2 + c.one_minus_beta2 * grad * grad;
    const float denom = std::sqrt(v[i]) / c.sqrt_bc2 + c.eps;
    p[i] = p[i] * c.decay + c.neg_step_size * (m[i] / denom);
  }
}

void convert_to_bf16(bf16* dst, const float* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

void convert_from_bf16(float* dst, const bf16* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

constexpr KernelTable kScalarTable{Target::scalar, zero,        copy,   add,
                                   add_n,          scale,       axpy,   dot,
                                   sum_squares,    adamw,       convert_to_bf16, convert_from_bf16};

}  // namespace

const KernelTable& scalar_table() { return kScalarTable; }

AdamWConstants adamw_constants(const AdamWParams& hp) {
  if (hp.step < 1)
    throw std::invalid_argument("adamw: step is " + std::to_string(hp.step) +
                                ", expected >= 1 (steps count from 1)");
  const double step = static_cast<double>(hp.step);
  const double bc1 = 1.0 - std::pow(hp.beta1, step);
  const double bc2 = 1.0 - std::pow(hp.beta2, step);
  return AdamWConstants{
      .decay = static_cast<float>(1.0 - hp.lr * hp.weight_decay),
      .beta1 = static_cast<float>(hp.beta1),
      .one_minus_beta1 = static_cast<float>(1.0 - hp.beta1),
      .beta2 = static_cast<float>(hp.beta2),
      .one_minus_beta2 = static_cast<float>(1.0 - hp.beta2),
      .eps = static_cast<float>(hp.eps),
      .neg_step_size = static_cast<float>(-hp.lr / bc1),
      .sqrt_bc2 = static_cast<float>(std::sqrt(bc2)),
      .grad_scale = hp.grad_scale,
  };
}

}  // namespace cllm::kernels::detail
