#include "train/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include <fmt/core.h>

namespace cllm::train {

std::string format_duration(double seconds) {
  const auto s = std::isfinite(seconds) && seconds > 0 ? static_cast<std::uint64_t>(seconds) : std::uint64_t{0};
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60);
}

double eta_seconds(double elapsed, std::size_t done, std::size_t remaining) {
  return elapsed / static_cast<double>(done) * static_cast<double>(remaining);
}

ProgressLine::ProgressLine() : enabled_(::isatty(STDOUT_FILENO) == 1) {}

ProgressLine::~ProgressLine() { clear(); }

void ProgressLine::show(std::string_view text) {
  if (!enabled_) return;
  fmt::print("\r{}\x1b[K", text);
  std::fflush(stdout);
  shown_ = true;
}

void ProgressLine::clear() {
  if (!shown_) return;
  fmt::print("\r\x1b[K");
  std::fflush(stdout);
  shown_ = false;
}

}  // namespace cllm::train
