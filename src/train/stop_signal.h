// SIGINT/SIGTERM handling for long runs: the first signal asks the trainer to
// save and stop at the next step boundary; a second one exits at once (the
// checkpoint writer's rename-into-place keeps the last checkpoint whole).
//
// The handler must never run on a thread that executes oneDNN's JIT sgemm:
// those kernels (oneDNN < 3.11, Debian 12 ships 2.6) point rsp into the heap,
// so a signal frame pushed there corrupts the heap (oneDNN issue #4845; seen
// here as "free(): invalid pointer" after Ctrl-C). While a StopSignal lives,
// the thread that made it, and every thread it starts (the worker pool: make
// the StopSignal first), block SIGINT/SIGTERM; one watcher thread of its own
// leaves them unblocked and takes them.
#pragma once

#include <csignal>
#include <thread>

namespace cllm::train {

class StopSignal {
 public:
  // Installs the handlers, blocks the signals in the calling thread and
  // starts the watcher; the destructor undoes all three.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal_number() const;  // the first signal received, 0 if none

 private:
  sigset_t old_mask_{};
  std::thread watcher_;
};

}  // namespace cllm::train
