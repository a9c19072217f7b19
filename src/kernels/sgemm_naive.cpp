#include "kernels/sgemm.h"

namespace cllm::kernels {

void sgemm_naive(const GemmShape& s, const float* a, const float* b, float* c) {
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < s.k; ++p) {
        const float av = s.trans_a ? a[p * s.lda + i] : a[i * s.lda + p];
        const float bv = s.trans_b ? b[j * s.ldb + p] : b[p * s.ldb + j];
        acc += static_cast<double>(av) * static_cast<double>(bv);
      }
      float& out = c[i * s.ldc + j];
      // beta == 0 overwrites C without reading it, as BLAS does (C may hold NaN).
      out = static_cast<float>(static_cast<double>(s.alpha) * acc) + (s.beta == 0.0f ? 0.0f : s.beta * out);
    }
  }
}

}  // namespace cllm::kernels
