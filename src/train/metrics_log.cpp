#include "train/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cllm::train {

MetricsLog::MetricsLog(const std::filesystem::path& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_)
    throw std::runtime_error("cannot open metrics log '" + path.string() + "' for appending: " +
                             std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw std::runtime_error("cannot write metrics log '" + path_.string() + "': " + std::strerror(errno));
}

}  // namespace cllm::train
