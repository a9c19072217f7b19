#include "kernels/sgemm.h"

#include <vector>

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

void gemm_bf16_rounded_naive(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c) {
  std::vector<float> row(static_cast<std::size_t>(s.n));
  GemmShape one_row = s;
  one_row.m = 1;
  one_row.ldc = s.n;
  for (int i = 0; i < s.m; ++i) {
    naive_product(one_row, s.trans_a ? a + i : a + static_cast<std::size_t>(i) * s.lda, b, row.data());
    for (int j = 0; j < s.n; ++j) c[static_cast<std::size_t>(i) * s.ldc + j] = to_bf16(row[j] + (bias ? bias[j] : 0.0f));
  }
}

}  // namespace cllm::kernels
