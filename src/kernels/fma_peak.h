// The FP32 FMA throughput of one core, measured with the widest FMA the CPU
// has (AVX-512 or AVX2; target-attributed loops chosen by CPUID, so this
// builds and runs on any x86-64). MFU = achieved FLOP/s / (cores x peak).
#pragma once

#include <string>

namespace cllm::kernels {

struct FmaPeak {
  std::string isa;
  double gflops = 0;  // per core, 2 FLOPs per FMA lane
};

// Best of a few timed runs (about 0.2 s). Throws std::runtime_error on a CPU
// without AVX2+FMA.
FmaPeak measure_fma_peak();

}  // namespace cllm::kernels
