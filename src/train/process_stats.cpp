#include "train/process_stats.h"

#include <linux/perf_event.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace cllm::train {
namespace {

// A counter of `event` for this thread and the threads created after it, or
// -1 with errno set.
int open_counter(std::uint64_t event) {
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_HARDWARE;
  attr.config = event;
  attr.inherit = 1;
  attr.exclude_kernel = 1;  // user space needs no privilege at perf_event_paranoid 2
  attr.exclude_hv = 1;
  attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
  return static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

std::string why_not(int error) {
  std::string reason = std::string("perf_event_open: ") + std::strerror(error);
  if (error == ENOENT || error == EOPNOTSUPP || error == ENODEV)
    reason += "; this CPU's cache counters are not exposed here, as in most VMs";
  else if (error == EACCES || error == EPERM)
    reason += "; kernel.perf_event_paranoid or the container forbids counting";
  return reason;
}

double scaled_count(int fd) {
  std::uint64_t v[3] = {0, 0, 0};  // value, time enabled, time running
  if (::read(fd, v, sizeof v) != static_cast<ssize_t>(sizeof v) || v[2] == 0) return 0.0;
  return static_cast<double>(v[0]) * static_cast<double>(v[1]) / static_cast<double>(v[2]);
}

}  // namespace

ProcessUsage process_usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return {seconds(ru.ru_utime) + seconds(ru.ru_stime), static_cast<double>(ru.ru_maxrss) / 1024.0};
}

CacheCounters::CacheCounters() {
  references_ = open_counter(PERF_COUNT_HW_CACHE_REFERENCES);
  if (references_ >= 0) misses_ = open_counter(PERF_COUNT_HW_CACHE_MISSES);
  if (misses_ < 0) reason_ = why_not(errno);
}

CacheCounters::~CacheCounters() {
  for (int fd : {references_, misses_})
    if (fd >= 0) ::close(fd);
}

CacheCounters::Counts CacheCounters::read() const {
  if (!available()) return {};
  return {scaled_count(references_), scaled_count(misses_)};
}

}  // namespace cllm::train
