// Runs the real `cllm` binary (path from CMake: CLLM_BINARY) in a child
// process and reports how it ended, for the reliability tests.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace cllm::reliability {

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that ended it, 0 when it exited
  std::string output;  // stdout and stderr interleaved
};

// Runs `cllm args...` to completion. `in_child` runs in the child between
// fork and exec (e.g. setrlimit). Fails the current test when the child
// takes longer than timeout_s (it is then killed).
RunResult run_cllm(const std::vector<std::string>& args, const std::function<void()>& in_child = {},
                   double timeout_s = 300.0);

// Runs `cllm args...` with stdout and stderr on a new pseudo-terminal (so
// isatty is true, and the terminal turns each "\n" into "\r\n").
RunResult run_cllm_on_terminal(const std::vector<std::string>& args, double timeout_s = 300.0);

// Starts `cllm args...` with stdout and stderr appended to `log`; returns
// the child's pid.
pid_t start_cllm(const std::vector<std::string>& args, const std::filesystem::path& log);

// Waits for a child started by start_cllm.
RunResult wait_cllm(pid_t pid);

// Whether a run ended the way bad input must end: exit status 1..125 (not
// 134 abort or 139 segfault, not a signal) and no sanitizer report.
bool clean_failure(const RunResult& r);

// "exit N" or "signal N", for assertion messages.
std::string describe(const RunResult& r);

}  // namespace cllm::reliability
