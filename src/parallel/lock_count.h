// Counts the process's blocking mutex acquisitions, so "0 blocking locks per
// step" is measured rather than assumed: linking this library interposes
// pthread_mutex_lock (what std::mutex::lock and the libraries' own mutexes
// call) in the executable, counts each call and forwards it to the next
// definition (libc's, or a sanitizer's interceptor, found with RTLD_NEXT).
// pthread_mutex_trylock does not block and is not counted.
//
// A call is also counted as contended when the mutex was held by another
// thread at that moment (a pthread_mutex_trylock first fails with EBUSY):
// the calls that actually had to wait. On a machine with few cores a
// library's per-call mutex is acquired often but rarely waited for; the
// contended count shows where that changes.
#pragma once

#include <cstdint>

namespace cllm::parallel {

// pthread_mutex_lock calls in the whole process since it started.
std::uint64_t mutex_locks_so_far();

// Those of them that found the mutex held and waited.
std::uint64_t contended_mutex_locks_so_far();

// Those the calling thread made. (Other threads lock too: OpenBLAS's
// pthread build starts a pool of one thread per further core when it loads,
// whichever backend runs, and each takes a mutex as it goes to sleep.)
std::uint64_t mutex_locks_on_this_thread();

}  // namespace cllm::parallel
