// `cllm bench kernels`: placeholder until the kernel benchmark lands.
#include <stdexcept>

#include "cli/commands.h"

namespace cllm::cli {

void add_bench_kernels_command(CLI::App& bench) {
  CLI::App* cmd = bench.add_subcommand("kernels", "Kernel bandwidth against memcpy");
  cmd->callback([] { throw std::runtime_error("bench kernels: not implemented yet"); });
}

}  // namespace cllm::cli
