#include "support/rerun.h"

#include <cstdio>
#include <filesystem>

namespace cllm::test {

bool ChildRun::passed(int tests) const {
  const std::string line = "[  PASSED  ] " + std::to_string(tests) + (tests == 1 ? " test." : " tests.");
  return status == 0 && output.find(line) != std::string::npos;
}

ChildRun rerun_this_program(const std::string& environment, const std::string& gtest_filter) {
  ChildRun run;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  run.command = environment + " '" + self + "' --gtest_filter='" + gtest_filter + "' 2>&1";
  FILE* child = popen(run.command.c_str(), "r");
  if (child == nullptr) return run;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, child)) > 0;) run.output.append(buf, n);
  run.status = pclose(child);
  return run;
}

}  // namespace cllm::test
