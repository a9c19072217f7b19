// Counts the process's heap allocations, so "allocates nothing" is measured
// rather than assumed. Linking this library into a test program interposes
// malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign (not
// the obsolete valloc and pvalloc) in the executable: every thread's calls
// are counted, the program's own and those inside the libraries it uses (the
// sgemm libraries call malloc themselves). Every operator new and
// reallocarray is counted through them too (libstdc++ and libc implement
// those with malloc, aligned_alloc and realloc), so operator new is not
// replaced: that would count each new twice. Calls to libc's mmap are counted
// apart (libraries also map memory directly; malloc's own mmaps are internal
// to libc and not seen).
//
// In sanitizer builds the sanitizer owns malloc: allocations are counted
// through its allocator hooks instead, which see every allocation but no
// mmap.
#pragma once

#include <cstdint>

namespace cllm::test {

struct AllocationCount {
  std::uint64_t calls = 0;  // allocation calls
  std::uint64_t bytes = 0;  // bytes asked for
  std::uint64_t mmaps = 0;  // libc mmap calls (not counted in sanitizer builds)
};

// Since the process started.
AllocationCount allocations_so_far();

// False in sanitizer builds (mmaps stays 0 there).
bool mmap_counted();

// Empty when the counting works in this build, otherwise why not.
const char* allocation_counting_unavailable();

}  // namespace cllm::test
