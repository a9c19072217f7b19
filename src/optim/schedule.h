// Learning-rate schedules: linear warmup from max_lr / warmup_steps to max_lr
// over warmup_steps, then constant, linear or cosine decay to min_lr at
// total_steps (and min_lr after it).
#pragma once

#include <cstddef>
#include <string_view>

namespace cllm::optim {

enum class LrScheduleKind { constant, linear, cosine };

// "constant", "linear" or "cosine"; throws std::invalid_argument naming the input.
LrScheduleKind parse_lr_schedule(std::string_view name);
std::string_view lr_schedule_name(LrScheduleKind kind);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::cosine;
  double max_lr = 1e-3;
  double min_lr = 0.0;
  std::size_t warmup_steps = 0;
  std::size_t total_steps = 1;

  // Throws std::invalid_argument unless 0 <= min_lr <= max_lr, max_lr > 0,
  // total_steps >= 1 and warmup_steps <= total_steps.
  void validate() const;
  // Learning rate of step `step`, counted from 0.
  double at(std::size_t step) const;
};

}  // namespace cllm::optim
