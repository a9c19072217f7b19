// Counts the process's blocking mutex acquisitions, so "0 blocking locks per
// step" is measured rather than assumed: linking this library interposes
// pthread_mutex_lock (what std::mutex::lock and the libraries' own mutexes
// call) in the executable, counts each call and forwards it to the next
// definition (libc's, or a sanitizer's interceptor, found with RTLD_NEXT).
// pthread_mutex_trylock does not block and is not counted.
#pragma once

#include <cstdint>

namespace cllm::parallel {

// pthread_mutex_lock calls in the whole process since it started.
std::uint64_t mutex_locks_so_far();

}  // namespace cllm::parallel
