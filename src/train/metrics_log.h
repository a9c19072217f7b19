// DIR/metrics.jsonl: one JSON object per line, per step and per eval, flushed
// after each line so a crash loses at most the line being written.
#pragma once

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

namespace cllm::train {

class MetricsLog {
 public:
  // Appends to an existing file (a resumed run continues the same log).
  explicit MetricsLog(const std::filesystem::path& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const nlohmann::json& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace cllm::train
