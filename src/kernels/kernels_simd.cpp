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
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <cmath>
#include <cstdint>

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

// Calls body(i) for every whole vector starting at i (i = 0, N, 2N, ...),
// kUnroll vectors per loop iteration so that independent loads and stores
// overlap. Returns the index where the scalar tail starts.
template <std::size_t kUnroll, class Body>
HWY_INLINE std::size_t ForEachVector(std::size_t n, const Body& body) {
  const std::size_t N = hn::Lanes(DF());
  std::size_t i = 0;
  for (; i + kUnroll * N <= n; i += kUnroll * N) {
HWY_UNROLL(16)
    for (std::size_t u = 0; u < kUnroll; ++u) body(i + u * N);
  }
  for (; i + N <= n; i += N) body(i);
  return i;
}

// Sums of products in double lanes. The low and high halves of each float
// vector go to separate accumulators so that the FMAs do not wait on each
// other.
struct WideSum {
  VD lo, hi;

  HWY_INLINE WideSum() : lo(hn::Zero(DD())), hi(hn::Zero(DD())) {}

  HWY_INLINE void AddProducts(VF a, VF b) {
    const DD dd;
    const hn::Half<DF> dh;
    lo = hn::MulAdd(hn::PromoteTo(dd, hn::LowerHalf(dh, a)), hn::PromoteTo(dd, hn::LowerHalf(dh, b)), lo);
    hi = hn::MulAdd(hn::PromoteTo(dd, hn::UpperHalf(dh, a)), hn::PromoteTo(dd, hn::UpperHalf(dh, b)), hi);
  }
  HWY_INLINE double Total() const { return hn::GetLane(hn::SumOfLanes(DD(), hn::Add(lo, hi))); }
};

// The tails (n mod vector length, or less than one unrolled vector) go to
// the scalar kernels, which compute the same per-element expression.
const KernelTable& Tail() { return scalar_table(); }

void Zero(float* HWY_RESTRICT dst, std::size_t n) {
  const DF d;
  const std::size_t i = ForEachVector<4>(n, [&](std::size_t j) { hn::StoreU(hn::Zero(d), d, dst + j); });
  Tail().zero(dst + i, n - i);
}

void Copy(float* HWY_RESTRICT dst, const float* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const std::size_t i =
      ForEachVector<4>(n, [&](std::size_t j) { hn::StoreU(hn::LoadU(d, src + j), d, dst + j); });
  Tail().copy(dst + i, src + i, n - i);
}

void Add(float* HWY_RESTRICT dst, const float* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const std::size_t i = ForEachVector<4>(n, [&](std::size_t j) {
    hn::StoreU(hn::Add(hn::LoadU(d, dst + j), hn::LoadU(d, src + j)), d, dst + j);
  });
  Tail().add(dst + i, src + i, n - i);
}

// add_n reads kAddNUnroll vectors (4 cache lines with AVX-512) of every
// source per pass: every source stream is read once, the partial sums stay
// in registers, dst is written once. 4 measured better than 2 or 8.
constexpr std::size_t kAddNUnroll = 4;

// One pass of add_n over [i, i + kAddNUnroll * N): sums the sources into
// registers in the scalar kernel's order (so dst matches it bit for bit),
// stores or streams them to out, and adds their squares to sumsq.
template <bool kStream>
HWY_INLINE void AddNBlock(float* HWY_RESTRICT out, const float* const* srcs, std::size_t n_src, std::size_t offset,
                          std::size_t i, bool accumulate, WideSum& sumsq) {
  constexpr std::size_t kUnroll = kAddNUnroll;
  const DF d;
  const std::size_t N = hn::Lanes(d);
  VF acc[kUnroll];
  HWY_UNROLL(16)
  for (std::size_t u = 0; u < kUnroll; ++u) acc[u] = accumulate ? hn::LoadU(d, out + i + u * N) : hn::Zero(d);
  for (std::size_t k = 0; k < n_src; ++k) {
    const float* s = srcs[k] + offset + i;
    HWY_UNROLL(16)
    for (std::size_t u = 0; u < kUnroll; ++u) acc[u] = hn::Add(acc[u], hn::LoadU(d, s + u * N));
  }
  HWY_UNROLL(16)
  for (std::size_t u = 0; u < kUnroll; ++u) {
    if constexpr (kStream) {
      hn::Stream(acc[u], d, out + i + u * N);
    } else {
      hn::StoreU(acc[u], d, out + i + u * N);
    }
    sumsq.AddProducts(acc[u], acc[u]);
  }
}

double AddN(float* HWY_RESTRICT dst, const float* const* srcs, std::size_t n_src, std::size_t offset,
            std::size_t count, bool accumulate) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const std::size_t block = kAddNUnroll * N;
  float* out = dst + offset;
  WideSum sumsq;
  double head_sumsq = 0.0;
  std::size_t i = 0;
  if (!accumulate && count * sizeof(float) >= kAddNStreamBytes) {
    // Skipping the read-for-ownership of dst measured about 10% faster with
    // 12 sources of 100 MB. Scalar head up to a vector boundary, where the
    // streaming stores start.
    const std::size_t misalign = reinterpret_cast<std::uintptr_t>(out) % (N * sizeof(float));
    i = misalign == 0 ? 0 : (N * sizeof(float) - misalign) / sizeof(float);
    head_sumsq = Tail().add_n(dst, srcs, n_src, offset, i, accumulate);
    for (; i + block <= count; i += block) AddNBlock<true>(out, srcs, n_src, offset, i, accumulate, sumsq);
    hwy::FlushStream();  // order the streamed stores before later loads/stores
  }
  for (; i + block <= count; i += block) AddNBlock<false>(out, srcs, n_src, offset, i, accumulate, sumsq);
  return head_sumsq + sumsq.Total() + Tail().add_n(dst, srcs, n_src, offset + i, count - i, accumulate);
}

void Scale(float* HWY_RESTRICT dst, float a, std::size_t n) {
  const DF d;
  const VF va = hn::Set(d, a);
  const std::size_t i =
      ForEachVector<4>(n, [&](std::size_t j) { hn::StoreU(hn::Mul(hn::LoadU(d, dst + j), va), d, dst + j); });
  Tail().scale(dst + i, a, n - i);
}

void Axpy(float* HWY_RESTRICT dst, float a, const float* HWY_RESTRICT x, std::size_t n) {
  const DF d;
  const VF va = hn::Set(d, a);
  const std::size_t i = ForEachVector<4>(n, [&](std::size_t j) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + j), hn::LoadU(d, dst + j)), d, dst + j);
  });
  Tail().axpy(dst + i, a, x + i, n - i);
}

double Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, std::size_t n) {
  const DF d;
  WideSum s0, s1;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0.AddProducts(hn::LoadU(d, a + i), hn::LoadU(d, b + i));
    s1.AddProducts(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N));
  }
  return s0.Total() + s1.Total() + Tail().dot(a + i, b + i, n - i);
}

double SumSquares(const float* HWY_RESTRICT x, std::size_t n) { return Dot(x, x, n); }

void AdamW(float* HWY_RESTRICT p, const float* HWY_RESTRICT g, float* HWY_RESTRICT m,
           float* HWY_RESTRICT v, std::size_t n, const AdamWParams& hp) {
  const DF d;
  const AdamWConstants c = adamw_constants(hp);
  const VF grad_scale = hn::Set(d, c.grad_scale), beta1 = hn::Set(d, c.beta1),
           one_minus_beta1 = hn::Set(d, c.one_minus_beta1), beta2 = hn::Set(d, c.beta2),
           one_minus_beta2 = hn::Set(d, c.one_minus_beta2), eps = hn::Set(d, c.eps),
           decay = hn::Set(d, c.decay), neg_step_size = hn::Set(d, c.neg_step_size),
           sqrt_bc2 = hn::Set(d, c.sqrt_bc2);
  // Unfused multiplies and adds in the scalar kernel's (and torch's) order.
  const std::size_t i = ForEachVector<1>(n, [&](std::size_t j) {
    const VF grad = hn::Mul(hn::LoadU(d, g + j), grad_scale);
    const VF mj = hn::Add(hn::Mul(hn::LoadU(d, m + j), beta1), hn::Mul(one_minus_beta1, grad));
    const VF vj = hn::Add(hn::Mul(hn::LoadU(d, v + j), beta2), hn::Mul(hn::Mul(one_minus_beta2, grad), grad));
    const VF denom = hn::Add(hn::Div(hn::Sqrt(vj), sqrt_bc2), eps);
    const VF pj = hn::Add(hn::Mul(hn::LoadU(d, p + j), decay), hn::Mul(neg_step_size, hn::Div(mj, denom)));
    hn::StoreU(mj, d, m + j);
    hn::StoreU(vj, d, v + j);
    hn::StoreU(pj, d, p + j);
  });
  Tail().adamw(p + i, g + i, m + i, v + i, n - i, hp);
}

// Round to nearest even on the bits (Highway 1.0's float -> bf16 demotion
// truncates): add 0x7fff plus the lowest kept bit, keep the top half; NaNs
// are made quiet instead, so that rounding cannot carry them to infinity.
void ToBf16(bf16* HWY_RESTRICT dst, const float* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<std::uint16_t, DF> d16;
  auto* out = reinterpret_cast<std::uint16_t*>(dst);
  const auto round_bias = hn::Set(du, 0x7fffu), one = hn::Set(du, 1u), quiet = hn::Set(du, 0x400000u);
  const std::size_t i = ForEachVector<2>(n, [&](std::size_t j) {
    const VF f = hn::LoadU(d, src + j);
    const auto u = hn::BitCast(du, f);
    const auto rounded = hn::Add(u, hn::Add(round_bias, hn::And(hn::ShiftRight<16>(u), one)));
    const auto bits = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(f)), hn::Or(u, quiet), rounded);
    // The top halves fit in 16 bits: the saturating demotion keeps them as they are.
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(di, hn::ShiftRight<16>(bits))), d16, out + j);
  });
  Tail().to_bf16(dst + i, src + i, n - i);
}

void FromBf16(float* HWY_RESTRICT dst, const bf16* HWY_RESTRICT src, std::size_t n) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<std::uint16_t, DF> d16;
  const auto* in = reinterpret_cast<const std::uint16_t*>(src);
  const std::size_t i = ForEachVector<2>(n, [&](std::size_t j) {
    hn::StoreU(hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, in + j)))), d, dst + j);
  });
  Tail().from_bf16(dst + i, src + i, n - i);
}

const KernelTable* Table(Target t) {
  static const KernelTable table{t, Zero, Copy, Add, AddN, Scale, Axpy, Dot, SumSquares, AdamW, ToBf16, FromBf16};
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
