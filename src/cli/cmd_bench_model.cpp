// `cllm bench model`: single-thread forward+backward throughput of the GPT
// configs of issue 4, in tokens/s and GFLOP/s, against this machine's FP32
// FMA peak measured in the same run (MFU = achieved / peak).
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

struct Result {
  std::string name;
  std::size_t params = 0, flops_per_token = 0;
  int batch = 0, seq = 0;
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0;
  float loss = 0;
};

// Median over `steps` timed forward+backward passes after `warmup` untimed ones.
Result run_config(const NamedConfig& bc, int steps, int warmup, std::uint64_t seed) {
  const model::Config& c = bc.config;
  const model::ParamLayout layout(c);
  std::vector<float> params(layout.total()), grad(layout.total());
  model::init_params(layout, params.data(), seed);
  const int B = bc.batch, T = c.context;
  model::Workspace ws(c, B, T);
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_int_distribution<std::int32_t> token(0, c.vocab - 1);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B) * T), targets(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = token(rng), targets[i] = token(rng);

  Result r;
  r.name = bc.name;
  r.params = layout.total();
  r.batch = B;
  r.seq = T;
  const std::size_t non_embedding = layout.total() - layout.find("wpe.weight").size;
  r.flops_per_token = 6 * non_embedding + 12 * static_cast<std::size_t>(c.layers) * c.dim * T;
  std::vector<double> times;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto t0 = Clock::now();
    r.loss = model::forward(layout, params.data(), tokens.data(), targets.data(), B, T, ws);
    model::backward(layout, params.data(), grad.data(), 1.0f, /*overwrite=*/true, ws);
    if (s >= warmup) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  r.ms_per_step = median * 1e3;
  r.tokens_per_s = B * T / median;
  r.gflops = static_cast<double>(r.flops_per_token) * r.tokens_per_s * 1e-9;
  return r;
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
  };
  auto opt = std::make_shared<Options>();
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of a table");
  cmd->add_option("--configs", opt->configs, "Comma-separated configs: tiny, small, medium");
  cmd->add_option("--steps", opt->steps, "Timed forward+backward passes per config (median reported)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", opt->warmup, "Untimed passes before them")->check(CLI::Range(0, 1000));
  cmd->add_option("--seed", opt->seed, "Seed of the weights and tokens");
  cmd->callback([opt] {
    const std::vector<NamedConfig> configs = select_configs(opt->configs);
    const std::string command = fmt::format("cllm bench model --configs {} --steps {} --warmup {} --seed {}{}",
                                            opt->configs, opt->steps, opt->warmup, opt->seed,
                                            opt->json ? " --json" : "");
    const std::string gemm = std::string(kernels::gemm_backend_name(kernels::gemm_backend())) + " (" +
                             kernels::gemm_backend_description(kernels::gemm_backend()) + ")";
    const std::string simd(kernels::target_name(kernels::active().target));
    const char* formula = "6 * (params - wpe) + 12 * layers * dim * seq FLOPs per token (nanoGPT)";
    if (!opt->json) {
      std::printf("command: %s\n", command.c_str());
      std::printf("one thread; sgemm %s; SIMD %s\n", gemm.c_str(), simd.c_str());
    }
    const kernels::FmaPeak peak = kernels::measure_fma_peak();
    if (!opt->json) {
      std::printf("FMA peak: %.1f GFLOP/s per core (%s, best of 5)\n", peak.gflops, peak.isa.c_str());
      std::printf("forward+backward, median of %d passes after %d warm-up; %s\n", opt->steps, opt->warmup, formula);
      std::printf("%-7s %9s %5s %5s %10s %10s %9s %6s %8s\n", "config", "params", "batch", "seq", "ms/step",
                  "tokens/s", "GFLOP/s", "MFU", "loss");
    }
    nlohmann::json rows = nlohmann::json::array();
    for (const NamedConfig& bc : configs) {
      const Result r = run_config(bc, opt->steps, opt->warmup, opt->seed);
      const double mfu = r.gflops / peak.gflops;
      if (opt->json) {
        rows.push_back({{"config", r.name}, {"params", r.params}, {"batch", r.batch}, {"seq", r.seq},
                        {"layers", bc.config.layers}, {"dim", bc.config.dim}, {"heads", bc.config.heads},
                        {"flops_per_token", r.flops_per_token}, {"ms_per_step", r.ms_per_step},
                        {"tokens_per_s", r.tokens_per_s}, {"gflops", r.gflops}, {"mfu", mfu},
                        {"loss", r.loss}});
      } else {
        std::printf("%-7s %9zu %5d %5d %10.2f %10.0f %9.1f %5.1f%% %8.4f\n", r.name.c_str(), r.params, r.batch,
                    r.seq, r.ms_per_step, r.tokens_per_s, r.gflops, 100.0 * mfu, static_cast<double>(r.loss));
        std::fflush(stdout);
      }
    }
    if (opt->json) {
      const nlohmann::json out = {{"command", command},
                                  {"threads", 1},
                                  {"sgemm", gemm},
                                  {"simd", simd},
                                  {"flops_formula", formula},
                                  {"fma_peak_gflops", peak.gflops},
                                  {"fma_isa", peak.isa},
                                  {"rows", rows}};
      std::printf("%s\n", out.dump(2).c_str());
    }
  });
}

}  // namespace cllm::cli
