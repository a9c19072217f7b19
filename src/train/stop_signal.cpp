#include "train/stop_signal.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

namespace cllm::train {
namespace {

// Set by the handler, which may run on any thread that leaves the signals
// unblocked (the watcher, or a library's own thread such as OpenBLAS's), and
// read by the trainer: a lock-free atomic, which is async-signal-safe.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
struct sigaction g_old_int{}, g_old_term{};
std::atomic<bool> g_watching{false};

extern "C" void on_stop_signal(int sig) {
  if (g_signal.load() != 0) {
    static const char msg[] = "\ncllm: second signal, exiting now without saving\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(128 + sig);
  }
  g_signal.store(sig);
  static const char msg[] = "\ncllm: stopping after this step (saving a checkpoint); signal again to exit now\n";
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// The watcher only sleeps: the kernel delivers a process-directed signal to a
// thread that does not block it, and the handler then runs here.
void watch() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  while (g_watching.load(std::memory_order_acquire)) g_watching.wait(true, std::memory_order_acquire);
}

}  // namespace

StopSignal::StopSignal() {
  g_signal.store(0);
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
  const sigset_t set = stop_signals();
  if (const int e = pthread_sigmask(SIG_BLOCK, &set, &old_mask_); e != 0)
    throw std::runtime_error(std::string("cannot block SIGINT/SIGTERM: ") + std::strerror(e));
  g_watching.store(true, std::memory_order_release);
  watcher_ = std::thread(watch);
}

StopSignal::~StopSignal() {
  g_watching.store(false, std::memory_order_release);
  g_watching.notify_all();
  watcher_.join();
  // A signal that arrives from here on finds the previous disposition.
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

bool StopSignal::requested() const { return g_signal.load() != 0; }
int StopSignal::signal_number() const { return g_signal.load(); }

}  // namespace cllm::train
