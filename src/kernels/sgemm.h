// Single-precision matrix product, row-major, on the calling thread only:
//   C (M x N) = alpha * op(A) (M x K) @ op(B) (K x N) + beta * C
// op(X) is X or X^T. lda/ldb/ldc are row strides in elements of the stored
// (not transposed) matrices. Each worker sphere calls this concurrently on
// its own data, so a backend must never spawn threads of its own.
//
// Backends: naive (the oracle), openblas (cblas_sgemm, one thread) and onednn
// (dnnl_sgemm, and brgemm matmul primitives, which take no lock, for the
// products marked lock_free and those of the form A B^T with 16+ rows; one
// OpenMP thread per caller; see sgemm_onednn.cpp). The environment variable
// CLLM_GEMM=auto|onednn|openblas|naive picks the one sgemm() uses, once per
// process; auto is the backend measured fastest in the per-worker setting.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kernels/bf16.h"

namespace cllm::kernels {

enum class GemmBackend { naive, openblas, onednn };

struct GemmShape {
  bool trans_a = false;
  bool trans_b = false;
  int m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  int lda = 0, ldb = 0, ldc = 0;
  // Set where a step makes very many small products (attention's, per head
  // and row block): a backend whose calls take a lock (oneDNN's dnnl_sgemm)
  // runs these on a path without one. The product is the same up to rounding.
  bool lock_free = false;
};

// With the backend chosen by CLLM_GEMM (see gemm_backend()).
void sgemm(const GemmShape& s, const float* a, const float* b, float* c);

// With one given backend; throws std::invalid_argument if it is not compiled in.
void sgemm(GemmBackend backend, const GemmShape& s, const float* a, const float* b, float* c);

// The naive triple loop: the reference the tests compare every backend with.
void sgemm_naive(const GemmShape& s, const float* a, const float* b, float* c);

// The backend sgemm() uses: CLLM_GEMM resolved on first use. A value other
// than auto|onednn|openblas|naive, or a backend not compiled in, throws
// std::invalid_argument naming CLLM_GEMM and the accepted values.
GemmBackend gemm_backend();

// "auto" -> the preferred compiled-in backend; "onednn"/"openblas"/"naive" ->
// that backend. `what` names the source of the text in the error message.
GemmBackend parse_gemm_backend(std::string_view text, std::string_view what = "CLLM_GEMM");

// Mixed precision: C (f32) = alpha * op(A) @ op(B) + beta * C with bf16
// operands and f32 accumulation, on the calling thread, through oneDNN matmul
// primitives (one per shape, shared by all threads, no lock once made): AMX
// or AVX512_BF16 kernels where the CPU has them, whatever CLLM_GEMM says.
// Throws std::invalid_argument when this build has no oneDNN.
void gemm_bf16(const GemmShape& s, const bf16* a, const bf16* b, float* c);
// The oracle: the operands widened to float, then sgemm_naive's loop.
void gemm_bf16_naive(const GemmShape& s, const bf16* a, const bf16* b, float* c);
// For a layer whose output only feeds products (qkv, c_fc): C (bf16) =
// op(A) @ op(B) + bias, the bias (n floats, or null) added to the f32
// accumulators and the sum rounded to bf16 (nearest even) once, inside the
// kernel, so no f32 C is written and read back. alpha must be 1 and beta 0
// (std::invalid_argument otherwise, or without oneDNN).
void gemm_bf16_rounded(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c);
// The oracle: gemm_bf16_naive's sum plus the bias, rounded.
void gemm_bf16_rounded_naive(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c);

// Whether the CPU multiplies bf16 natively, as oneDNN sees it (its
// ONEDNN_MAX_CPU_ISA limit included, which is how tests simulate a CPU
// without): AMX-BF16 or AVX512_BF16.
struct Bf16Support {
  bool native = false;
  std::string detail;  // e.g. "AVX512_BF16 (oneDNN avx512_core_bf16 kernels)", or why not
};
Bf16Support bf16_support();

// Whether products marked lock_free run without taking a lock on this CPU:
// oneDNN's brgemm matmul kernels (AVX-512 and up in oneDNN 2.6). Elsewhere
// they run on dnnl_sgemm, which takes its mutex on every call.
bool lock_free_products_available();

std::string_view gemm_backend_name(GemmBackend backend);
// The library's version and the CPU kernels it picked, e.g. for `cllm bench gemm`.
std::string gemm_backend_description(GemmBackend backend);
bool gemm_backend_available(GemmBackend backend);
std::vector<GemmBackend> available_gemm_backends();

}  // namespace cllm::kernels
