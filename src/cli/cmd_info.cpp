// `cllm info`: what this build and this CPU offer, and what would be used.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "model/gpt.h"

namespace cllm::cli {

void add_info_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Print CPU features, SIMD targets and sgemm backends, and the ones chosen");
  cmd->callback([] {
    namespace k = cllm::kernels;
    std::printf("cllm 0.1.0\n");
    std::printf("hardware threads : %u\n", std::thread::hardware_concurrency());
    std::printf("cpu features     : %s\n", k::cpu_features().c_str());
    std::string compiled, usable;
    for (k::Target t : k::compiled_targets()) compiled += std::string(k::target_name(t)) + " ";
    for (k::Target t : k::usable_targets()) usable += std::string(k::target_name(t)) + " ";
    std::printf("compiled targets : %s\n", compiled.c_str());
    std::printf("usable targets   : %s\n", usable.c_str());
    const char* env = std::getenv("CLLM_SIMD");
    std::printf("CLLM_SIMD        : %s\n", env ? env : "(unset, auto)");
    std::printf("chosen target    : %s\n", std::string(k::target_name(k::active().target)).c_str());
    std::string backends;
    for (k::GemmBackend b : k::available_gemm_backends()) backends += std::string(k::gemm_backend_name(b)) + " ";
    std::printf("sgemm backends   : %s\n", backends.c_str());
    const char* gemm_env = std::getenv("CLLM_GEMM");
    std::printf("CLLM_GEMM        : %s\n", gemm_env ? gemm_env : "(unset, auto)");
    const k::GemmBackend gemm = k::gemm_backend();
    std::printf("chosen sgemm     : %s (%s)\n", std::string(k::gemm_backend_name(gemm)).c_str(),
                k::gemm_backend_description(gemm).c_str());
    const model::PrecisionChoice precision = model::choose_precision("auto");
    std::printf("precision auto   : %s (%s)\n", std::string(model::precision_name(precision.precision)).c_str(),
                precision.why.c_str());
  });
}

}  // namespace cllm::cli
