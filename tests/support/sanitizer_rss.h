// Why the process's RSS means nothing in this build (a reason for
// GTEST_SKIP), or nullptr when it can be measured.
#pragma once

namespace cllm::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr const char* kSanitizerRss = "a sanitizer's shadow memory and allocator are in the RSS";
#else
inline constexpr const char* kSanitizerRss = nullptr;
#endif

}  // namespace cllm::test
