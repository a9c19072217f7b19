#include <cassert>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/sgemm.h"
#include "kernels/sgemm_backends.h"

namespace cllm::kernels {
namespace {

// The order auto prefers, fastest first. `cllm bench gemm` on the small and
// medium model shapes (forward and both backward products), 1 and 2
// concurrent callers, Zen 4: oneDNN was faster on every row; OpenBLAS
// 0.3.21 uses AVX2 kernels there unless OPENBLAS_CORETYPE=SkylakeX.
constexpr GemmBackend kPreference[] = {GemmBackend::onednn, GemmBackend::openblas, GemmBackend::naive};

[[maybe_unused]] bool well_formed(const GemmShape& s) {
  const int a_cols = s.trans_a ? s.m : s.k;
  const int b_cols = s.trans_b ? s.k : s.n;
  return s.m >= 0 && s.n >= 0 && s.k >= 0 && s.lda >= a_cols && s.ldb >= b_cols && s.ldc >= s.n;
}

#if !CLLM_HAVE_ONEDNN
constexpr const char* kNoOnednnForBf16 = "bf16 products need oneDNN, which this build of cllm was configured without";
#endif

}  // namespace

std::string_view gemm_backend_name(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::naive: return "naive";
    case GemmBackend::openblas: return "openblas";
    case GemmBackend::onednn: return "onednn";
  }
  return "unknown";
}

std::string gemm_backend_description(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::naive: return "triple loop, double accumulator";
#if CLLM_HAVE_OPENBLAS
    case GemmBackend::openblas: return detail::openblas_description();
#endif
#if CLLM_HAVE_ONEDNN
    case GemmBackend::onednn: return detail::onednn_description();
#endif
    default: return "not compiled in";
  }
}

bool gemm_backend_available(GemmBackend backend) {
  switch (backend) {
    case GemmBackend::naive: return true;
    case GemmBackend::openblas: return CLLM_HAVE_OPENBLAS != 0;
    case GemmBackend::onednn: return CLLM_HAVE_ONEDNN != 0;
  }
  return false;
}

std::vector<GemmBackend> available_gemm_backends() {
  std::vector<GemmBackend> out;
  for (GemmBackend b : kPreference) {
    if (gemm_backend_available(b)) out.push_back(b);
  }
  return out;
}

GemmBackend parse_gemm_backend(std::string_view text, std::string_view what) {
  if (text == "auto") return available_gemm_backends().front();
  for (GemmBackend b : kPreference) {
    if (text != gemm_backend_name(b)) continue;
    if (!gemm_backend_available(b)) {
      throw std::invalid_argument(std::string(what) + "=" + std::string(text) +
                                  ": this build of cllm has no such sgemm backend (its library was not found at "
                                  "configure time)");
    }
    return b;
  }
  throw std::invalid_argument(std::string(what) + "='" + std::string(text) +
                              "' is not a sgemm backend: expected auto, onednn, openblas or naive");
}

GemmBackend gemm_backend() {
  static const GemmBackend chosen = [] {
    const char* env = std::getenv("CLLM_GEMM");
    return parse_gemm_backend(env != nullptr && *env != '\0' ? env : "auto");
  }();
  return chosen;
}

void sgemm(GemmBackend backend, const GemmShape& s, const float* a, const float* b, float* c) {
  assert(well_formed(s));
  if (s.m == 0 || s.n == 0) return;
  // k == 0 only scales C; the BLAS libraries disagree on lda checks there.
  if (s.k == 0 || backend == GemmBackend::naive) return sgemm_naive(s, a, b, c);
  switch (backend) {
#if CLLM_HAVE_ONEDNN
    case GemmBackend::onednn: return detail::sgemm_onednn(s, a, b, c);
#endif
#if CLLM_HAVE_OPENBLAS
    case GemmBackend::openblas: return detail::sgemm_openblas(s, a, b, c);
#endif
    default:
      throw std::invalid_argument("sgemm: backend '" + std::string(gemm_backend_name(backend)) +
                                  "' is not compiled into this build");
  }
}

void sgemm(const GemmShape& s, const float* a, const float* b, float* c) { sgemm(gemm_backend(), s, a, b, c); }

void gemm_bf16(const GemmShape& s, const bf16* a, const bf16* b, float* c) {
  assert(well_formed(s));
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) return gemm_bf16_naive(s, a, b, c);
#if CLLM_HAVE_ONEDNN
  detail::gemm_bf16_onednn(s, a, b, c);
#else
  throw std::invalid_argument(kNoOnednnForBf16);
#endif
}

void gemm_bf16_rounded(const GemmShape& s, const bf16* a, const bf16* b, const float* bias, bf16* c) {
  assert(well_formed(s));
  if (s.alpha != 1.0f || s.beta != 0.0f)
    throw std::invalid_argument("gemm_bf16_rounded: alpha = " + std::to_string(s.alpha) + ", beta = " +
                                std::to_string(s.beta) + ", expected 1 and 0");
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) return gemm_bf16_rounded_naive(s, a, b, bias, c);
#if CLLM_HAVE_ONEDNN
  detail::gemm_bf16_rounded_onednn(s, a, b, bias, c);
#else
  throw std::invalid_argument(kNoOnednnForBf16);
#endif
}

bool lock_free_products_available() {
#if CLLM_HAVE_ONEDNN
  static const bool available = detail::onednn_has_brgemm();
  return available;
#else
  return false;
#endif
}

Bf16Support bf16_support() {
#if CLLM_HAVE_ONEDNN
  static const Bf16Support support = detail::onednn_bf16_support();
  return support;
#else
  return {false, "this build of cllm has no oneDNN (libdnnl-dev), which runs its bf16 products"};
#endif
}

}  // namespace cllm::kernels
