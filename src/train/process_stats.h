// What the process has used so far, for the run summary and benchmarks.
#pragma once

namespace cllm::train {

struct ProcessUsage {
  double cpu_seconds;   // user + system, all threads
  double peak_rss_mib;  // high-water mark of resident memory
};

ProcessUsage process_usage();

}  // namespace cllm::train
