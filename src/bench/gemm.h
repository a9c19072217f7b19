// `cllm bench gemm`'s measurements: GFLOP/s of sgemm backends on the matrix
// products of the small and medium model configs (forward, backward-data and
// backward-weight of each linear layer) with concurrent callers, each on its
// own thread with its own operands, the per-worker setting.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernels/sgemm.h"

namespace cllm::bench {

struct GemmMeasurement {
  const char* config;  // small, medium
  const char* pass;    // forward, backward_data, backward_weight
  std::string backend;
  int callers;
  double gflops_per_caller;  // median of the repeats
};

// Every config, pass, backend and caller count in that order, each the
// median of `repeats` measurements of at least `seconds`; report is called
// as each is taken.
void measure_gemm(const std::vector<kernels::GemmBackend>& backends, const std::vector<int>& callers, int repeats,
                  double seconds, const std::function<void(const GemmMeasurement&)>& report);

}  // namespace cllm::bench
