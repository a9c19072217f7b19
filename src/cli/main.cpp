// cllm: train GPT-style language models on CPUs.
#include <cstdio>
#include <exception>
#include <new>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cllm: train GPT-style language models on CPUs", "cllm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cllm 0.1.0");

  cllm::cli::add_train_commands(app);
  cllm::cli::add_info_command(app);
  cllm::cli::add_tokenize_command(app);
  cllm::cli::add_plot_command(app);
  cllm::cli::add_verify_command(app);
  CLI::App* bench = app.add_subcommand("bench", "Measure kernels, the gradient pipeline and the model");
  bench->require_subcommand(1);
  cllm::cli::add_bench_kernels_command(*bench);
  cllm::cli::add_bench_accumulate_command(*bench);
  cllm::cli::add_bench_scaling_command(*bench);
  cllm::cli::add_bench_gemm_command(*bench);
  cllm::cli::add_bench_model_command(*bench);
  cllm::cli::add_bench_attention_command(*bench);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {  // bad flags, or an exit code from a command
    return app.exit(e);
  } catch (const std::bad_alloc& e) {
    // The large buffers are named where they are allocated (train::allocate_part,
    // train::allocate_named); this is the net under every other allocation.
    std::fprintf(stderr,
                 "cllm: error: out of memory (%s) outside the large buffers cllm names: the system has no memory "
                 "left, or a limit (ulimit -v, a cgroup's memory.max) is below what the command needs\n",
                 e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
