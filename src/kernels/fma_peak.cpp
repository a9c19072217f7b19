// The FP32 FMA peak of one core, measured: the denominator of MFU.
#include "kernels/fma_peak.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace cllm::kernels {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// FMA throughput: kAccumulators independent chains (enough to cover FMA
// latency x ports on current cores), each step one FMA per lane.
constexpr int kAccumulators = 16;
constexpr long kFmaIterations = 1L << 22;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_loop_avx512(long iterations) {
  __m512 acc[kAccumulators];
#pragma GCC unroll 16
  for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iterations; ++it) {
    // Unrolled so that the accumulators live in registers, not on the stack.
#pragma GCC unroll 16
    for (int i = 0; i < kAccumulators; ++i) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
  }
  __m512 sum = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < kAccumulators; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it
  _mm512_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

// 12 accumulators: AVX2 has 16 registers, two hold the constants.
__attribute__((target("avx2,fma"))) float fma_loop_avx2(long iterations) {
  constexpr int kAvx2Accumulators = 12;
  __m256 acc[kAvx2Accumulators];
#pragma GCC unroll 16
  for (int i = 0; i < kAvx2Accumulators; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kAvx2Accumulators; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
  }
  __m256 sum = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < kAvx2Accumulators; ++i) sum = _mm256_add_ps(sum, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}
#endif

}  // namespace

FmaPeak measure_fma_peak() {
  FmaPeak peak;
  int lanes = 0, chains = 0;
  float (*loop)(long) = nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    peak.isa = "avx512f", lanes = 16, chains = kAccumulators, loop = fma_loop_avx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    peak.isa = "avx2+fma", lanes = 8, chains = 12, loop = fma_loop_avx2;
  }
#endif
  if (loop == nullptr) {
    throw std::runtime_error("measuring the FMA peak needs an x86-64 CPU with AVX2+FMA or AVX-512");
  }
  volatile float sink = loop(kFmaIterations / 16);  // warm-up: clocks up, code in cache
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    sink = sink + loop(kFmaIterations);
    const double flops = 2.0 * lanes * chains * static_cast<double>(kFmaIterations);
    peak.gflops = std::max(peak.gflops, flops / seconds_since(t0) * 1e-9);
  }
  return peak;
}

}  // namespace cllm::kernels
