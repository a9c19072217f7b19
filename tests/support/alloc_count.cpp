#include "support/alloc_count.h"

#include <atomic>
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CLLM_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define CLLM_SANITIZER_ALLOCATOR 1
#endif
#endif

namespace cllm::test {
namespace {

std::atomic<std::uint64_t> g_calls{0}, g_bytes{0}, g_mmaps{0};

void count(std::size_t bytes) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

}  // namespace

AllocationCount allocations_so_far() {
  return {g_calls.load(std::memory_order_relaxed), g_bytes.load(std::memory_order_relaxed),
          g_mmaps.load(std::memory_order_relaxed)};
}

}  // namespace cllm::test

#ifdef CLLM_SANITIZER_ALLOCATOR

#include <malloc.h>

#include <cstdlib>

// Defining malloc here would replace the sanitizer's and blind it; its
// allocator calls these hooks instead (GCC 12 ships no
// <sanitizer/allocator_interface.h>, the runtimes export the function).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, std::size_t),
                                                         void (*free_hook)(const volatile void*));

namespace cllm::test {
namespace {

thread_local std::uint64_t t_hook_calls = 0;

void on_malloc(const volatile void*, std::size_t bytes) {
  count(bytes);
  ++t_hook_calls;
}
void on_free(const volatile void*) {}

const int g_hooks = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);

// GCC 12's TSan calls the hooks from its malloc, calloc, realloc and operator
// new but not from posix_memalign, aligned_alloc or memalign (oneDNN uses
// posix_memalign): tried here, on this thread, rather than assumed.
bool hooks_see_aligned_allocations() {
  const std::uint64_t before = t_hook_calls;
  void* volatile p = nullptr;
  if (posix_memalign(const_cast<void**>(&p), 64, 64) == 0) std::free(p);
  p = std::aligned_alloc(64, 64);
  std::free(p);
  p = memalign(64, 64);
  std::free(p);
  return t_hook_calls - before == 3;
}

}  // namespace

bool mmap_counted() { return false; }

const char* allocation_counting_unavailable() {
  if (g_hooks == 0) return "the sanitizer runtime refused __sanitizer_install_malloc_and_free_hooks";
  static const bool aligned_seen = hooks_see_aligned_allocations();
  return aligned_seen ? "" : "this sanitizer's allocator hooks miss posix_memalign, aligned_alloc and memalign";
}

}  // namespace cllm::test

#else

#include <dlfcn.h>
#include <sys/mman.h>

namespace cllm::test {
namespace {

// The next definition (libc's), resolved on first use: the first malloc
// comes before any static initializer could resolve it. A successful dlsym
// does not allocate (glibc 2.34+), so this does not recurse.
template <typename Fn>
Fn next(std::atomic<Fn>& slot, const char* name) {
  Fn fn = slot.load(std::memory_order_acquire);
  if (fn == nullptr) {
    fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    slot.store(fn, std::memory_order_release);
  }
  return fn;
}

std::atomic<void* (*)(std::size_t)> g_malloc{nullptr};
std::atomic<void* (*)(std::size_t, std::size_t)> g_calloc{nullptr}, g_aligned_alloc{nullptr}, g_memalign{nullptr};
std::atomic<void* (*)(void*, std::size_t)> g_realloc{nullptr};
std::atomic<int (*)(void**, std::size_t, std::size_t)> g_posix_memalign{nullptr};
std::atomic<void* (*)(void*, std::size_t, int, int, int, off_t)> g_mmap{nullptr};

}  // namespace

bool mmap_counted() { return true; }

const char* allocation_counting_unavailable() { return ""; }

}  // namespace cllm::test

using namespace cllm::test;

extern "C" void* malloc(std::size_t size) noexcept {
  count(size);
  return next(g_malloc, "malloc")(size);
}

extern "C" void* calloc(std::size_t n, std::size_t size) noexcept {
  count(n * size);
  return next(g_calloc, "calloc")(n, size);
}

extern "C" void* realloc(void* p, std::size_t size) noexcept {
  count(size);
  return next(g_realloc, "realloc")(p, size);
}

extern "C" int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept {
  count(size);
  return next(g_posix_memalign, "posix_memalign")(out, alignment, size);
}

extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  count(size);
  return next(g_aligned_alloc, "aligned_alloc")(alignment, size);
}

extern "C" void* memalign(std::size_t alignment, std::size_t size) noexcept {
  count(size);
  return next(g_memalign, "memalign")(alignment, size);
}

extern "C" void* mmap(void* addr, std::size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  g_mmaps.fetch_add(1, std::memory_order_relaxed);
  return next(g_mmap, "mmap")(addr, length, prot, flags, fd, offset);
}

#endif
