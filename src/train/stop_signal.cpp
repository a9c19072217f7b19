#include "train/stop_signal.h"

#include <unistd.h>

#include <csignal>

namespace cllm::train {
namespace {

volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_old_int{}, g_old_term{};

extern "C" void on_stop_signal(int sig) {
  if (g_signal != 0) {
    static const char msg[] = "\ncllm: second signal, exiting now without saving\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(128 + sig);
  }
  g_signal = sig;
  static const char msg[] = "\ncllm: stopping after this step (saving a checkpoint); signal again to exit now\n";
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}

}  // namespace

StopSignal::StopSignal() {
  g_signal = 0;
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool StopSignal::requested() const { return g_signal != 0; }
int StopSignal::signal_number() const { return g_signal; }

}  // namespace cllm::train
