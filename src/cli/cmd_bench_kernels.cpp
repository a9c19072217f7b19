// `cllm bench kernels`: bandwidth of every kernel, per SIMD target, against
// memcpy measured in the same run (bench/kernels.h). Prints the measurements
// only; it never judges them.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "bench/kernels.h"
#include "cli/commands.h"

namespace cllm::cli {
namespace {

struct Options {
  bench::KernelBenchOptions bench;
  bool json = false;
  std::string clock = "wall";
};

// This process's command line as typed (Linux), for the record.
std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string out;
  for (std::size_t start = 0; start < raw.size();) {
    const std::size_t end = raw.find('\0', start);
    const std::string arg = raw.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!out.empty()) out += ' ';
    out += arg;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out.empty() ? std::string("cllm bench kernels") : out;
}

std::string human_bytes(std::size_t bytes) {
  if (bytes >= (1u << 20)) return fmt::format("{:g} MB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{:g} KB", static_cast<double>(bytes) / (1 << 10));
}

void run_bench(Options opt) {
  opt.bench.cpu_clock = opt.clock == "cpu";
  const bench::KernelBench measurements(opt.bench);
  const std::string command = command_line();
  if (!opt.json) {
    fmt::print("$ {}\n", command);
    fmt::print("{:<12} {:<7} {:>4} {:>9} {:>10} {:>9} {:>9} {:>9}\n", "kernel", "target", "srcs", "buffer",
               "seconds", "GB/s", "x memcpy", "x scalar");
  }
  measurements.run([&](const bench::KernelMeasurement& m) {
    if (opt.json) {
      nlohmann::json j = {{"kernel", m.kernel},
                          {"target", m.target},
                          {"n_sources", m.n_sources},
                          {"buffer_bytes", m.buffer_bytes},
                          {"bytes", m.bytes},
                          {"seconds", m.seconds},
                          {"gb_per_s", m.gb_per_s},
                          {"memcpy_gb_per_s", m.memcpy_gb_per_s},
                          {"clock", opt.clock},
                          {"reps", m.reps},
                          {"calls_per_rep", m.calls_per_rep},
                          {"command", command}};
      std::cout << j.dump() << std::endl;
    } else {
      const std::string vs_scalar = m.scalar_gb_per_s ? fmt::format("{:.2f}", m.gb_per_s / *m.scalar_gb_per_s) : "";
      fmt::print("{:<12} {:<7} {:>4} {:>9} {:>10.3e} {:>9.2f} {:>9.2f} {:>9}\n", m.kernel, m.target, m.n_sources,
                 human_bytes(m.buffer_bytes), m.seconds, m.gb_per_s, m.gb_per_s / m.memcpy_gb_per_s, vs_scalar);
      std::fflush(stdout);
    }
  });
}

}  // namespace

void add_bench_kernels_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("kernels", "Kernel bandwidth against memcpy, per SIMD target");
  auto opt = std::make_shared<Options>();
  cmd->add_flag("--quick", opt->bench.quick, "Small buffers (8 MB) and 3 reps: a few seconds");
  cmd->add_flag("--json", opt->json, "One JSON object per measurement per line");
  cmd->add_option("--mb", opt->bench.mb, "Size of each large buffer in MB (default 100, 8 with --quick)");
  cmd->add_option("--cache-kb", opt->bench.cache_kb, "Size of each in-cache buffer in KB")->capture_default_str();
  cmd->add_option("--reps", opt->bench.reps, "Repetitions; the median is reported (default 5, 3 with --quick)");
  cmd->add_option("--targets", opt->bench.targets, "Comma-separated: scalar, sse4, avx2, avx512, best, all")
      ->capture_default_str();
  cmd->add_option("--clock", opt->clock, "wall, or cpu (this thread's CPU time, for a busy machine)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  cmd->add_option("--kernels", opt->bench.kernels, "Comma-separated kernel names, or all")->capture_default_str();
  cmd->add_option("--n-sources", opt->bench.n_sources, "Sources summed by add_n (1..256)")->capture_default_str();
  cmd->callback([opt] { run_bench(*opt); });
}

}  // namespace cllm::cli
