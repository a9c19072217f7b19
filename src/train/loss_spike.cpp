#include "train/loss_spike.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/core.h>

namespace cllm::train {

LossSpikeDetector::LossSpikeDetector(double z, std::size_t window) : z_(z), window_(window) {
  if (!std::isfinite(z)) throw std::invalid_argument("--skip-spikes must be a finite number of standard deviations");
  if (window < kMinSamples)
    throw std::invalid_argument(fmt::format("loss spike window must be >= {}, got {}", kMinSamples, window));
}

double LossSpikeDetector::z_score(double loss) const {
  if (losses_.size() < kMinSamples) return 0.0;
  const double n = static_cast<double>(losses_.size());
  double mean = 0.0;
  for (double l : losses_) mean += l;
  mean /= n;
  double var = 0.0;
  for (double l : losses_) var += (l - mean) * (l - mean);
  const double sd = std::sqrt(var / n);
  // A flat window: any rise is infinitely many deviations; equal is none.
  if (sd == 0.0) return loss > mean ? std::numeric_limits<double>::infinity() : 0.0;
  return (loss - mean) / sd;
}

void LossSpikeDetector::add(double loss) {
  losses_.push_back(loss);
  if (losses_.size() > window_) losses_.pop_front();
}

std::string LossSpikeDetector::serialize() const {
  std::string out;
  for (double l : losses_) out += fmt::format("{}{}", out.empty() ? "" : ",", l);  // shortest round-trip form
  return out;
}

void LossSpikeDetector::restore(std::string_view text) {
  losses_.clear();
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    double value = 0.0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (ec != std::errc{} || end != item.data() + item.size() || !std::isfinite(value))
      throw std::invalid_argument("loss window: '" + std::string(item) + "' is not a finite number");
    add(value);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
  }
}

}  // namespace cllm::train
