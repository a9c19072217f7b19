// `cllm bench gemm`: GFLOP/s of every compiled sgemm backend on the matrix
// products of the small and medium model configs with 1 and 2 concurrent
// callers (bench/gemm.h). This is how CLLM_GEMM=auto's preference was chosen.
#include <cstdio>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/gemm.h"
#include "cli/commands.h"
#include "kernels/sgemm.h"

namespace cllm::cli {
namespace {

namespace k = cllm::kernels;

std::vector<int> parse_callers(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int n = 0;
    try {
      n = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || n < 1 || n > 64) {
      throw std::invalid_argument("--callers '" + text + "': expected a comma-separated list of thread counts 1..64");
    }
    out.push_back(n);
  }
  if (out.empty()) throw std::invalid_argument("--callers is empty: expected e.g. 1,2");
  return out;
}

}  // namespace

void add_bench_gemm_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("gemm", "sgemm backends on the model's matrix shapes, 1 and 2 callers");
  struct Options {
    bool json = false;
    double seconds = 0.5;
    int repeats = 3;
    std::string callers = "1,2";
    std::vector<std::string> backends;
  };
  auto opt = std::make_shared<Options>();
  cmd->add_flag("--json", opt->json, "Print one JSON object instead of a table");
  cmd->add_option("--seconds", opt->seconds, "Minimum time per measurement")->check(CLI::PositiveNumber);
  cmd->add_option("--repeats", opt->repeats, "Measurements per row; the median is reported")->check(CLI::Range(1, 99));
  cmd->add_option("--callers", opt->callers, "Comma-separated numbers of concurrent calling threads");
  cmd->add_option("--backends", opt->backends, "Backends to measure (default: onednn and openblas, those compiled)")
      ->delimiter(',');
  cmd->callback([opt] {
    const std::vector<int> callers = parse_callers(opt->callers);
    std::vector<k::GemmBackend> backends;
    for (const std::string& name : opt->backends) backends.push_back(k::parse_gemm_backend(name, "--backends"));
    if (backends.empty()) {
      for (k::GemmBackend b : k::available_gemm_backends()) {
        if (b != k::GemmBackend::naive) backends.push_back(b);
      }
    }
    std::string backend_list;
    for (k::GemmBackend b : backends) backend_list += (backend_list.empty() ? "" : ",") + std::string(k::gemm_backend_name(b));
    const std::string command = fmt::format("cllm bench gemm --seconds {} --repeats {} --callers {} --backends {}{}",
                                            opt->seconds, opt->repeats, opt->callers, backend_list,
                                            opt->json ? " --json" : "");
    nlohmann::json rows = nlohmann::json::array();
    if (!opt->json) {
      std::printf("command: %s\n", command.c_str());
      for (k::GemmBackend b : backends) {
        std::printf("%-8s: %s\n", std::string(k::gemm_backend_name(b)).c_str(),
                    k::gemm_backend_description(b).c_str());
      }
      std::printf("GFLOP/s per caller, median of %d; each caller computes its own products on its own thread\n",
                  opt->repeats);
      std::printf("%-7s %-16s %-9s %7s %9s\n", "config", "pass", "backend", "callers", "GFLOP/s");
    }
    bench::measure_gemm(backends, callers, opt->repeats, opt->seconds, [&](const bench::GemmMeasurement& m) {
      if (opt->json) {
        rows.push_back({{"config", m.config}, {"pass", m.pass}, {"backend", m.backend},
                        {"callers", m.callers}, {"gflops_per_caller", m.gflops_per_caller}});
      } else {
        std::printf("%-7s %-16s %-9s %7d %9.1f\n", m.config, m.pass, m.backend.c_str(), m.callers, m.gflops_per_caller);
        std::fflush(stdout);
      }
    });
    if (opt->json) {
      nlohmann::json libraries = nlohmann::json::object();
      for (k::GemmBackend b : backends) libraries[std::string(k::gemm_backend_name(b))] = k::gemm_backend_description(b);
      nlohmann::json out = {{"command", command}, {"backends", libraries}, {"unit", "GFLOP/s per caller"}, {"rows", rows}};
      std::printf("%s\n", out.dump(2).c_str());
    }
  });
}

}  // namespace cllm::cli
