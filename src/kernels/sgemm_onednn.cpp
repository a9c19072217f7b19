// oneDNN backend. Debian's libdnnl is built with OpenMP: dnnl_sgemm called
// from a plain thread would start an OpenMP team of omp_get_max_threads()
// threads per caller, oversubscribing the cores the other workers use. The
// OpenMP thread count is a per-thread setting (nthreads-var ICV), so each
// calling thread sets it to 1 once before its first product.
#include <omp.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <stdexcept>
#include <string>

#include "kernels/sgemm_backends.h"

namespace cllm::kernels::detail {

void sgemm_onednn(const GemmShape& s, const float* a, const float* b, float* c) {
  thread_local bool single_threaded = false;
  if (!single_threaded) {
    omp_set_num_threads(1);
    single_threaded = true;
  }
  const dnnl_status_t status = dnnl_sgemm(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.m, s.n, s.k, s.alpha, a,
                                          s.lda, b, s.ldb, s.beta, c, s.ldc);
  if (status != dnnl_success) {
    throw std::runtime_error("sgemm (onednn): dnnl_sgemm failed with status " + std::to_string(status) + " for m=" +
                             std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k));
  }
}

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         ", kernels for " + dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
}

}  // namespace cllm::kernels::detail
