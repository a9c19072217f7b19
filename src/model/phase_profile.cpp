#include "model/phase_profile.h"

#include <chrono>

namespace cllm::model {
namespace {

using Clock = std::chrono::steady_clock;

struct ThreadProfile {
  bool on = false;
  Phase current = Phase::other;  // charged until the next switch
  Clock::time_point since;
  PhaseSeconds totals{};

  // Charges the time since the last switch to the current phase, then moves to `next`.
  void switch_to(Phase next) {
    const Clock::time_point now = Clock::now();
    totals[static_cast<std::size_t>(current)] += std::chrono::duration<double>(now - since).count();
    since = now;
    current = next;
  }
};

thread_local ThreadProfile profile;

}  // namespace

std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::matmul: return "matmul";
    case Phase::attention: return "attention";
    case Phase::layernorm: return "layernorm";
    case Phase::gelu: return "gelu";
    case Phase::crossentropy: return "crossentropy";
    case Phase::convert: return "convert";
    case Phase::other: return "other";
    case Phase::count: break;
  }
  return "unknown";
}

void profile_phases(bool on) {
  if (on) {
    profile.totals = {};
    profile.current = Phase::other;
    profile.since = Clock::now();
  } else if (profile.on) {
    profile.switch_to(Phase::other);
  }
  profile.on = on;
}

PhaseSeconds phase_seconds() {
  if (profile.on) profile.switch_to(profile.current);
  return profile.totals;
}

PhaseScope::PhaseScope(Phase phase) : active_(profile.on), previous_(profile.current) {
  if (active_) profile.switch_to(phase);
}

PhaseScope::~PhaseScope() {
  if (active_ && profile.on) profile.switch_to(previous_);
}

}  // namespace cllm::model
