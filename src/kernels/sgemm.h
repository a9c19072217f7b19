// Single-precision matrix product, row-major, on the calling thread only:
//   C (M x N) = alpha * op(A) (M x K) @ op(B) (K x N) + beta * C
// op(X) is X or X^T. lda/ldb/ldc are row strides in elements of the stored
// (not transposed) matrices. Each worker sphere calls this concurrently on
// its own data, so a backend must never spawn threads of its own.
#pragma once

#include <string_view>

namespace cllm::kernels {

enum class GemmBackend { naive, openblas, onednn };

struct GemmShape {
  bool trans_a = false;
  bool trans_b = false;
  int m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  int lda = 0, ldb = 0, ldc = 0;
};

void sgemm(const GemmShape& s, const float* a, const float* b, float* c);

// The naive triple loop: the reference the tests compare every backend with.
void sgemm_naive(const GemmShape& s, const float* a, const float* b, float* c);

}  // namespace cllm::kernels
