// SIMD kernels, compiled once per Highway target (foreach_target re-includes
// this file with each target's flags). Only this file sees SIMD types; the
// rest of the build is compiled for the baseline ISA.
//
// Targets: SSE4, AVX2 and AVX3 (AVX-512 F/BW/DQ/VL). AVX3_DL and SSSE3 are
// left out: they add compile time and nothing these memory-bound loops use;
// Highway's HWY_SCALAR baseline is compiled (Highway requires a baseline)
// but left empty: the portable fallback is our own scalar table.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/kernels_simd.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <cmath>

#include "kernels/kernels_internal.h"

#if HWY_TARGET != HWY_SCALAR
HWY_BEFORE_NAMESPACE();
namespace cllm::kernels::detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DD = hn::Repartition<double, DF>;
using VF = hn::Vec<DF>;
using VD = hn::Vec<DD>;

// sum += v*v with both halves of v widened to double.
HWY_INLINE VD AddSquaresWide(VF v, VD sum) {
  const DD dd;
  const hn::Half<DF> dh;
  const VD lo = hn::PromoteTo(dd, hn::LowerHalf(dh, v));
  const VD hi = hn::PromoteTo(dd, hn::UpperHalf(dh, v));
  return hn::MulAdd(hi, hi, hn::MulAdd(lo, lo, sum));
}

HWY_INLINE VD AddProductsWide(VF a, VF b, VD sum) {
  const DD dd;
  const hn::Half<DF> dh;
  sum = hn::MulAdd(hn::PromoteTo(dd, hn::LowerHalf(dh, a)), hn::PromoteTo(dd, hn::LowerHalf(dh, b)), sum);
  return hn::MulAdd(hn::PromoteTo(dd, hn::UpperHalf(dh, a)), hn::PromoteTo(dd, hn::UpperHalf(dh, b)), sum);
}

void Zero(float* HWY_RESTRICT dst, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Zero(d), d, dst + i);
  for (; i < n; ++i) dst[i] = 0.0f;
}

void Copy(float* HWY_RESTRICT dst, const float* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    const VF a = hn::LoadU(d, src + i), b = hn::LoadU(d, src + i + N);
    const VF c = hn::LoadU(d, src + i + 2 * N), e = hn::LoadU(d, src + i + 3 * N);
    hn::StoreU(a, d, dst + i);
    hn::StoreU(b, d, dst + i + N);
    hn::StoreU(c, d, dst + i + 2 * N);
    hn::StoreU(e, d, dst + i + 3 * N);
  }
  for (; i + N <= n; i += N) hn::StoreU(hn::LoadU(d, src + i), d, dst + i);
  for (; i < n; ++i) dst[i] = src[i];
}

void Add(float* HWY_RESTRICT dst, const float* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    for (std::size_t u = 0; u < 4 * N; u += N)
      hn::StoreU(hn::Add(hn::LoadU(d, dst + i + u), hn::LoadU(d, src + i + u)), d, dst + i + u);
  }
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(d, dst + i), hn::LoadU(d, src + i)), d, dst + i);
  for (; i < n; ++i) dst[i] += src[i];
}

double AddN(float* HWY_RESTRICT dst, const float* const* srcs, std::size_t n_src, std::size_t offset,
            std::size_t count, bool accumulate) {
  const DF d;
  const DD dd;
  const std::size_t N = hn::Lanes(d);
  float* out = dst + offset;
  VD sumsq = hn::Zero(dd);
  std::size_t i = 0;
  // Two vectors per source per pass: every source stream is read once, the
  // partial sums stay in registers, dst is written once.
  for (; i + 2 * N <= count; i += 2 * N) {
    VF a = accumulate ? hn::LoadU(d, out + i) : hn::Zero(d);
    VF b = accumulate ? hn::LoadU(d, out + i + N) : hn::Zero(d);
    for (std::size_t k = 0; k < n_src; ++k) {
      const float* s = srcs[k] + offset + i;
      a = hn::Add(a, hn::LoadU(d, s));
      b = hn::Add(b, hn::LoadU(d, s + N));
    }
    hn::StoreU(a, d, out + i);
    hn::StoreU(b, d, out + i + N);
    sumsq = AddSquaresWide(b, AddSquaresWide(a, sumsq));
  }
  double total = hn::GetLane(hn::SumOfLanes(dd, sumsq));
  for (; i < count; ++i) {
    float s = accumulate ? out[i] : 0.0f;
    for (std::size_t k = 0; k < n_src; ++k) s += srcs[k][offset + i];
    out[i] = s;
    total += static_cast<double>(s) * static_cast<double>(s);
  }
  return total;
}

void Scale(float* HWY_RESTRICT dst, float a, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF va = hn::Set(d, a);
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, dst + i), va), d, dst + i);
  for (; i < n; ++i) dst[i] *= a;
}

void Axpy(float* HWY_RESTRICT dst, float a, const float* HWY_RESTRICT x, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF va = hn::Set(d, a);
  std::size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, dst + i)), d, dst + i);
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i + N), hn::LoadU(d, dst + i + N)), d, dst + i + N);
  }
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, dst + i)), d, dst + i);
  for (; i < n; ++i) dst[i] += a * x[i];
}

double Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, std::size_t n) {
  const DF d;
  const DD dd;
  const std::size_t N = hn::Lanes(d);
  VD s0 = hn::Zero(dd), s1 = hn::Zero(dd);
  std::size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = AddProductsWide(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = AddProductsWide(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
  }
  double total = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
  for (; i < n; ++i) total += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return total;
}

double SumSquares(const float* HWY_RESTRICT x, std::size_t n) {
  const DF d;
  const DD dd;
  const std::size_t N = hn::Lanes(d);
  VD s0 = hn::Zero(dd), s1 = hn::Zero(dd);
  std::size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = AddSquaresWide(hn::LoadU(d, x + i), s0);
    s1 = AddSquaresWide(hn::LoadU(d, x + i + N), s1);
  }
  double total = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
  for (; i < n; ++i) total += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return total;
}

void AdamW(float* HWY_RESTRICT p, const float* HWY_RESTRICT g, float* HWY_RESTRICT m,
           float* HWY_RESTRICT v, std::size_t n, const AdamWParams& hp) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const float decay = 1.0f - hp.lr * hp.weight_decay;
  const float step_size = hp.lr / hp.bias_correction1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(hp.bias_correction2);
  const VF vscale = hn::Set(d, hp.grad_scale), vb1 = hn::Set(d, hp.beta1),
           vb1c = hn::Set(d, 1.0f - hp.beta1), vb2 = hn::Set(d, hp.beta2),
           vb2c = hn::Set(d, 1.0f - hp.beta2), veps = hn::Set(d, hp.eps),
           vdecay = hn::Set(d, decay), vstep = hn::Set(d, step_size),
           vinv = hn::Set(d, inv_sqrt_bc2);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF grad = hn::Mul(hn::LoadU(d, g + i), vscale);
    const VF mi = hn::Add(hn::Mul(vb1, hn::LoadU(d, m + i)), hn::Mul(vb1c, grad));
    const VF vi = hn::Add(hn::Mul(vb2, hn::LoadU(d, v + i)), hn::Mul(hn::Mul(vb2c, grad), grad));
    const VF denom = hn::Add(hn::Mul(hn::Sqrt(vi), vinv), veps);
    const VF pi = hn::Sub(hn::Mul(hn::LoadU(d, p + i), vdecay), hn::Div(hn::Mul(vstep, mi), denom));
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
    hn::StoreU(pi, d, p + i);
  }
  for (; i < n; ++i) {
    const float grad = g[i] * hp.grad_scale;
    m[i] = hp.beta1 * m[i] + (1.0f - hp.beta1) * grad;
    v[i] = hp.beta2 * v[i] + (1.0f - hp.beta2) * grad * grad;
    const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + hp.eps;
    p[i] = p[i] * decay - step_size * m[i] / denom;
  }
}

const KernelTable* Table(Target t) {
  static const KernelTable table{t, Zero, Copy, Add, AddN, Scale, Axpy, Dot, SumSquares, AdamW};
  return &table;
}

}  // namespace HWY_NAMESPACE
}  // namespace cllm::kernels::detail
HWY_AFTER_NAMESPACE();
#endif  // HWY_TARGET != HWY_SCALAR

#if HWY_ONCE
#include <hwy/targets.h>

namespace cllm::kernels::detail {
namespace {

int64_t hwy_bit(Target t) {
  switch (t) {
    case Target::sse4: return HWY_SSE4;
    case Target::avx2: return HWY_AVX2;
    case Target::avx512: return HWY_AVX3;
    case Target::scalar: break;
  }
  return 0;
}

}  // namespace

const KernelTable* simd_table(Target t) {
  switch (t) {
#if HWY_TARGETS & HWY_SSE4
    case Target::sse4: return N_SSE4::Table(t);
#endif
#if HWY_TARGETS & HWY_AVX2
    case Target::avx2: return N_AVX2::Table(t);
#endif
#if HWY_TARGETS & HWY_AVX3
    case Target::avx512: return N_AVX3::Table(t);
#endif
    default: return nullptr;
  }
}

bool simd_cpu_supports(Target t) {
  const int64_t bit = hwy_bit(t);
  return bit != 0 && (hwy::SupportedTargets() & bit) != 0;
}

}  // namespace cllm::kernels::detail
#endif  // HWY_ONCE
