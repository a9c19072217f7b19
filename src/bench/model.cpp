#include "bench/model.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/sgemm.h"
#include "optim/adamw.h"

namespace cllm::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

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

ModelMeasurement measure_model(const NamedConfig& bc, model::Precision precision, int steps, int warmup,
                               std::uint64_t seed) {
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

  ModelMeasurement r;
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

}  // namespace cllm::bench
