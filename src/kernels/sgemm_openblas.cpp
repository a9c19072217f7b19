// OpenBLAS backend. Debian's default libopenblas is the pthread build, whose
// thread count is one process-wide setting: it is set to 1 once, so every
// caller computes on its own thread and none waits for OpenBLAS's pool.
// OpenBLAS 0.3.21 does not know Zen 4 and picks its AVX2 "Haswell" kernels
// there; OPENBLAS_CORETYPE=SkylakeX in the environment (read when the library
// loads) selects the AVX-512 ones.
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

std::string openblas_description() {
  return std::string(openblas_get_config()) + ", kernels for " + openblas_get_corename();
}

}  // namespace cllm::kernels::detail
