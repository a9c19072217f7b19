// `cllm bench attention`: the causal attention core alone, one thread:
// forward and backward time per layer and the memory it needs, per sequence
// length and precision (bench/attention.h). Prints the measurements only.
#include <cstdio>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/attention.h"
#include "bench/configs.h"
#include "cli/commands.h"
#include "kernels/kernels.h"

namespace cllm::cli {
namespace {

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
    const std::vector<model::Precision> precisions = bench::select_bench_precisions(opt->precisions);
    std::printf("command: cllm bench attention --seq %s --batch %d --dim %d --heads %d --reps %d --precision %s\n",
                opt->seqs.c_str(), opt->batch, opt->dim, opt->heads, opt->reps, opt->precisions.c_str());
    std::printf("one thread; SIMD %s; median of %d after a warm-up; per layer of %d heads x %d dims\n",
                std::string(kernels::target_name(kernels::active().target)).c_str(), opt->reps, opt->heads,
                opt->dim / opt->heads);
    std::printf("%6s %5s %11s %11s %9s %9s %12s %12s\n", "seq", "prec", "forward ms", "backward ms", "fwd GF/s",
                "bwd GF/s", "kept MiB", "scratch MiB");
    for (const int T : seqs)
      for (const model::Precision p : precisions) {
        const bench::AttentionMeasurement r = bench::measure_attention(p, opt->batch, T, opt->dim, opt->heads, opt->reps);
        std::printf("%6d %5s %11.3f %11.3f %9.1f %9.1f %12.3f %12.3f\n", T,
                    std::string(model::precision_name(p)).c_str(), r.forward_ms, r.backward_ms, r.forward_gflops,
                    r.backward_gflops,
                    static_cast<double>(r.kept_bytes) / (1 << 20), static_cast<double>(r.scratch_bytes) / (1 << 20));
        std::fflush(stdout);
      }
  });
}

}  // namespace cllm::cli
