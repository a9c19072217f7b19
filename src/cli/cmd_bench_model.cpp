// `cllm bench model`: single-thread forward+backward throughput of the GPT
// configs of issue 4, in tokens/s and GFLOP/s, in each precision, against
// this machine's peaks measured in the same run (MFU = achieved / peak): the
// FP32 FMA peak, and for bf16 the rate of one large oneDNN bf16 matmul.
// A second table breaks each pass down by phase. The measuring is
// bench/model.h's.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/configs.h"
#include "bench/model.h"
#include "cli/commands.h"
#include "kernels/fma_peak.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "model/gpt.h"
#include "model/phase_profile.h"

namespace cllm::cli {
namespace {

std::vector<bench::NamedConfig> select_configs(const std::string& list) {
  std::vector<bench::NamedConfig> out;
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ',')) out.push_back(bench::named_config(name));
  if (out.empty()) throw std::invalid_argument("--configs is empty: expected e.g. tiny,small,medium");
  return out;
}

// Per pass: milliseconds and share of each phase, and the AdamW update.
void print_phase_table(const std::vector<bench::ModelMeasurement>& results) {
  std::printf("\nphases per pass (mean of %d profiled passes after the timed ones), ms (share); AdamW update apart "
              "(median, not in ms/step)\n",
              bench::kProfiledPasses);
  std::printf("%-7s %5s", "config", "prec");
  for (std::size_t p = 0; p < model::kPhases; ++p)
    std::printf(" %16s", std::string(model::phase_name(static_cast<model::Phase>(p))).c_str());
  std::printf(" %10s\n", "adamw");
  for (const bench::ModelMeasurement& r : results) {
    std::printf("%-7s %5s", r.name.c_str(), std::string(model::precision_name(r.precision)).c_str());
    double total = 0;
    for (double t : r.phases) total += t;
    for (double t : r.phases) std::printf(" %8.2f (%4.1f%%)", t * 1e3, 100.0 * t / total);
    std::printf(" %10.2f\n", r.adamw_ms);
  }
}

}  // namespace

void add_bench_model_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("model", "Single-thread GPT forward+backward: tokens/s, GFLOP/s, MFU");
  struct Options {
    bool json = false;
    std::string configs = "tiny,small,medium";
    int steps = 10;
    int warmup = 2;
    std::uint64_t seed = 1;
    std::string precisions = "auto";
  };
  auto opt = std::make_shared<Options>();
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of a table");
  cmd->add_option("--configs", opt->configs, "Comma-separated configs: tiny, small, medium");
  cmd->add_option("--steps", opt->steps, "Timed forward+backward passes per config (median reported)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", opt->warmup, "Untimed passes before them")->check(CLI::Range(0, 1000));
  cmd->add_option("--seed", opt->seed, "Seed of the weights and tokens");
  cmd->add_option("--precision", opt->precisions,
                  "Comma-separated precisions to measure, fp32 and/or bf16; auto: both where the CPU has native bf16")
      ->capture_default_str();
  cmd->callback([opt] {
    const std::vector<bench::NamedConfig> configs = select_configs(opt->configs);
    const std::vector<model::Precision> precisions = bench::select_bench_precisions(opt->precisions);
    const bool any_bf16 = std::find(precisions.begin(), precisions.end(), model::Precision::bf16) != precisions.end();
    const std::string command =
        fmt::format("cllm bench model --configs {} --precision {} --steps {} --warmup {} --seed {}{}", opt->configs,
                    opt->precisions, opt->steps, opt->warmup, opt->seed, opt->json ? " --json" : "");
    const std::string gemm = std::string(kernels::gemm_backend_name(kernels::gemm_backend())) + " (" +
                             kernels::gemm_backend_description(kernels::gemm_backend()) + ")";
    const std::string simd(kernels::target_name(kernels::active().target));
    const char* formula = "6 * (params - wpe) + 12 * layers * dim * seq FLOPs per token (nanoGPT)";
    if (!opt->json) {
      std::printf("command: %s\n", command.c_str());
      std::printf("one thread; sgemm %s; SIMD %s\n", gemm.c_str(), simd.c_str());
    }
    const kernels::FmaPeak peak = kernels::measure_fma_peak();
    const double bf16_peak = any_bf16 ? bench::measure_bf16_peak_gflops() : 0.0;
    if (!opt->json) {
      std::printf("FMA peak: %.1f GFLOP/s per core (%s, best of 5)\n", peak.gflops, peak.isa.c_str());
      if (any_bf16)
        std::printf("bf16 peak: %.1f GFLOP/s per core (1024^3 bf16 matmul, f32 accumulation, %s, best of 5)\n",
                    bf16_peak, kernels::bf16_support().detail.c_str());
      std::printf("forward+backward, median of %d passes after %d warm-up; %s\n", opt->steps, opt->warmup, formula);
      std::printf("MFU: against the FP32 FMA peak; for bf16 rows also against the bf16 peak\n");
      std::printf("%-7s %5s %9s %5s %5s %10s %10s %9s %6s %9s %8s\n", "config", "prec", "params", "batch", "seq",
                  "ms/step", "tokens/s", "GFLOP/s", "MFU", "MFU(bf16)", "loss");
    }
    nlohmann::json rows = nlohmann::json::array();
    std::vector<bench::ModelMeasurement> results;
    for (const bench::NamedConfig& bc : configs) {
      for (const model::Precision precision : precisions) {
        const bench::ModelMeasurement r = bench::measure_model(bc, precision, opt->steps, opt->warmup, opt->seed);
        results.push_back(r);
        const bool bf16 = precision == model::Precision::bf16;
        const double mfu = r.gflops / peak.gflops, mfu_bf16 = bf16 ? r.gflops / bf16_peak : 0.0;
        const std::string name(model::precision_name(precision));
        if (opt->json) {
          nlohmann::json phases = nlohmann::json::object();
          for (std::size_t p = 0; p < model::kPhases; ++p)
            phases[std::string(model::phase_name(static_cast<model::Phase>(p)))] = r.phases[p] * 1e3;
          rows.push_back({{"config", r.name}, {"precision", name}, {"params", r.params}, {"batch", r.batch},
                          {"seq", r.seq}, {"layers", bc.config.layers}, {"dim", bc.config.dim},
                          {"heads", bc.config.heads}, {"flops_per_token", r.flops_per_token},
                          {"ms_per_step", r.ms_per_step}, {"tokens_per_s", r.tokens_per_s}, {"gflops", r.gflops},
                          {"mfu", mfu}, {"mfu_bf16_peak", bf16 ? nlohmann::json(mfu_bf16) : nlohmann::json()},
                          {"phase_ms", phases}, {"adamw_ms", r.adamw_ms}, {"loss", r.loss}});
        } else {
          std::printf("%-7s %5s %9zu %5d %5d %10.2f %10.0f %9.1f %5.1f%% %9s %8.4f\n", r.name.c_str(), name.c_str(),
                      r.params, r.batch, r.seq, r.ms_per_step, r.tokens_per_s, r.gflops, 100.0 * mfu,
                      bf16 ? fmt::format("{:.1f}%", 100.0 * mfu_bf16).c_str() : "-", static_cast<double>(r.loss));
          std::fflush(stdout);
        }
      }
    }
    if (!opt->json) print_phase_table(results);
    if (opt->json) {
      const nlohmann::json out = {{"command", command},
                                  {"threads", 1},
                                  {"sgemm", gemm},
                                  {"simd", simd},
                                  {"flops_formula", formula},
                                  {"fma_peak_gflops", peak.gflops},
                                  {"fma_isa", peak.isa},
                                  {"bf16_peak_gflops", any_bf16 ? nlohmann::json(bf16_peak) : nlohmann::json()},
                                  {"bf16", kernels::bf16_support().detail},
                                  {"rows", rows}};
      std::printf("%s\n", out.dump(2).c_str());
    }
  });
}

}  // namespace cllm::cli
