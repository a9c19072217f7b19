// Each subcommand registers itself on the CLI11 app (or on `bench`) and sets
// its own callback. A callback reports bad input by throwing
// cllm::UsageError or std::runtime_error; main() prints it and exits non-zero.
#pragma once

#include <CLI/CLI.hpp>

namespace cllm::cli {

void add_train_commands(CLI::App& app);  // train, generate, eval
void add_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_bench_kernels_command(CLI::App& bench);
void add_bench_accumulate_command(CLI::App& bench);
void add_bench_scaling_command(CLI::App& bench);
void add_plot_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_bench_gemm_command(CLI::App& bench);
void add_bench_model_command(CLI::App& bench);
void add_bench_attention_command(CLI::App& bench);

}  // namespace cllm::cli
