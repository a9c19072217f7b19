// `cllm bench gemm`: GFLOP/s of every compiled sgemm backend on the matrix
// products of the small and medium model configs (forward, backward-data and
// backward-weight of each linear layer) with 1 and 2 concurrent callers, the
// per-worker setting. This is how CLLM_GEMM=auto's preference was chosen.
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "kernels/sgemm.h"

namespace cllm::cli {
namespace {

namespace k = cllm::kernels;

// One linear layer out (BT, OUT) = in (BT, IN) @ W (IN, OUT), W input-major
// as in the HF Conv1D layout, and its two backward products.
struct Linear {
  const char* name;
  int rows, in, out;  // rows = batch * sequence
};

enum class Pass { forward, backward_data, backward_weight };
constexpr Pass kPasses[] = {Pass::forward, Pass::backward_data, Pass::backward_weight};
const char* pass_name(Pass p) {
  switch (p) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward_data";
    case Pass::backward_weight: return "backward_weight";
  }
  return "?";
}

// forward: out = in @ W; backward_data: d_in = d_out @ W^T;
// backward_weight: d_W += in^T @ d_out.
k::GemmShape shape_of(const Linear& l, Pass p) {
  k::GemmShape s;
  switch (p) {
    case Pass::forward:
      s.m = l.rows, s.n = l.out, s.k = l.in;
      s.lda = l.in, s.ldb = l.out, s.ldc = l.out;
      break;
    case Pass::backward_data:
      s.trans_b = true;
      s.m = l.rows, s.n = l.in, s.k = l.out;
      s.lda = l.out, s.ldb = l.out, s.ldc = l.in;
      break;
    case Pass::backward_weight:
      s.trans_a = true;
      s.beta = 1.0f;
      s.m = l.in, s.n = l.out, s.k = l.rows;
      s.lda = l.in, s.ldb = l.out, s.ldc = l.out;
      break;
  }
  return s;
}

struct ModelShapes {
  const char* config;
  std::vector<Linear> layers;
};

// Linear layers of a block plus the tied LM head (vocab 256), batch*seq rows.
ModelShapes model_shapes(const char* config, int rows, int dim) {
  return {config,
          {{"attn.c_attn", rows, dim, 3 * dim},
           {"attn.c_proj", rows, dim, dim},
           {"mlp.c_fc", rows, dim, 4 * dim},
           {"mlp.c_proj", rows, 4 * dim, dim},
           {"lm_head", rows, dim, 256}}};
}

struct Operands {
  std::vector<k::GemmShape> shapes;
  std::vector<std::vector<float>> a, b, c;
  double flops = 0;
};

Operands make_operands(const ModelShapes& model, Pass pass, unsigned seed) {
  Operands ops;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random_vector = [&](long n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
  };
  for (const Linear& l : model.layers) {
    const k::GemmShape s = shape_of(l, pass);
    ops.shapes.push_back(s);
    ops.a.push_back(random_vector(static_cast<long>(s.trans_a ? s.k : s.m) * s.lda));
    ops.b.push_back(random_vector(static_cast<long>(s.trans_b ? s.n : s.k) * s.ldb));
    ops.c.push_back(random_vector(static_cast<long>(s.m) * s.ldc));
    ops.flops += 2.0 * s.m * s.n * s.k;
  }
  return ops;
}

// Runs `callers` threads, each repeating its own copy of the products for at
// least `seconds`, started together; returns the mean GFLOP/s per caller.
double measure(k::GemmBackend backend, const ModelShapes& model, Pass pass, int callers, double seconds) {
  std::vector<Operands> ops;
  for (int t = 0; t < callers; ++t) ops.push_back(make_operands(model, pass, 17u + static_cast<unsigned>(t)));
  std::vector<double> gflops(static_cast<std::size_t>(callers));
  std::barrier start(callers);
  auto worker = [&](int t) {
    Operands& o = ops[static_cast<std::size_t>(t)];
    auto run_once = [&] {
      for (std::size_t i = 0; i < o.shapes.size(); ++i) k::sgemm(backend, o.shapes[i], o.a[i].data(), o.b[i].data(), o.c[i].data());
    };
    run_once();  // warm-up: first-touch, packing buffers, per-thread setup
    start.arrive_and_wait();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    long reps = 0;
    double elapsed = 0;
    do {
      run_once();
      ++reps;
      elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    } while (elapsed < seconds);
    gflops[static_cast<std::size_t>(t)] = o.flops * static_cast<double>(reps) / elapsed * 1e-9;
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < callers; ++t) threads.emplace_back(worker, t);
  worker(0);
  for (std::thread& th : threads) th.join();
  double sum = 0;
  for (double g : gflops) sum += g;
  return sum / callers;
}

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
    // small: batch 8 x seq 128, dim 256; medium: batch 4 x seq 256, dim 384.
    const ModelShapes models[] = {model_shapes("small", 1024, 256), model_shapes("medium", 1024, 384)};

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
    for (const ModelShapes& model : models) {
      for (Pass pass : kPasses) {
        for (k::GemmBackend backend : backends) {
          for (int c : callers) {
            std::vector<double> samples;
            for (int r = 0; r < opt->repeats; ++r) samples.push_back(measure(backend, model, pass, c, opt->seconds));
            std::sort(samples.begin(), samples.end());
            const double median = samples[samples.size() / 2];
            const std::string name(k::gemm_backend_name(backend));
            if (opt->json) {
              rows.push_back({{"config", model.config}, {"pass", pass_name(pass)}, {"backend", name},
                              {"callers", c}, {"gflops_per_caller", median}});
            } else {
              std::printf("%-7s %-16s %-9s %7d %9.1f\n", model.config, pass_name(pass), name.c_str(), c, median);
              std::fflush(stdout);
            }
          }
        }
      }
    }
    if (opt->json) {
      nlohmann::json libraries = nlohmann::json::object();
      for (k::GemmBackend b : backends) libraries[std::string(k::gemm_backend_name(b))] = k::gemm_backend_description(b);
      nlohmann::json out = {{"command", command}, {"backends", libraries}, {"unit", "GFLOP/s per caller"}, {"rows", rows}};
      std::printf("%s\n", out.dump(2).c_str());
    }
  });
}

}  // namespace cllm::cli
