#include "train/process_stats.h"

#include <sys/resource.h>

namespace cllm::train {

ProcessUsage process_usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return {seconds(ru.ru_utime) + seconds(ru.ru_stime), static_cast<double>(ru.ru_maxrss) / 1024.0};
}

}  // namespace cllm::train
