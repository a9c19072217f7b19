// A persistent pool of worker threads ("spheres"). Worker 0 is the thread
// that calls run(); workers 1..N-1 are created once by the constructor and
// live until the destructor, so a step never creates a thread. Between runs
// a worker spins briefly (only when the pool fits the cores) and then sleeps
// on an atomic wait (futex), so an idle pool burns no core.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace cllm::parallel {

// Keeps a hot shared atomic on its own cache line.
inline constexpr std::size_t kCacheLine = 64;

// Cores this process may run on (its CPU affinity mask, so taskset and
// cgroup cpusets count), at least 1.
std::size_t available_cores();

class WorkerPool {
 public:
  static constexpr std::size_t kMaxThreads = 256;

  // threads in [1, kMaxThreads] whatever the core count; throws
  // std::invalid_argument otherwise.
  explicit WorkerPool(std::size_t threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs fn(w) for every w in [0, threads()) at once, w = 0 on the calling
  // thread, and returns when all have returned. If any fn throws, the first
  // exception (lowest w) is rethrown after all have returned. Not reentrant:
  // one run at a time, from one thread.
  void run(const std::function<void(std::size_t worker)>& fn);

  std::size_t threads() const { return n_threads_; }

 private:
  void worker_main(std::size_t w);
  void execute(std::size_t w);

  std::size_t n_threads_;
  std::size_t spin_iterations_;
  const std::function<void(std::size_t)>* job_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
  // Bumped once per run (and at shutdown); workers wait on it.
  alignas(kCacheLine) std::atomic<std::uint32_t> generation_{0};
  // Workers of the current run that have not finished; the caller waits on it.
  alignas(kCacheLine) std::atomic<std::uint32_t> remaining_{0};
  alignas(kCacheLine) std::atomic<bool> stopping_{false};
};

}  // namespace cllm::parallel
