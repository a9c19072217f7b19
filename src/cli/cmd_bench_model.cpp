// `cllm bench model`: single-thread forward+backward throughput of the GPT
// configs of issue 4, in tokens/s and GFLOP/s, in each precision, against
// this machine's peaks measured in the same run (MFU = achieved / peak): the
// FP32 FMA peak, and for bf16 the rate of one large oneDNN bf16 matmul.
// A second table breaks each pass down by phase (model/phase_profile.h),
// with the AdamW update (bf16 copy included) timed apart from the pass.
//
// FLOPs per token, as nanoGPT's estimate_mfu: 6 * N + 12 * L * d * T, where
// N is the parameter count without the position embeddings (wte counts once,
// it is also the LM head), L layers, d = dim, T = sequence length: 6N for
// the forward+backward matrix products, 12LdT for attention's QK^T and AV.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/bench_configs.h"
#include "cli/commands.h"
#include "kernels/fma_peak.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "model/gpt.h"
#include "model/phase_profile.h"
#include "optim/adamw.h"

namespace cllm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<NamedConfig> select_configs(const std::string& list) {
  std::vector<NamedConfig> out;
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ',')) out.push_back(named_config(name));
  if (out.empty()) throw std::invalid_argument("--configs is empty: expected e.g. tiny,small,medium");
  return out;
}

// The bf16 matrix units' rate on one core: the best of 5 runs of a
// 1024 x 1024 x 1024 bf16 product (f32 accumulation) after a warm-up.
double measure_bf16_peak_gflops() {
  constexpr int kN = 1024;
  std::vector<kernels::bf16> a(kN * kN, kernels::to_bf16(0.5f)), b(kN * kN, kernels::to_bf16(0.25f));
  std::vector<float> c(kN * kN);
  const kernels::GemmShape s{.m = kN, .n = kN, .k = kN, .lda = kN, .ldb = kN, .ldc = kN};
  kernels::gemm_bf16(s, a.data(), b.data(), c.data());
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    kernels::gemm_bf16(s, a.data(), b.data(), c.data());
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * kN * kN * kN / best * 1e-9;
}

struct Result {
  std::string name;
  model::Precision precision = model::Precision::fp32;
  model::PhaseSeconds phases{};  // per pass, mean over the timed passes
  double adamw_ms = 0;           // one AdamW update (with the bf16 copy in bf16), median
  std::size_t params = 0, flops_per_token = 0;
  int batch = 0, seq = 0;
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0;
  float loss = 0;
};

constexpr int kProfiledPasses = 3;

// Median over `steps` timed forward+backward passes after `warmup` untimed
// ones, then the phases of up to kProfiledPasses more.
Result run_config(const NamedConfig& bc, model::Precision precision, int steps, int warmup, std::uint64_t seed) {
  const model::Config& c = bc.config;
  const model::ParamLayout layout(c);
  std::vector<float> params(layout.total()), grad(layout.total());
  model::init_params(layout, params.data(), seed);
  std::vector<kernels::bf16> params_bf16 = model::bf16_copy(params, precision);
  optim::AdamW adamw(layout.total(), {});
  if (!params_bf16.empty()) adamw.set_bf16_copy(params_bf16.data());
  const model::Weights weights(params.data(), params_bf16);
  const int B = bc.batch, T = c.context;
  model::Workspace ws(c, B, T, precision);
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_int_distribution<std::int32_t> token(0, c.vocab - 1);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B) * T), targets(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = token(rng), targets[i] = token(rng);

  Result r;
  r.name = bc.name;
  r.precision = precision;
  r.params = layout.total();
  r.batch = B;
  r.seq = T;
  const std::size_t non_embedding = layout.total() - layout.find("wpe.weight").size;
  r.flops_per_token = 6 * non_embedding + 12 * static_cast<std::size_t>(c.layers) * c.dim * T;
  std::vector<double> times, adamw_times;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto t0 = Clock::now();
    r.loss = model::forward_backward(layout, weights, tokens.data(), targets.data(), B, T, grad.data(), 1.0f,
                                     /*overwrite=*/true, ws);
    if (s >= warmup) times.push_back(seconds_since(t0));
    const auto t1 = Clock::now();
    adamw.update(params.data(), grad.data(), 1e-4);  // tiny steps: the weights barely move
    if (s >= warmup) adamw_times.push_back(seconds_since(t1));
  }
  std::sort(times.begin(), times.end());
  std::sort(adamw_times.begin(), adamw_times.end());
  const double median = times[times.size() / 2];
  r.adamw_ms = adamw_times[adamw_times.size() / 2] * 1e3;
  // The breakdown from passes of their own: its clock reads stay out of ms/step.
  const int profiled = std::min(steps, kProfiledPasses);
  for (int s = 0; s < profiled; ++s) {
    model::profile_phases(true);
    model::forward_backward(layout, weights, tokens.data(), targets.data(), B, T, grad.data(), 1.0f, /*overwrite=*/true,
                            ws);
    const model::PhaseSeconds pass = model::phase_seconds();
    for (std::size_t p = 0; p < model::kPhases; ++p) r.phases[p] += pass[p] / profiled;
    model::profile_phases(false);
  }
  r.ms_per_step = median * 1e3;
  r.tokens_per_s = B * T / median;
  r.gflops = static_cast<double>(r.flops_per_token) * r.tokens_per_s * 1e-9;
  return r;
}

// Per pass: milliseconds and share of each phase, and the AdamW update.
void print_phase_table(const std::vector<Result>& results) {
  std::printf("\nphases per pass (mean of %d profiled passes after the timed ones), ms (share); AdamW update apart "
              "(median, not in ms/step)\n",
              kProfiledPasses);
  std::printf("%-7s %5s", "config", "prec");
  for (std::size_t p = 0; p < model::kPhases; ++p)
    std::printf(" %16s", std::string(model::phase_name(static_cast<model::Phase>(p))).c_str());
  std::printf(" %10s\n", "adamw");
  for (const Result& r : results) {
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
    const std::vector<NamedConfig> configs = select_configs(opt->configs);
    const std::vector<model::Precision> precisions = select_bench_precisions(opt->precisions);
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
    const double bf16_peak = any_bf16 ? measure_bf16_peak_gflops() : 0.0;
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
    std::vector<Result> results;
    for (const NamedConfig& bc : configs) {
      for (const model::Precision precision : precisions) {
        const Result r = run_config(bc, precision, opt->steps, opt->warmup, opt->seed);
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
