// The BLAS backends behind sgemm(); each is compiled only when its library
// was found (CLLM_HAVE_ONEDNN / CLLM_HAVE_OPENBLAS). Same contract as sgemm():
// a well-formed shape with m, n, k > 0, computed on the calling thread only.
#pragma once

#include <string>

#include "kernels/sgemm.h"

namespace cllm::kernels::detail {

void sgemm_onednn(const GemmShape& s, const float* a, const float* b, float* c);
void sgemm_openblas(const GemmShape& s, const float* a, const float* b, float* c);
void gemm_bf16_onednn(const GemmShape& s, const bf16* a, const bf16* b, float* c);
void gemm_bf16_rounded_onednn(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c);
Bf16Support onednn_bf16_support();
bool onednn_has_brgemm();  // an f32 matmul of a lock-free shape gets a brgemm kernel
std::string onednn_description();
std::string openblas_description();

}  // namespace cllm::kernels::detail
