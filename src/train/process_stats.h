// What the process has used so far, for the run summary and benchmarks.
#pragma once

#include <string>

namespace cllm::train {

struct ProcessUsage {
  double cpu_seconds;   // user + system, all threads
  double peak_rss_mib;  // high-water mark of resident memory
};

ProcessUsage process_usage();

// The last-level cache's references and misses (perf_event_open's
// PERF_COUNT_HW_CACHE_REFERENCES and _MISSES, user space) of the thread that
// makes this and of every thread created after it in the process (inherit),
// those that have ended included. Where the counters cannot be opened (a CPU
// whose counters are not exposed, as in most VMs, or perf_event_paranoid)
// available() is false and unavailable_reason() says why.
class CacheCounters {
 public:
  CacheCounters();
  ~CacheCounters();
  CacheCounters(const CacheCounters&) = delete;
  CacheCounters& operator=(const CacheCounters&) = delete;

  bool available() const { return reason_.empty(); }
  const std::string& unavailable_reason() const { return reason_; }
  struct Counts {
    double references = 0, misses = 0;
  };
  // So far; scaled up where the kernel multiplexed the counters. Zeros when unavailable.
  Counts read() const;

 private:
  int references_ = -1, misses_ = -1;
  std::string reason_;
};

}  // namespace cllm::train
