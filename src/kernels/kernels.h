// Gradient and optimizer kernels over float arrays, dispatched at run time.
//
// One table of function pointers per compiled target (scalar always; SSE4,
// AVX2 and AVX-512 when built with CLLM_SIMD_DISPATCH). active() picks the
// best target the CPU and OS support, or the one named by the environment
// variable CLLM_SIMD=auto|scalar|sse4|avx2|avx512. No SIMD types appear here.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/bf16.h"

namespace cllm::kernels {

enum class Target { scalar, sse4, avx2, avx512 };

std::string_view target_name(Target t);
// Parses "scalar", "sse4", "avx2", "avx512"; throws std::invalid_argument.
Target parse_target(std::string_view name);

// One AdamW step (torch.optim.AdamW semantics, PyTorch 1.13 order of
// operations) for a range of parameters. Hyperparameters are doubles, as the
// Python floats torch receives; the derived per-step constants are computed
// in double and rounded to float once, as torch does:
//   g' = g * grad_scale                 (clipping factor, 1 if none)
//   p  = p * (1 - lr * weight_decay)    (decoupled decay)
//   m  = m * beta1 + (1 - beta1) * g'
//   v  = v * beta2 + (1 - beta2) * g' * g'
//   p  = p - lr / bc1 * (m / (sqrt(v) / sqrt(bc2) + eps))
// with bc1 = 1 - beta1^step, bc2 = 1 - beta2^step, step counted from 1.
struct AdamWParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // This update's step number, 1 for the first; must be >= 1.
  long step = 1;
  float grad_scale = 1.0f;
};

// add_n writes at least this many bytes of dst with streaming
// (non-temporal) stores: a dst this large would not stay in cache for the
// next kernel anyway.
inline constexpr std::size_t kAddNStreamBytes = std::size_t{16} << 20;

struct KernelTable {
  Target target;
  // dst[i] = 0
  void (*zero)(float* dst, std::size_t n);
  // dst[i] = src[i]
  void (*copy)(float* dst, const float* src, std::size_t n);
  // dst[i] += src[i]
  void (*add)(float* dst, const float* src, std::size_t n);
  // For i in [offset, offset + count):
  //   dst[i] (= or +=) srcs[0][i] + ... + srcs[n_src - 1][i]
  // (+= when accumulate). Sources are summed in order 0..n_src-1, so the
  // dst values are the same bit for bit on every target. Returns the sum of squares of the dst values
  // written, so a reduction pass also yields the gradient norm.
  // n_src may be 0 (dst is zeroed, or left as is when accumulating).
  // Non-accumulating calls over kAddNStreamBytes of dst or more write dst
  // with streaming stores that bypass the cache.
  double (*add_n)(float* dst, const float* const* srcs, std::size_t n_src,
                  std::size_t offset, std::size_t count, bool accumulate);
  // dst[i] *= a
  void (*scale)(float* dst, float a, std::size_t n);
  // dst[i] += a * x[i] (SIMD targets fuse the multiply-add)
  void (*axpy)(float* dst, float a, const float* x, std::size_t n);
  // sum a[i] * b[i], accumulated in double lanes
  double (*dot)(const float* a, const float* b, std::size_t n);
  // sum x[i]^2, accumulated in double lanes
  double (*sum_squares)(const float* x, std::size_t n);
  // AdamW update of p, m, v from gradient g (see AdamWParams). Throws
  // std::invalid_argument if hp.step < 1.
  void (*adamw)(float* p, const float* g, float* m, float* v, std::size_t n,
                const AdamWParams& hp);
  // dst[i] = to_bf16(src[i]) (round to nearest even), the same bits on every target
  void (*to_bf16)(bf16* dst, const float* src, std::size_t n);
  // dst[i] = to_float(src[i]) (exact)
  void (*from_bf16)(float* dst, const bf16* src, std::size_t n);
};

// Targets compiled into this binary, best last (scalar is always first).
std::span<const Target> compiled_targets();
// Whether this CPU and OS can run the target (CPUID and XCR0).
bool cpu_supports(Target t);
// Compiled targets the CPU supports, best last.
std::vector<Target> usable_targets();
// The table of one target; throws std::runtime_error if it is not compiled
// in or the CPU lacks it.
const KernelTable& table_for(Target t);
// The table in use: chosen once, from CLLM_SIMD (default auto = best usable).
// Throws std::runtime_error if CLLM_SIMD names a target that is unavailable.
const KernelTable& active();
// Same choice as active(), from an explicit CLLM_SIMD-style value.
Target choose_target(std::string_view simd_env);
// Human-readable CPU feature list, e.g. "sse4.2 avx avx2 fma avx512f ...".
std::string cpu_features();

}  // namespace cllm::kernels
