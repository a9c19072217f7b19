// Runs this test program again in a child process, for settings that a
// process reads once (CLLM_GEMM, CLLM_ONEDNN_MATMUL_MAX): the child gets
// them in its environment and runs only the tests the filter names.
#pragma once

#include <string>

namespace cllm::test {

struct ChildRun {
  std::string command;
  std::string output;  // stdout and stderr
  int status = -1;     // as from pclose: 0 when the child exited 0

  // Exited 0 after running and passing exactly `tests` tests.
  bool passed(int tests) const;
};

// `environment`: "NAME=value" assignments for the shell, e.g. "CLLM_GEMM=naive".
ChildRun rerun_this_program(const std::string& environment, const std::string& gtest_filter);

}  // namespace cllm::test
