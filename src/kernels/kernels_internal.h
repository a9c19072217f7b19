// Shared between the dispatcher and the per-target implementations only.
#pragma once

#include "kernels/kernels.h"

namespace cllm::kernels::detail {

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
