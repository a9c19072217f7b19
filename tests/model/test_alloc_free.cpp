// "A forward/backward pass allocates nothing" (issue 4), measured: every heap
// allocation of the process is counted (support/alloc_count.h) while
// forward, backward and KV-cache generation steps run on a Workspace and a
// cache made beforehand. With the naive and openblas sgemm none may happen;
// oneDNN allocates inside itself on every product (see below). One warm-up pass comes first, since the sgemm
// libraries set up per calling thread and per product shape on first use.
// The counting itself is checked against allocations made on purpose.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "kernels/sgemm.h"
#include "model/gpt.h"
#include "support/alloc_count.h"
#include "support/rerun.h"

namespace cllm::model {
namespace {

using test::AllocationCount;
using test::allocations_so_far;

// Keeps the compiler from removing an allocation whose result is unused.
void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

AllocationCount since(const AllocationCount& before) {
  const AllocationCount now = allocations_so_far();
  return {now.calls - before.calls, now.bytes - before.bytes, now.mmaps - before.mmaps};
}

std::string describe(const AllocationCount& c) {
  return std::to_string(c.calls) + " allocations (" + std::to_string(c.bytes) + " bytes), " +
         std::to_string(c.mmaps) + " mmap calls";
}

#define SKIP_IF_NOT_COUNTED()                                                               \
  if (const char* why = test::allocation_counting_unavailable(); *why != '\0')              \
  GTEST_SKIP() << "heap allocations cannot be counted in this build: " << why

TEST(AllocationCount, SeesEveryWayToAllocate) {
  SKIP_IF_NOT_COUNTED();
  struct alignas(128) Aligned {
    char bytes[128];
  };
  struct Way {
    const char* name;
    void (*allocate_and_free)();
  };
  const Way ways[] = {
      {"new", [] { int* p = new int(1); escape(p); delete p; }},
      {"new[]", [] { int* p = new int[3]; escape(p); delete[] p; }},
      {"nothrow new", [] { int* p = new (std::nothrow) int(1); escape(p); delete p; }},
      {"nothrow new[]", [] { int* p = new (std::nothrow) int[3]; escape(p); delete[] p; }},
      {"aligned new", [] { Aligned* p = new Aligned; escape(p); delete p; }},
      {"aligned new[]", [] { Aligned* p = new Aligned[2]; escape(p); delete[] p; }},
      {"aligned nothrow new", [] { Aligned* p = new (std::nothrow) Aligned; escape(p); delete p; }},
      {"aligned nothrow new[]", [] { Aligned* p = new (std::nothrow) Aligned[2]; escape(p); delete[] p; }},
      {"malloc", [] { void* p = std::malloc(10); escape(p); std::free(p); }},
      {"calloc", [] { void* p = std::calloc(2, 10); escape(p); std::free(p); }},
      {"realloc", [] { void* p = std::realloc(nullptr, 10); escape(p); std::free(p); }},
      {"reallocarray", [] { void* p = reallocarray(nullptr, 2, 10); escape(p); std::free(p); }},
      {"posix_memalign", [] { void* p = nullptr; ASSERT_EQ(posix_memalign(&p, 64, 10), 0); escape(p); std::free(p); }},
      {"aligned_alloc", [] { void* p = std::aligned_alloc(64, 64); escape(p); std::free(p); }},
      {"memalign", [] { void* p = memalign(64, 10); escape(p); std::free(p); }},
  };
  for (const Way& way : ways) {
    const AllocationCount before = allocations_so_far();
    way.allocate_and_free();
    const AllocationCount got = since(before);
    EXPECT_EQ(got.calls, 1u) << way.name;
    EXPECT_GT(got.bytes, 0u) << way.name;
  }
  const AllocationCount before = allocations_so_far();
  void* map = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const AllocationCount got = since(before);
  ASSERT_NE(map, MAP_FAILED);
  munmap(map, 4096);
  EXPECT_EQ(got.calls, 0u);
  EXPECT_EQ(got.mmaps, test::mmap_counted() ? 1u : 0u);
}

// Products from 4 K to 8 M multiply-adds, so the sgemm libraries' small- and
// large-product paths both run; two attention row blocks of 64.
const Config kConfig{256, 1, 128, 4, 128};
constexpr int kSeq = 128;
constexpr int kPasses = 2, kSteps = 8;

TEST(AllocationFree, TrainingPassAndGenerationStep) {
  SKIP_IF_NOT_COUNTED();
  const ParamLayout layout(kConfig);
  std::vector<float> params(layout.total()), grad(layout.total());
  init_params(layout, params.data(), 1);
  std::vector<std::int32_t> tokens(kSeq), targets(kSeq);
  for (int i = 0; i < kSeq; ++i) {
    tokens[static_cast<std::size_t>(i)] = (7 * i) % kConfig.vocab;
    targets[static_cast<std::size_t>(i)] = (7 * i + 1) % kConfig.vocab;
  }
  Workspace ws(kConfig, 1, kSeq);
  KvCache cache(kConfig);
  // An evaluation forward, then a training forward+backward.
  auto train_pass = [&](AllocationCount& in_forward, AllocationCount& in_backward) {
    AllocationCount before = allocations_so_far();
    forward(layout, params.data(), tokens.data(), targets.data(), 1, kSeq, ws);
    in_forward = since(before);
    before = allocations_so_far();
    forward_backward(layout, params.data(), tokens.data(), targets.data(), 1, kSeq, grad.data(), 1.0f, false, ws);
    in_backward = since(before);
  };
  AllocationCount warm_forward, warm_backward, fwd[kPasses], bwd[kPasses];
  train_pass(warm_forward, warm_backward);
  for (int i = 0; i < kPasses; ++i) train_pass(fwd[i], bwd[i]);
  cache.step(layout, params.data(), tokens[0]);
  AllocationCount before = allocations_so_far();
  for (int t = 1; t <= kSteps; ++t) cache.step(layout, params.data(), tokens[static_cast<std::size_t>(t)]);
  const AllocationCount steps = since(before);

  const kernels::GemmBackend chosen = kernels::gemm_backend();
  const std::string backend = "sgemm backend " + std::string(kernels::gemm_backend_name(chosen));
  if (chosen == kernels::GemmBackend::onednn) {
    // oneDNN 2.6 allocates inside the library on every product (dnnl_sgemm a
    // packing buffer, a matmul primitive's execute its argument map; nothing
    // in its public API avoids either). What the model does is shown by the
    // other backends, which must allocate nothing; here the library's
    // allocations must be the same every pass (freed, not growing), and are
    // printed.
    for (int i = 1; i < kPasses; ++i) {
      EXPECT_EQ(fwd[i].calls, fwd[0].calls) << backend << ", forward " << i + 1 << ": " << describe(fwd[i]);
      EXPECT_EQ(bwd[i].calls, bwd[0].calls) << backend << ", forward+backward " << i + 1 << ": " << describe(bwd[i]);
    }
    std::printf("%s allocates inside oneDNN on every product: forward %s, forward+backward %s, %d KV-cache steps %s\n",
                backend.c_str(), describe(fwd[0]).c_str(), describe(bwd[0]).c_str(), kSteps,
                describe(steps).c_str());
    return;
  }
  for (int i = 0; i < kPasses; ++i) {
    EXPECT_TRUE(fwd[i].calls == 0 && fwd[i].mmaps == 0)
        << backend << ", forward " << i + 1 << " after the warm-up: " << describe(fwd[i]);
    EXPECT_TRUE(bwd[i].calls == 0 && bwd[i].mmaps == 0)
        << backend << ", forward+backward " << i + 1 << " after the warm-up: " << describe(bwd[i]);
  }
  EXPECT_TRUE(steps.calls == 0 && steps.mmaps == 0)
      << backend << ", " << kSteps << " KV-cache steps after the first: " << describe(steps);
  std::printf("%s: warm-up forward %s, forward+backward %s\n", backend.c_str(), describe(warm_forward).c_str(),
              describe(warm_backward).c_str());
}

// gemm_backend() reads CLLM_GEMM once per process, so each backend runs the
// test above in a child process of this program.
TEST(AllocationFree, EveryGemmBackend) {
  SKIP_IF_NOT_COUNTED();
  for (const kernels::GemmBackend b : kernels::available_gemm_backends()) {
    const test::ChildRun run = test::rerun_this_program("CLLM_GEMM=" + std::string(kernels::gemm_backend_name(b)),
                                                        "AllocationFree.TrainingPassAndGenerationStep");
    EXPECT_TRUE(run.passed(1)) << run.command << "\n" << run.output;
  }
}

}  // namespace
}  // namespace cllm::model
