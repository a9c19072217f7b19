// Every compiled sgemm backend against sgemm_naive: odd shapes, all four
// transpose combinations, alpha/beta, padded leading dimensions, concurrent
// callers, and no threads of its own.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/sgemm.h"
#include "parallel/lock_count.h"
#include "support/bf16_skip.h"
#include "support/rerun.h"

namespace k = cllm::kernels;

namespace {

struct Matrices {
  k::GemmShape shape;
  std::vector<float> a, b, c;
};

// Fills A, B and C (including the padding past each row's width) with values
// in [-1, 1]; the padding of C must survive the product untouched.
Matrices make_problem(bool trans_a, bool trans_b, int m, int n, int k, float alpha, float beta, int pad,
                      unsigned seed) {
  Matrices p;
  k::GemmShape& s = p.shape;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.m = m;
  s.n = n;
  s.k = k;
  s.alpha = alpha;
  s.beta = beta;
  const int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const int b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  s.lda = a_cols + pad;
  s.ldb = b_cols + pad;
  s.ldc = n + pad;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, std::size_t size) {
    v.resize(size);
    for (float& x : v) x = dist(rng);
  };
  fill(p.a, static_cast<std::size_t>(a_rows) * s.lda);
  fill(p.b, static_cast<std::size_t>(b_rows) * s.ldb);
  fill(p.c, static_cast<std::size_t>(m) * s.ldc);
  return p;
}

// Float rounding of a k-term dot product with |terms| <= 1, plus the beta term.
float tolerance(const k::GemmShape& s) {
  return 1e-5f * (std::fabs(s.alpha) * static_cast<float>(s.k) + std::fabs(s.beta) + 1.0f);
}

void expect_matches_naive(k::GemmBackend backend, Matrices p) {
  std::vector<float> expected = p.c;
  k::sgemm_naive(p.shape, p.a.data(), p.b.data(), expected.data());
  k::sgemm(backend, p.shape, p.a.data(), p.b.data(), p.c.data());
  const float tol = tolerance(p.shape);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_NEAR(p.c[i], expected[i], tol) << "element " << i << " (row " << i / p.shape.ldc << ", col "
                                          << i % p.shape.ldc << ", ldc " << p.shape.ldc << ")";
  }
}

std::string describe(const k::GemmShape& s) {
  return std::string(s.trans_a ? "T" : "N") + (s.trans_b ? "T" : "N") + " m=" + std::to_string(s.m) +
         " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + " alpha=" + std::to_string(s.alpha) +
         " beta=" + std::to_string(s.beta) + " lda=" + std::to_string(s.lda);
}

int thread_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

class GemmBackendTest : public ::testing::TestWithParam<k::GemmBackend> {};

TEST_P(GemmBackendTest, MatchesNaiveOnOddShapesAllTransposesAlphaBetaAndPadding) {
  struct Dims { int m, n, k; };
  // onednn runs these through dnnl_sgemm (the dense A B^T ones of 16+ rows
  // through brgemm matmul); OnednnBrgemmPathToo below runs every dense one through
  // brgemm matmul (padded ones stay with dnnl_sgemm there).
  const Dims dims[] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 96, 48}, {129, 31, 257}, {3, 200, 9}, {160, 200, 144}};
  struct Scale { float alpha, beta; };
  const Scale scales[] = {{1.0f, 0.0f}, {0.5f, -1.5f}, {-2.0f, 1.0f}};
  unsigned seed = 1;
  for (const Dims& d : dims) {
    for (int trans = 0; trans < 4; ++trans) {
      for (const Scale& sc : scales) {
        for (int pad : {0, 5}) {
          Matrices p = make_problem(trans & 1, trans & 2, d.m, d.n, d.k, sc.alpha, sc.beta, pad, seed++);
          SCOPED_TRACE(describe(p.shape));
          expect_matches_naive(GetParam(), std::move(p));
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_P(GemmBackendTest, BetaZeroOverwritesNaNInC) {
  Matrices p = make_problem(false, true, 9, 11, 13, 1.0f, 0.0f, 2, 7);
  for (int i = 0; i < p.shape.m; ++i) {
    for (int j = 0; j < p.shape.n; ++j) p.c[i * p.shape.ldc + j] = std::numeric_limits<float>::quiet_NaN();
  }
  expect_matches_naive(GetParam(), std::move(p));
}

TEST_P(GemmBackendTest, EmptyInnerDimensionOnlyScalesC) {
  Matrices p = make_problem(false, false, 4, 6, 0, 1.0f, 0.5f, 1, 3);
  std::vector<float> expected = p.c;
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 6; ++j) expected[i * p.shape.ldc + j] *= 0.5f;
  }
  k::sgemm(GetParam(), p.shape, p.a.data(), p.b.data(), p.c.data());
  EXPECT_EQ(p.c, expected);
}

TEST_P(GemmBackendTest, FourConcurrentCallersGetCorrectResults) {
  constexpr int kThreads = 4, kRepeats = 20;
  std::vector<Matrices> problems;
  std::vector<std::vector<float>> expected;
  for (int t = 0; t < kThreads; ++t) {
    problems.push_back(make_problem(t & 1, t & 2, 96 + t, 80 - t, 112 + 3 * t, 1.0f, 0.0f, t, 100 + t));
    expected.push_back(problems.back().c);
    const Matrices& p = problems.back();
    k::sgemm_naive(p.shape, p.a.data(), p.b.data(), expected.back().data());
  }
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Matrices& p = problems[t];
      const float tol = tolerance(p.shape);
      for (int r = 0; r < kRepeats; ++r) {
        k::sgemm(GetParam(), p.shape, p.a.data(), p.b.data(), p.c.data());
        for (std::size_t i = 0; i < p.c.size(); ++i) mismatches[t] += std::fabs(p.c[i] - expected[t][i]) > tol;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "caller " << t;
}

// A backend computes on the calling thread: a product big enough for the
// library to parallelize leaves the process with as many threads as before
// (OpenMP and OpenBLAS keep the threads they start, so any would show).
TEST_P(GemmBackendTest, StartsNoThreads) {
  Matrices p = make_problem(false, false, 256, 256, 256, 1.0f, 0.0f, 0, 11);
  const int before = thread_count();
  for (int r = 0; r < 3; ++r) k::sgemm(GetParam(), p.shape, p.a.data(), p.b.data(), p.c.data());
  std::thread other([&] { k::sgemm(GetParam(), p.shape, p.a.data(), p.b.data(), p.c.data()); });
  other.join();
  EXPECT_EQ(thread_count(), before);
}

// With CLLM_ONEDNN_MATMUL_MAX (read once per process) the onednn backend
// runs products up to that size as brgemm matmul primitives: the backend's
// tests again in a child process with every product eligible.
TEST(GemmOnednnPaths, OnednnBrgemmPathToo) {
  if (!k::gemm_backend_available(k::GemmBackend::onednn)) GTEST_SKIP() << "this build has no onednn backend";
  const cllm::test::ChildRun run =
      cllm::test::rerun_this_program("CLLM_ONEDNN_MATMUL_MAX=1e30", "Compiled/GemmBackendTest.*/onednn");
  EXPECT_TRUE(run.passed(5)) << run.command << "\n" << run.output;
}

// Products marked lock_free (attention's shapes: row blocks of 64 against
// 64-256 keys, head sizes 32-128) run on onednn's brgemm path, whatever
// CLLM_ONEDNN_MATMUL_MAX says: the results match, and once a thread has run a
// shape, running it again takes no mutex on that thread (the backend starts
// no thread: StartsNoThreads).
TEST(GemmOnednnPaths, LockFreeProductsMatchAndTakeNoLock) {
  if (!k::gemm_backend_available(k::GemmBackend::onednn)) GTEST_SKIP() << "this build has no onednn backend";
  if (!k::lock_free_products_available())
    GTEST_SKIP() << "oneDNN has no brgemm matmul for this CPU (AVX-512 and up): lock-free shapes take dnnl_sgemm";
  struct Dims { int m, n, k; };
  const Dims dims[] = {{64, 64, 32}, {64, 128, 64}, {64, 64, 256}, {256, 128, 64}, {64, 192, 128}};
  unsigned seed = 500;
  for (const Dims& d : dims) {
    for (int trans = 0; trans < 4; ++trans) {
      for (const float beta : {0.0f, 1.0f}) {
        Matrices p = make_problem(trans & 1, trans & 2, d.m, d.n, d.k, beta == 0.0f ? 0.125f : 1.0f, beta, 0, seed++);
        p.shape.lock_free = true;
        SCOPED_TRACE(describe(p.shape));
        std::vector<float> c = p.c;
        k::sgemm(k::GemmBackend::onednn, p.shape, p.a.data(), p.b.data(), c.data());  // the thread's first: may lock
        const std::uint64_t locks_before = cllm::parallel::mutex_locks_on_this_thread();
        expect_matches_naive(k::GemmBackend::onednn, std::move(p));
        EXPECT_EQ(cllm::parallel::mutex_locks_on_this_thread() - locks_before, 0u);
        if (HasFailure()) return;
      }
    }
  }
}

// With more threads than compute lanes a different thread may join each
// step: its first run of a shape that another thread made takes no mutex
// either (the thread's own set-up, on an unrelated shape first, may).
TEST(GemmOnednnPaths, LateThreadRunsTheOthersShapesWithoutALock) {
  if (!k::gemm_backend_available(k::GemmBackend::onednn)) GTEST_SKIP() << "this build has no onednn backend";
  if (!k::lock_free_products_available())
    GTEST_SKIP() << "oneDNN has no brgemm matmul for this CPU (AVX-512 and up): lock-free shapes take dnnl_sgemm";
  Matrices made = make_problem(false, true, 48, 96, 80, 1.0f, 0.0f, 0, 900);
  made.shape.lock_free = true;
  std::vector<float> c = made.c;
  k::sgemm(k::GemmBackend::onednn, made.shape, made.a.data(), made.b.data(), c.data());  // makes the primitive

  std::uint64_t locks = 1;
  std::thread late([&] {
    Matrices warm = make_problem(false, false, 40, 24, 56, 1.0f, 0.0f, 0, 901);
    warm.shape.lock_free = true;
    k::sgemm(k::GemmBackend::onednn, warm.shape, warm.a.data(), warm.b.data(), warm.c.data());  // thread set-up
    const std::uint64_t before = cllm::parallel::mutex_locks_on_this_thread();
    expect_matches_naive(k::GemmBackend::onednn, std::move(made));
    locks = cllm::parallel::mutex_locks_on_this_thread() - before;
  });
  late.join();
  EXPECT_EQ(locks, 0u);
}


std::vector<k::bf16> rounded(const std::vector<float>& v) {
  std::vector<k::bf16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = k::to_bf16(v[i]);
  return out;
}

// The bf16 product against the oracle on the same rounded operands: only the
// f32 accumulation order differs (oneDNN's kernels may also round partial
// sums to bf16 on some paths, which this tolerance would catch at k >= 64).
TEST(GemmBf16, MatchesTheNaiveOracleOnOddShapesAllTransposesAlphaBetaAndPadding) {
  SKIP_WITHOUT_NATIVE_BF16();
  struct Dims { int m, n, k; };
  const Dims dims[] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 96, 48}, {129, 31, 257}, {3, 200, 9}, {128, 768, 256}};
  struct Scale { float alpha, beta; };
  const Scale scales[] = {{1.0f, 0.0f}, {0.125f, 1.0f}, {-2.0f, 0.5f}};
  unsigned seed = 100;
  for (const Dims& d : dims) {
    for (int trans = 0; trans < 4; ++trans) {
      for (const Scale& sc : scales) {
        for (int pad : {0, 3}) {
          Matrices p = make_problem(trans & 1, trans & 2, d.m, d.n, d.k, sc.alpha, sc.beta, pad, seed++);
          SCOPED_TRACE(describe(p.shape));
          const std::vector<k::bf16> a = rounded(p.a), b = rounded(p.b);
          std::vector<float> expected = p.c;
          k::gemm_bf16_naive(p.shape, a.data(), b.data(), expected.data());
          k::gemm_bf16(p.shape, a.data(), b.data(), p.c.data());
          const float tol = tolerance(p.shape);
          for (std::size_t i = 0; i < expected.size(); ++i)
            ASSERT_NEAR(p.c[i], expected[i], tol) << "element " << i << " (row " << i / p.shape.ldc << ")";
        }
      }
    }
  }
}

// The bf16-result product (with and without a bias row) against the oracle on
// the same operands: equal up to the accumulation order, which may move a
// sum across a rounding boundary (one bf16 step of the result); C's padding
// past each row's width survives.
TEST(GemmBf16, RoundedResultWithBiasMatchesTheNaiveOracle) {
  SKIP_WITHOUT_NATIVE_BF16();
  struct Dims { int m, n, k; };
  const Dims dims[] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {129, 31, 257}, {128, 768, 256}};
  unsigned seed = 300;
  for (const Dims& d : dims) {
    for (int trans = 0; trans < 4; ++trans) {
      for (bool with_bias : {false, true}) {
        const Matrices p = make_problem(trans & 1, trans & 2, d.m, d.n, d.k, 1.0f, 0.0f, 3, seed++);
        SCOPED_TRACE(describe(p.shape) + (with_bias ? " with bias" : ""));
        const std::vector<k::bf16> a = rounded(p.a), b = rounded(p.b), padding = rounded(p.c);
        const std::vector<float> bias = make_problem(false, false, 1, d.n, 1, 1.0f, 0.0f, 0, seed++).b;  // 1 x n
        std::vector<k::bf16> expected = padding, got = padding;
        k::gemm_bf16_rounded_naive(p.shape, a.data(), b.data(), with_bias ? bias.data() : nullptr, expected.data());
        k::gemm_bf16_rounded(p.shape, a.data(), b.data(), with_bias ? bias.data() : nullptr, got.data());
        for (std::size_t i = 0; i < expected.size(); ++i) {
          const float e = k::to_float(expected[i]), g = k::to_float(got[i]);
          ASSERT_NEAR(g, e, tolerance(p.shape) + 0x1p-7f * std::fabs(e)) << "element " << i;  // >= one bf16 step
        }
        for (std::size_t i = 0; i < got.size(); ++i) {
          if (static_cast<int>(i % static_cast<std::size_t>(p.shape.ldc)) >= d.n) {
            ASSERT_EQ(k::to_float(got[i]), k::to_float(padding[i])) << "padding element " << i;
          }
        }
      }
    }
  }
  k::GemmShape scaled = make_problem(false, false, 2, 2, 2, 0.5f, 0.0f, 0, 1).shape;
  std::vector<k::bf16> two(4, k::to_bf16(1.0f)), out(4);
  EXPECT_THROW(k::gemm_bf16_rounded(scaled, two.data(), two.data(), nullptr, out.data()), std::invalid_argument);
}

// Against the f32 product of the unrounded operands: within what rounding
// each operand to 8 significant bits allows (relative 2^-8 per operand).
TEST(GemmBf16, IsWithinBf16RoundingOfTheFloatProduct) {
  SKIP_WITHOUT_NATIVE_BF16();
  Matrices p = make_problem(true, false, 96, 80, 512, 1.0f, 0.0f, 0, 5);
  std::vector<float> exact = p.c;
  k::sgemm_naive(p.shape, p.a.data(), p.b.data(), exact.data());
  const std::vector<k::bf16> a = rounded(p.a), b = rounded(p.b);
  k::gemm_bf16(p.shape, a.data(), b.data(), p.c.data());
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < exact.size(); ++i) {
    const double diff = static_cast<double>(p.c[i]) - static_cast<double>(exact[i]);
    err += diff * diff;
    norm += static_cast<double>(exact[i]) * static_cast<double>(exact[i]);
  }
  EXPECT_LT(std::sqrt(err / norm), 2.0 * 0x1p-8);
  EXPECT_GT(std::sqrt(err / norm), 0.0) << "bf16 operands should not give the f32 product exactly";
}

TEST(GemmBf16, ConcurrentCallersOnSharedShapesGetCorrectResults) {
  SKIP_WITHOUT_NATIVE_BF16();
  Matrices p = make_problem(false, true, 64, 64, 64, 1.0f, 0.0f, 0, 9);
  const std::vector<k::bf16> a = rounded(p.a), b = rounded(p.b);
  std::vector<float> expected = p.c;
  k::gemm_bf16_naive(p.shape, a.data(), b.data(), expected.data());
  std::vector<std::vector<float>> results(4, p.c);
  std::vector<std::thread> threads;
  for (auto& r : results)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 20; ++rep) k::gemm_bf16(p.shape, a.data(), b.data(), r.data());
    });
  for (auto& t : threads) t.join();
  for (const auto& r : results)
    for (std::size_t i = 0; i < r.size(); ++i) ASSERT_NEAR(r[i], expected[i], tolerance(p.shape));
}

TEST(GemmBf16, SupportFollowsOnednnsIsaLimit) {
  if (!k::gemm_backend_available(k::GemmBackend::onednn)) GTEST_SKIP() << "this build has no onednn backend";
  if (std::getenv("ONEDNN_MAX_CPU_ISA") != nullptr) {
    // The child below: limited to AVX-512 without bf16.
    EXPECT_FALSE(k::bf16_support().native);
    EXPECT_NE(k::bf16_support().detail.find("neither AMX-BF16 nor AVX512_BF16"), std::string::npos)
        << k::bf16_support().detail;
    return;
  }
  std::cout << "bf16 here: " << (k::bf16_support().native ? "native, " : "not native, ") << k::bf16_support().detail
            << "\n";
  const auto child = cllm::test::rerun_this_program("ONEDNN_MAX_CPU_ISA=AVX512_CORE",
                                                    "GemmBf16.SupportFollowsOnednnsIsaLimit");
  EXPECT_TRUE(child.passed(1)) << child.command << "\n" << child.output;
}

INSTANTIATE_TEST_SUITE_P(Compiled, GemmBackendTest, ::testing::ValuesIn(k::available_gemm_backends()),
                         [](const auto& param_info) { return std::string(k::gemm_backend_name(param_info.param)); });

TEST(GemmBackendChoice, NamesParseAndAutoPicksACompiledBackend) {
  for (k::GemmBackend b : k::available_gemm_backends()) EXPECT_EQ(k::parse_gemm_backend(k::gemm_backend_name(b)), b);
  EXPECT_TRUE(k::gemm_backend_available(k::parse_gemm_backend("auto")));
  EXPECT_EQ(k::parse_gemm_backend("auto"), k::available_gemm_backends().front());
  EXPECT_TRUE(k::gemm_backend_available(k::GemmBackend::naive));
}

TEST(GemmBackendChoice, BadNameIsAClearError) {
  try {
    k::parse_gemm_backend("mkl");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CLLM_GEMM"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mkl"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected auto, onednn, openblas or naive"), std::string::npos) << msg;
  }
}

// gemm_backend() reads CLLM_GEMM once per process; a throwing first read
// leaves it unresolved, so this test (the only caller in this binary) can try
// a bad value first and a good one after.
TEST(GemmBackendChoice, EnvironmentVariablePicksTheBackend) {
  ASSERT_EQ(setenv("CLLM_GEMM", "fastest", 1), 0);
  EXPECT_THROW(k::gemm_backend(), std::invalid_argument);
  ASSERT_EQ(setenv("CLLM_GEMM", "naive", 1), 0);
  EXPECT_EQ(k::gemm_backend(), k::GemmBackend::naive);
  // The choice is made once: later changes do not switch backends mid-run.
  ASSERT_EQ(setenv("CLLM_GEMM", "auto", 1), 0);
  EXPECT_EQ(k::gemm_backend(), k::GemmBackend::naive);
}

}  // namespace
