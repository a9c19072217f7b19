// Shared between the dispatcher and the per-target implementations only.
#pragma once

#include "kernels/kernels.h"

namespace cllm::kernels::detail {

// The float constants of one AdamW step, derived in double as torch does
// (see AdamWParams). Throws std::invalid_argument if hp.step < 1.
struct AdamWConstants {
  float decay;             // 1 - lr * weight_decay
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float eps;
  float neg_step_size;     // -lr / bc1
  float sqrt_bc2;          // sqrt(bc2)
  float grad_scale;
};
AdamWConstants adamw_constants(const AdamWParams& hp);

// Plain loops, compiled without auto-vectorization: the fallback target and
// the oracle that every other target is tested against.
const KernelTable& scalar_table();

#if CLLM_HAVE_HWY
// Highway-compiled table for a SIMD target, or nullptr when that target was
// not compiled into this binary.
const KernelTable* simd_table(Target t);
// CPUID + XCR0 check through Highway's target detection.
bool simd_cpu_supports(Target t);
#endif

}  // namespace cllm::kernels::detail
