#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace cllm::optim {

LrScheduleKind parse_lr_schedule(std::string_view name) {
  if (name == "constant") return LrScheduleKind::constant;
  if (name == "linear") return LrScheduleKind::linear;
  if (name == "cosine") return LrScheduleKind::cosine;
  throw std::invalid_argument("unknown learning-rate schedule '" + std::string(name) +
                              "': expected constant, linear or cosine");
}

std::string_view lr_schedule_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::constant: return "constant";
    case LrScheduleKind::linear: return "linear";
    case LrScheduleKind::cosine: return "cosine";
  }
  return "?";
}

void LrSchedule::validate() const {
  if (!(max_lr > 0.0)) throw std::invalid_argument("learning rate must be > 0, got " + std::to_string(max_lr));
  if (!(min_lr >= 0.0 && min_lr <= max_lr)) {
    throw std::invalid_argument("min learning rate must be in [0, " + std::to_string(max_lr) + "], got " +
                                std::to_string(min_lr));
  }
  if (total_steps == 0) throw std::invalid_argument("schedule: total steps must be >= 1");
  if (warmup_steps > total_steps) {
    throw std::invalid_argument("warmup steps (" + std::to_string(warmup_steps) + ") exceed total steps (" +
                                std::to_string(total_steps) + ")");
  }
}

double LrSchedule::at(std::size_t step) const {
  if (step < warmup_steps) {
    return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  if (kind == LrScheduleKind::constant) return max_lr;
  const std::size_t decay_steps = total_steps - warmup_steps;
  const double progress =
      decay_steps == 0 ? 1.0
                       : std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  const double span = max_lr - min_lr;
  const double fraction = kind == LrScheduleKind::linear ? 1.0 - progress
                                                         : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return min_lr + fraction * span;
}

}  // namespace cllm::optim
