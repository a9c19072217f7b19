#include "bench/gemm.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <random>
#include <thread>

namespace cllm::bench {
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

}  // namespace

void measure_gemm(const std::vector<kernels::GemmBackend>& backends, const std::vector<int>& callers, int repeats,
                  double seconds, const std::function<void(const GemmMeasurement&)>& report) {
  // small: batch 8 x seq 128, dim 256; medium: batch 4 x seq 256, dim 384.
  const ModelShapes models[] = {model_shapes("small", 1024, 256), model_shapes("medium", 1024, 384)};
  for (const ModelShapes& model : models) {
    for (Pass pass : kPasses) {
      for (k::GemmBackend backend : backends) {
        for (int c : callers) {
          std::vector<double> samples;
          for (int r = 0; r < repeats; ++r) samples.push_back(measure(backend, model, pass, c, seconds));
          std::sort(samples.begin(), samples.end());
          report({model.config, pass_name(pass), std::string(k::gemm_backend_name(backend)), c,
                  samples[samples.size() / 2]});
        }
      }
    }
  }
}

}  // namespace cllm::bench
