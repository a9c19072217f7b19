#include "parallel/lock_count.h"

#include <dlfcn.h>
#include <pthread.h>

#include <cerrno>

#include <atomic>

namespace cllm::parallel {
namespace {

using LockFn = int (*)(pthread_mutex_t*);

std::atomic<std::uint64_t> g_locks{0};
std::atomic<std::uint64_t> g_contended{0};
thread_local std::uint64_t t_locks = 0;
// Resolved on the first call; no function-local static (its guard could
// itself take a lock).
std::atomic<LockFn> g_next_lock{nullptr};

}  // namespace

std::uint64_t mutex_locks_so_far() { return g_locks.load(std::memory_order_relaxed); }

std::uint64_t contended_mutex_locks_so_far() { return g_contended.load(std::memory_order_relaxed); }

std::uint64_t mutex_locks_on_this_thread() { return t_locks; }

}  // namespace cllm::parallel

extern "C" int pthread_mutex_lock(pthread_mutex_t* mutex) {
  using namespace cllm::parallel;
  LockFn next = g_next_lock.load(std::memory_order_acquire);
  if (next == nullptr) {
    next = reinterpret_cast<LockFn>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
    g_next_lock.store(next, std::memory_order_release);
  }
  g_locks.fetch_add(1, std::memory_order_relaxed);
  ++t_locks;
  // Any answer but EBUSY is what pthread_mutex_lock would have returned
  // (acquired, EOWNERDEAD of a robust mutex, EINVAL); a recursive mutex the
  // caller holds is taken again by both. EBUSY: someone else holds it (or
  // the caller holds an error-checking one, and the lock reports EDEADLK).
  const int tried = pthread_mutex_trylock(mutex);
  if (tried != EBUSY) return tried;
  g_contended.fetch_add(1, std::memory_order_relaxed);
  return next(mutex);
}
