#include "run_cllm.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <gtest/gtest.h>

namespace cllm::reliability {
namespace {

[[noreturn]] void exec_cllm(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(CLLM_BINARY));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(CLLM_BINARY, argv.data());
  std::perror("execv " CLLM_BINARY);
  std::_Exit(127);
}

RunResult from_status(int status) {
  RunResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace

namespace {

// Reads the child's output from `fd` until it closes (a terminal reports EIO
// once the child is gone), then reaps the child.
RunResult collect(pid_t pid, int fd, double timeout_s) {
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  bool timed_out = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(&p, 1, 200) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  RunResult r = from_status(status);
  r.output = std::move(output);
  EXPECT_FALSE(timed_out) << "cllm timed out after " << timeout_s << " s; output:\n" << r.output;
  return r;
}

}  // namespace

RunResult run_cllm(const std::vector<std::string>& args, const std::function<void()>& in_child, double timeout_s) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    if (in_child) in_child();
    exec_cllm(args);
  }
  ::close(fds[1]);
  return collect(pid, fds[0], timeout_s);
}

RunResult run_cllm_on_terminal(const std::vector<std::string>& args, double timeout_s) {
  int terminal = -1;
  const pid_t pid = ::forkpty(&terminal, nullptr, nullptr, nullptr);
  if (pid < 0) throw std::runtime_error("forkpty failed");
  if (pid == 0) exec_cllm(args);
  return collect(pid, terminal, timeout_s);
}

pid_t start_cllm(const std::vector<std::string>& args, const std::filesystem::path& log) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    exec_cllm(args);
  }
  return pid;
}

RunResult wait_cllm(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return from_status(status);
}

bool clean_failure(const RunResult& r) {
  const bool sanitizer_report = r.output.find("Sanitizer") != std::string::npos ||
                                r.output.find("runtime error:") != std::string::npos;
  return r.signal == 0 && r.exit_code > 0 && r.exit_code < 126 && !sanitizer_report;
}

std::string describe(const RunResult& r) {
  return r.signal ? "signal " + std::to_string(r.signal) : "exit " + std::to_string(r.exit_code);
}

}  // namespace cllm::reliability
