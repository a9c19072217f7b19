// `cllm bench kernels`' measurements: bandwidth of every kernel, per SIMD
// target, against memcpy measured in the same run, on large (DRAM) and small
// (in-cache) buffers. It measures only; it never judges.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace cllm::bench {

struct KernelWorkload;  // one kernel as benchmarked (kernels.cpp)

struct KernelBenchOptions {
  bool quick = false;
  double mb = 0.0;           // per buffer; 0: 100, or 8 with --quick
  int reps = 0;              // 0: 5, or 3 with --quick
  std::string targets = "scalar,best";
  std::string kernels = "all";
  bool cpu_clock = false;    // this thread's CPU time instead of wall time
  std::size_t n_sources = 12;
  std::size_t cache_kb = 16;
};

// One kernel on one target and buffer size (memcpy first for each size, as
// target "libc").
struct KernelMeasurement {
  std::string kernel, target;
  std::size_t n_sources = 0;     // sources summed (add_n), else 0
  std::size_t buffer_bytes = 0;  // one buffer
  std::size_t bytes = 0;         // moved per call
  double seconds = 0;            // per call, median over the reps
  double gb_per_s = 0;
  double memcpy_gb_per_s = 0;    // this buffer size's memcpy
  std::optional<double> scalar_gb_per_s;  // the same kernel on scalar at this size, once measured
  int reps = 0;
  std::size_t calls_per_rep = 0;
};

class KernelBench {
 public:
  // Checks the options (std::invalid_argument naming the flag).
  explicit KernelBench(const KernelBenchOptions& options);
  // Measures, calling report for each measurement as it is taken.
  void run(const std::function<void(const KernelMeasurement&)>& report) const;

 private:
  KernelBenchOptions o_;
  int reps_;
  std::vector<kernels::Target> targets_;
  std::vector<const KernelWorkload*> workloads_;
  std::vector<std::size_t> sizes_;  // floats per buffer: large, then in-cache
};

}  // namespace cllm::bench
