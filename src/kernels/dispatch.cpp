// Chooses the kernel table once per process: CLLM_SIMD, else the best target
// that is both compiled in and supported by this CPU and OS.
#include <array>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/kernels_internal.h"

namespace cllm::kernels {
namespace {

#if CLLM_HAVE_HWY
constexpr std::array kCompiled{Target::scalar, Target::sse4, Target::avx2, Target::avx512};
#else
constexpr std::array kCompiled{Target::scalar};
#endif

bool compiled(Target t) {
  for (Target c : kCompiled)
    if (c == t) return true;
  return false;
}

}  // namespace

std::string_view target_name(Target t) {
  switch (t) {
    case Target::scalar: return "scalar";
    case Target::sse4: return "sse4";
    case Target::avx2: return "avx2";
    case Target::avx512: return "avx512";
  }
  return "unknown";
}

Target parse_target(std::string_view name) {
  for (Target t : {Target::scalar, Target::sse4, Target::avx2, Target::avx512})
    if (name == target_name(t)) return t;
  throw std::invalid_argument("unknown SIMD target '" + std::string(name) +
                              "' (expected auto, scalar, sse4, avx2 or avx512)");
}

std::span<const Target> compiled_targets() { return kCompiled; }

bool cpu_supports(Target t) {
  if (t == Target::scalar) return true;
#if CLLM_HAVE_HWY
  return detail::simd_cpu_supports(t);
#else
  return false;
#endif
}

std::vector<Target> usable_targets() {
  std::vector<Target> out;
  for (Target t : kCompiled)
    if (cpu_supports(t)) out.push_back(t);
  return out;
}

const KernelTable& table_for(Target t) {
  if (!compiled(t))
    throw std::runtime_error("SIMD target '" + std::string(target_name(t)) +
                             "' is not compiled into this build (built with CLLM_SIMD_DISPATCH=OFF?)");
  if (!cpu_supports(t))
    throw std::runtime_error("SIMD target '" + std::string(target_name(t)) +
                             "' is not supported by this CPU (features: " + cpu_features() + ")");
  if (t == Target::scalar) return detail::scalar_table();
#if CLLM_HAVE_HWY
  if (const KernelTable* table = detail::simd_table(t)) return *table;
#endif
  throw std::runtime_error("SIMD target '" + std::string(target_name(t)) + "' has no kernel table");
}

Target choose_target(std::string_view simd_env) {
  if (simd_env.empty() || simd_env == "auto") return usable_targets().back();
  return parse_target(simd_env);
}

const KernelTable& active() {
  static const KernelTable& table = []() -> const KernelTable& {
    const char* env = std::getenv("CLLM_SIMD");
    try {
      return table_for(choose_target(env ? env : ""));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("CLLM_SIMD: ") + e.what());
    }
  }();
  return table;
}

std::string cpu_features() {
  std::string out;
  auto add = [&out](bool has, const char* name) {
    if (!has) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // libgcc checks XCR0 too, so AVX/AVX-512 are listed only if the OS saves
  // their registers.
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512dq"), "avx512dq");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
  add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
#endif
  return out.empty() ? std::string("(none detected)") : out;
}

}  // namespace cllm::kernels
