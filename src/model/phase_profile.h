// Where a forward/backward pass spends its time, by kind of work: the
// per-phase breakdown of `cllm bench model`. Off by default; when on, each
// layer function charges its wall time to one phase, exclusive of the phases
// it calls (attention's products count as matmul, not attention).
//
// Per thread: a worker profiles only its own passes, with no shared state.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace cllm::model {

enum class Phase { matmul, attention, layernorm, gelu, crossentropy, convert, other, count };
inline constexpr std::size_t kPhases = static_cast<std::size_t>(Phase::count);
std::string_view phase_name(Phase p);

using PhaseSeconds = std::array<double, kPhases>;

// Starts (true) or stops profiling on the calling thread; starting zeroes the totals.
void profile_phases(bool on);
// The calling thread's totals since profiling started.
PhaseSeconds phase_seconds();

// Charges its lifetime to `phase` on this thread when profiling is on
// (nested scopes pause the enclosing one); does nothing otherwise.
class PhaseScope {
 public:
  explicit PhaseScope(Phase phase);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  bool active_;
  Phase previous_;
};

}  // namespace cllm::model
