// OpenBLAS backend. Debian's default libopenblas is the pthread build, whose
// thread count is one process-wide setting: it is set to 1 once, so every
// caller computes on its own thread and none waits for OpenBLAS's pool.
#include <cblas.h>

#include <mutex>

#include "kernels/sgemm_backends.h"

namespace cllm::kernels::detail {

void sgemm_openblas(const GemmShape& s, const float* a, const float* b, float* c) {
  static std::once_flag single_threaded;
  std::call_once(single_threaded, [] { openblas_set_num_threads(1); });
  cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, s.m, s.n,
              s.k, s.alpha, a, s.lda, b, s.ldb, s.beta, c, s.ldc);
}

}  // namespace cllm::kernels::detail
