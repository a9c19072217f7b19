// `cllm bench attention`: the causal attention core (layers.h) alone, one
// thread: forward and backward time per layer and the memory it needs, per
// sequence length and precision. "kept" is what one layer keeps from its
// forward for its backward (the attention state; its inputs and output are
// the model's activations either way), "scratch" the per-thread buffers
// every layer reuses. Prints the measurements only.
//
// FLOPs: the causal products count once per (query, key <= query) pair:
// forward QK^T and PV = 4 * hs per pair, backward 8 * hs per pair
// (dP, dV, dQ, dK), so GFLOP/s compare between kernels that recompute more.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/bench_configs.h"
#include "cli/commands.h"
#include "kernels/bf16.h"
#include "kernels/kernels.h"
#include "model/layers.h"

namespace cllm::cli {
namespace {

using Clock = std::chrono::steady_clock;
namespace layers = model::layers;

struct Options {
  std::string seqs = "128,256,1024";
  int batch = 1;
  int dim = 768;
  int heads = 12;
  int reps = 5;
  std::string precisions = "auto";
};

std::vector<int> parse_seqs(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int t = 0;
    try {
      t = std::stoi(item);
    } catch (const std::exception&) {
      throw std::invalid_argument("--seq '" + item + "': expected a sequence length, e.g. 128,256,1024");
    }
    if (t < 1 || t > 65536) throw std::invalid_argument("--seq " + item + ": expected 1..65536");
    out.push_back(t);
  }
  if (out.empty()) throw std::invalid_argument("--seq is empty: expected e.g. 128,256,1024");
  return out;
}

struct Row {
  double forward_ms = 0, backward_ms = 0;
  std::size_t kept_bytes = 0, scratch_bytes = 0;
};

template <class T>
double median_ms(int reps, T&& fn) {
  std::vector<double> t;
  fn();  // warm-up: pages touched, oneDNN primitives created
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// x in the operand type (as_operand converts into the copy, or hands back x for f32).
template <class Op>
std::vector<Op> operand_copy(const std::vector<float>& x) {
  std::vector<Op> out(x.size());
  const Op* converted = layers::as_operand(x.data(), out.data(), x.size());
  if (converted != out.data()) std::copy_n(converted, x.size(), out.data());
  return out;
}

template <class Op>
Row measure(int B, int T, int C, int NH, int reps) {
  const std::size_t n = static_cast<std::size_t>(B) * T;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv_f(n * 3 * C), dout_f(n * C);
  for (float& x : qkv_f) x = normal(rng);
  for (float& x : dout_f) x = normal(rng);
  const std::vector<Op> qkv = operand_copy<Op>(qkv_f), dout = operand_copy<Op>(dout_f);
  std::vector<Op> out(n * C);
  std::vector<float> kept(layers::attention_kept_size(B, T, NH));
  std::vector<Op> operands(layers::attention_operand_scratch_size(T, C, NH));
  std::vector<float> scratch(layers::attention_scratch_size(T, C, NH)), dqkv(n * 3 * C);
  Row r;
  r.forward_ms = median_ms(reps, [&] {
    layers::attention_forward(out.data(), kept.data(), scratch.data(), operands.data(), qkv.data(), B, T, C, NH);
  });
  r.backward_ms = median_ms(reps, [&] {
    layers::attention_backward(dqkv.data(), scratch.data(), operands.data(), dout.data(), qkv.data(), kept.data(), B,
                               T, C, NH);
  });
  r.kept_bytes = kept.size() * sizeof(float);
  r.scratch_bytes = scratch.size() * sizeof(float) + operands.size() * sizeof(Op);
  return r;
}

}  // namespace

void add_bench_attention_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("attention", "Causal attention alone, one thread: time and memory per layer");
  auto opt = std::make_shared<Options>();
  cmd->add_option("--seq", opt->seqs, "Comma-separated sequence lengths")->capture_default_str();
  cmd->add_option("--batch", opt->batch, "Sequences")->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--dim", opt->dim, "Model width C")->check(CLI::Range(1, 65536))->capture_default_str();
  cmd->add_option("--heads", opt->heads, "Heads; dim % heads == 0")->check(CLI::Range(1, 65536))->capture_default_str();
  cmd->add_option("--reps", opt->reps, "Timed repetitions (median reported)")->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--precision", opt->precisions, "fp32 and/or bf16; auto: both where the CPU has native bf16")
      ->capture_default_str();
  cmd->callback([opt] {
    if (opt->dim % opt->heads != 0)
      throw std::invalid_argument(fmt::format("--dim {} is not divisible by --heads {}", opt->dim, opt->heads));
    const std::vector<int> seqs = parse_seqs(opt->seqs);
    const std::vector<model::Precision> precisions = select_bench_precisions(opt->precisions);
    std::printf("command: cllm bench attention --seq %s --batch %d --dim %d --heads %d --reps %d --precision %s\n",
                opt->seqs.c_str(), opt->batch, opt->dim, opt->heads, opt->reps, opt->precisions.c_str());
    std::printf("one thread; SIMD %s; median of %d after a warm-up; per layer of %d heads x %d dims\n",
                std::string(kernels::target_name(kernels::active().target)).c_str(), opt->reps, opt->heads,
                opt->dim / opt->heads);
    std::printf("%6s %5s %11s %11s %9s %9s %12s %12s\n", "seq", "prec", "forward ms", "backward ms", "fwd GF/s",
                "bwd GF/s", "kept MiB", "scratch MiB");
    const int hs = opt->dim / opt->heads;
    for (const int T : seqs)
      for (const model::Precision p : precisions) {
        const Row r = p == model::Precision::bf16 ? measure<kernels::bf16>(opt->batch, T, opt->dim, opt->heads, opt->reps)
                                                  : measure<float>(opt->batch, T, opt->dim, opt->heads, opt->reps);
        const double pairs = static_cast<double>(opt->batch) * opt->heads * T * (T + 1) / 2.0;
        std::printf("%6d %5s %11.3f %11.3f %9.1f %9.1f %12.3f %12.3f\n", T,
                    std::string(model::precision_name(p)).c_str(), r.forward_ms, r.backward_ms,
                    4.0 * hs * pairs / r.forward_ms * 1e-6, 8.0 * hs * pairs / r.backward_ms * 1e-6,
                    static_cast<double>(r.kept_bytes) / (1 << 20), static_cast<double>(r.scratch_bytes) / (1 << 20));
        std::fflush(stdout);
      }
  });
}

}  // namespace cllm::cli
