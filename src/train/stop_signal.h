// SIGINT/SIGTERM handling for long runs: the first signal asks the trainer to
// save and stop at the next step boundary; a second one exits at once (the
// checkpoint writer's rename-into-place keeps the last checkpoint whole).
#pragma once

namespace cllm::train {

class StopSignal {
 public:
  // Installs the handlers; the destructor restores the previous ones.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal_number() const;  // the first signal received, 0 if none
};

}  // namespace cllm::train
