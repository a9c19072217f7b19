// Highway versions of model_kernels.h, compiled once per target (see
// kernels/kernels_simd.cpp for the scheme and the target choice).
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "model/model_simd.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cmath>

#include "model/model_kernels.h"

#if HWY_TARGET != HWY_SCALAR
HWY_BEFORE_NAMESPACE();
namespace cllm::model::detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

// GELU through 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): one Exp and one
// division per vector, where Highway's Tanh runs Expm1 and a division plus
// its own selects. Returns exp(-2u) for u = sqrt(2/pi) (x + 0.044715 x^3),
// the argument clamped to +-88 so that it stays finite (GELU is x or 0 to
// float precision well before that).
HWY_INLINE VF ExpMinusTwoU(DF d, VF x) {
  const VF x2 = hn::Mul(x, x);
  const VF minus_2u =
      hn::Mul(hn::Mul(hn::Set(d, -2.0f * kGeluScale), x), hn::MulAdd(hn::Set(d, kGeluCubic), x2, hn::Set(d, 1.0f)));
  const VF limit = hn::Set(d, 88.0f);
  return hn::Exp(d, hn::Min(hn::Max(minus_2u, hn::Neg(limit)), limit));
}

void GeluForward(float* HWY_RESTRICT out, const float* HWY_RESTRICT inp, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF one = hn::Set(d, 1.0f);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF x = hn::LoadU(d, inp + i);
    hn::StoreU(hn::Div(x, hn::Add(one, ExpMinusTwoU(d, x))), d, out + i);
  }
  if (i < n) scalar_model_kernels().gelu_forward(out + i, inp + i, n - i);
}

void GeluBackward(float* dinp, const float* HWY_RESTRICT inp, const float* dout, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF one = hn::Set(d, 1.0f), scale2 = hn::Set(d, 2.0f * kGeluScale), cubic3 = hn::Set(d, 3.0f * kGeluCubic);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF x = hn::LoadU(d, inp + i);
    const VF e = ExpMinusTwoU(d, x);
    const VF s = hn::Div(one, hn::Add(one, e));  // 0.5 (1 + tanh u); 1 - s = e s
    const VF du2 = hn::Mul(scale2, hn::MulAdd(cubic3, hn::Mul(x, x), one));  // d(2u)/dx
    // s + x s (1 - s) d(2u)/dx
    const VF grad = hn::Mul(s, hn::MulAdd(hn::Mul(x, hn::Mul(e, s)), du2, one));
    hn::StoreU(hn::Mul(hn::LoadU(d, dout + i), grad), d, dinp + i);
  }
  if (i < n) scalar_model_kernels().gelu_backward(dinp + i, inp + i, dout + i, n - i);
}

float ExpShiftSum(float* HWY_RESTRICT x, float shift, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF vshift = hn::Set(d, shift);
  VF sum = hn::Zero(d);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vshift));
    hn::StoreU(e, d, x + i);
    sum = hn::Add(sum, e);
  }
  float total = hn::GetLane(hn::SumOfLanes(d, sum));
  if (i < n) total += scalar_model_kernels().exp_shift_sum(x + i, shift, n - i);
  return total;
}

float Max(const float* HWY_RESTRICT x, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  float best = x[0];
  if (n >= N) {
    VF m = hn::LoadU(d, x);
    for (i = N; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(d, x + i));
    best = hn::GetLane(hn::MaxOfLanes(d, m));
  }
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

// sum over i of term(i), a vector of lanes at a time in two accumulators,
// then scalar_term(i) for the tail.
template <class Term, class ScalarTerm>
HWY_INLINE float RowSum(DF d, std::size_t n, const Term& term, const ScalarTerm& scalar_term) {
  const std::size_t N = hn::Lanes(d);
  VF acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  std::size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::Add(acc0, term(i));
    acc1 = hn::Add(acc1, term(i + N));
  }
  if (i + N <= n) {
    acc0 = hn::Add(acc0, term(i));
    i += N;
  }
  float total = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
  for (; i < n; ++i) total += scalar_term(i);
  return total;
}

void LayernormStats(const float* HWY_RESTRICT x, std::size_t n, float eps, float* mean, float* rstd) {
  const DF d;
  const float m = RowSum(d, n, [&](std::size_t i) { return hn::LoadU(d, x + i); },
                         [&](std::size_t i) { return x[i]; }) /
                  static_cast<float>(n);
  const VF vm = hn::Set(d, m);
  const float css = RowSum(
      d, n,
      [&](std::size_t i) {
        const VF c = hn::Sub(hn::LoadU(d, x + i), vm);
        return hn::Mul(c, c);
      },
      [&](std::size_t i) { return (x[i] - m) * (x[i] - m); });
  *mean = m;
  *rstd = 1.0f / std::sqrt(css / static_cast<float>(n) + eps);
}

void LayernormApply(float* HWY_RESTRICT y, const float* HWY_RESTRICT x, float mean, float rstd,
                    const float* HWY_RESTRICT w, const float* HWY_RESTRICT b, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF vm = hn::Set(d, mean), vs = hn::Set(d, rstd);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF norm = hn::Mul(hn::Sub(hn::LoadU(d, x + i), vm), vs);
    hn::StoreU(hn::MulAdd(norm, hn::LoadU(d, w + i), hn::LoadU(d, b + i)), d, y + i);
  }
  if (i < n) scalar_model_kernels().layernorm_apply(y + i, x + i, mean, rstd, w + i, b + i, n - i);
}

void LayernormBackward(float* HWY_RESTRICT dx, float* HWY_RESTRICT dw, float* HWY_RESTRICT db,
                       const float* HWY_RESTRICT dout, const float* HWY_RESTRICT x, const float* HWY_RESTRICT w,
                       float mean, float rstd, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const VF vm = hn::Set(d, mean), vs = hn::Set(d, rstd);
  const float inv_n = 1.0f / static_cast<float>(n);
  // means of dnorm = dout * w and of dnorm * norm, norm = (x - mean) * rstd
  const float dnorm_mean =
      RowSum(d, n, [&](std::size_t i) { return hn::Mul(hn::LoadU(d, dout + i), hn::LoadU(d, w + i)); },
             [&](std::size_t i) { return dout[i] * w[i]; }) *
      inv_n;
  const float dnorm_norm_mean =
      RowSum(
          d, n,
          [&](std::size_t i) {
            return hn::Mul(hn::Mul(hn::LoadU(d, dout + i), hn::LoadU(d, w + i)), hn::Sub(hn::LoadU(d, x + i), vm));
          },
          [&](std::size_t i) { return dout[i] * w[i] * (x[i] - mean); }) *
      rstd * inv_n;
  const VF vdm = hn::Set(d, dnorm_mean), vdnm = hn::Set(d, dnorm_norm_mean);
  std::size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF g = hn::LoadU(d, dout + i);
    const VF norm = hn::Mul(hn::Sub(hn::LoadU(d, x + i), vm), vs);
    hn::StoreU(hn::Add(hn::LoadU(d, db + i), g), d, db + i);
    hn::StoreU(hn::MulAdd(norm, g, hn::LoadU(d, dw + i)), d, dw + i);
    // (g * w - dnorm_mean - norm * dnorm_norm_mean) * rstd
    const VF t = hn::NegMulAdd(norm, vdnm, hn::Sub(hn::Mul(g, hn::LoadU(d, w + i)), vdm));
    hn::StoreU(hn::MulAdd(t, vs, hn::LoadU(d, dx + i)), d, dx + i);
  }
  for (; i < n; ++i) {
    const float norm = (x[i] - mean) * rstd;
    db[i] += dout[i];
    dw[i] += norm * dout[i];
    dx[i] += (dout[i] * w[i] - dnorm_mean - norm * dnorm_norm_mean) * rstd;
  }
}

const ModelKernels* Table() {
  static const ModelKernels table{GeluForward,    GeluBackward,   ExpShiftSum,      Max,
                                  LayernormStats, LayernormApply, LayernormBackward};
  return &table;
}

}  // namespace HWY_NAMESPACE
}  // namespace cllm::model::detail
HWY_AFTER_NAMESPACE();
#endif  // HWY_TARGET != HWY_SCALAR

#if HWY_ONCE
namespace cllm::model::detail {

const ModelKernels* simd_model_kernels(kernels::Target t) {
  switch (t) {
#if HWY_TARGETS & HWY_SSE4
    case kernels::Target::sse4: return N_SSE4::Table();
#endif
#if HWY_TARGETS & HWY_AVX2
    case kernels::Target::avx2: return N_AVX2::Table();
#endif
#if HWY_TARGETS & HWY_AVX3
    case kernels::Target::avx512: return N_AVX3::Table();
#endif
    default: return nullptr;
  }
}

}  // namespace cllm::model::detail
#endif  // HWY_ONCE
