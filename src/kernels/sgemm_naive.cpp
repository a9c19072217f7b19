#include "kernels/sgemm.h"

namespace cllm::kernels {
namespace {

float widen(float x) { return x; }
float widen(bf16 x) { return to_float(x); }

template <class T>
void naive_product(const GemmShape& s, const T* a, const T* b, float* c) {
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < s.k; ++p) {
        const float av = widen(s.trans_a ? a[p * s.lda + i] : a[i * s.lda + p]);
        const float bv = widen(s.trans_b ? b[j * s.ldb + p] : b[p * s.ldb + j]);
        acc += static_cast<double>(av) * static_cast<double>(bv);
      }
      float& out = c[i * s.ldc + j];
      // beta == 0 overwrites C without reading it, as BLAS does (C may hold NaN).
      out = static_cast<float>(static_cast<double>(s.alpha) * acc) + (s.beta == 0.0f ? 0.0f : s.beta * out);
    }
  }
}

}  // namespace

void sgemm_naive(const GemmShape& s, const float* a, const float* b, float* c) { naive_product(s, a, b, c); }

void gemm_bf16_naive(const GemmShape& s, const bf16* a, const bf16* b, float* c) { naive_product(s, a, b, c); }

}  // namespace cllm::kernels
