// Every kernel on every usable target against the scalar table (the oracle),
// plus the dispatch rules (CLLM_SIMD parsing, unavailable targets).
//
// Integer-valued inputs make add, add_n, copy, zero, scale by a power of 2,
// dot and sum of squares exact on every target, so those compare with ==.
// AdamW is unfused on every target (-ffp-contract=off), so it is exact too.
// Real-valued inputs compare with a tight relative tolerance where the
// targets may round differently (axpy's FMA, summation order).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace k = cllm::kernels;

namespace {

constexpr std::size_t kSizes[] = {0, 1, 7, 8, 15, 16, 17, 1000, 4097};
// Pointer offsets in floats from a 64-byte boundary: aligned, then misaligned.
constexpr std::size_t kMisalign[] = {0, 1, 2, 3};
constexpr std::size_t kGuard = 16;  // canary floats on each side

// A float array at a chosen distance from a 64-byte boundary, with canary
// values on both sides so that a kernel writing out of bounds is caught.
class Buffer {
 public:
  Buffer(std::size_t n, std::size_t misalign) : n_(n), storage_(n + 2 * kGuard + 32) {
    const auto base = reinterpret_cast<std::uintptr_t>(storage_.data() + kGuard);
    const std::size_t to_boundary = ((64 - base % 64) % 64) / sizeof(float);
    begin_ = kGuard + to_boundary + misalign;
    for (float& x : storage_) x = kCanary;
  }
  float* data() { return storage_.data() + begin_; }
  const float* data() const { return storage_.data() + begin_; }
  std::size_t size() const { return n_; }
  float& operator[](std::size_t i) { return data()[i]; }
  float operator[](std::size_t i) const { return data()[i]; }
  std::vector<float> values() const { return {data(), data() + n_}; }
  // True if nothing outside [data(), data() + size()) was written.
  bool guards_intact() const {
    for (std::size_t i = 0; i < storage_.size(); ++i)
      if ((i < begin_ || i >= begin_ + n_) && storage_[i] != kCanary) return false;
    return true;
  }

 private:
  static constexpr float kCanary = -12345.0f;
  std::size_t n_;
  std::size_t begin_;
  std::vector<float> storage_;
};

// Integer-valued floats in [-8, 8]: sums of up to 256 of them, and their
// products summed in double, are exact.
void fill_integers(Buffer& b, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(-8, 8);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(dist(rng));
}

void fill_reals(Buffer& b, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = dist(rng);
}

const k::KernelTable& scalar() { return k::table_for(k::Target::scalar); }

std::string target_test_name(const testing::TestParamInfo<k::Target>& param) {
  return std::string(k::target_name(param.param));
}

class KernelTest : public testing::TestWithParam<k::Target> {
 protected:
  const k::KernelTable& table() const { return k::table_for(GetParam()); }
  std::mt19937 rng_{12345};
};

TEST_P(KernelTest, ZeroWritesZerosInRangeOnly) {
  for (std::size_t n : kSizes)
    for (std::size_t mis : kMisalign) {
      Buffer dst(n, mis);
      fill_integers(dst, rng_);
      table().zero(dst.data(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(dst[i], 0.0f) << "n=" << n << " i=" << i;
      ASSERT_TRUE(dst.guards_intact()) << "n=" << n << " misalign=" << mis;
    }
}

TEST_P(KernelTest, CopyIsExact) {
  for (std::size_t n : kSizes)
    for (std::size_t mis : kMisalign) {
      Buffer src(n, mis), dst(n, (mis + 1) % 4);
      fill_reals(src, rng_);
      table().copy(dst.data(), src.data(), n);
      ASSERT_EQ(dst.values(), src.values()) << "n=" << n << " misalign=" << mis;
      ASSERT_TRUE(dst.guards_intact()) << "n=" << n << " misalign=" << mis;
    }
}

// add and scale are one IEEE operation per element: equal to scalar bit for
// bit on any input, integer-valued or not.
TEST_P(KernelTest, AddMatchesScalarExactly) {
  for (bool integers : {true, false})
    for (std::size_t n : kSizes)
      for (std::size_t mis : kMisalign) {
        Buffer src(n, mis), got(n, 3 - mis), want(n, 0);
        integers ? fill_integers(src, rng_) : fill_reals(src, rng_);
        integers ? fill_integers(got, rng_) : fill_reals(got, rng_);
        table().copy(want.data(), got.data(), n);
        table().add(got.data(), src.data(), n);
        scalar().add(want.data(), src.data(), n);
        ASSERT_EQ(got.values(), want.values()) << "n=" << n << " misalign=" << mis;
        ASSERT_TRUE(got.guards_intact()) << "n=" << n << " misalign=" << mis;
        if (integers && n > 0) {
          ASSERT_NE(got.values(), src.values());
        }
      }
}

TEST_P(KernelTest, ScaleMatchesScalarExactly) {
  for (float a : {0.5f, 4.0f, -2.0f, 0.1f})
    for (std::size_t n : kSizes)
      for (std::size_t mis : kMisalign) {
        Buffer got(n, mis), want(n, 0);
        fill_reals(got, rng_, -100.0f, 100.0f);
        table().copy(want.data(), got.data(), n);
        const std::vector<float> before = got.values();
        table().scale(got.data(), a, n);
        scalar().scale(want.data(), a, n);
        ASSERT_EQ(got.values(), want.values()) << "a=" << a << " n=" << n << " misalign=" << mis;
        ASSERT_TRUE(got.guards_intact());
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], before[i] * a);
      }
}

// |got - want| within rel of the magnitude of the terms that were combined.
void expect_close(double got, double want, double magnitude, double rel, const std::string& what) {
  EXPECT_LE(std::abs(got - want), rel * magnitude) << what << ": got " << got << ", want " << want;
}

TEST_P(KernelTest, AxpyMatchesScalar) {
  for (std::size_t n : kSizes)
    for (std::size_t mis : kMisalign) {
      // Integers and a power of 2: exact even when the target fuses the FMA.
      Buffer x(n, mis), got(n, (mis + 2) % 4), want(n, 0);
      fill_integers(x, rng_);
      fill_integers(got, rng_);
      table().copy(want.data(), got.data(), n);
      table().axpy(got.data(), -4.0f, x.data(), n);
      scalar().axpy(want.data(), -4.0f, x.data(), n);
      ASSERT_EQ(got.values(), want.values()) << "n=" << n << " misalign=" << mis;
      ASSERT_TRUE(got.guards_intact());

      // Reals: fused or not, within a few float ulps of the terms.
      const float a = 0.37f;
      fill_reals(x, rng_);
      fill_reals(got, rng_);
      table().copy(want.data(), got.data(), n);
      const std::vector<float> before = got.values();
      table().axpy(got.data(), a, x.data(), n);
      scalar().axpy(want.data(), a, x.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        expect_close(got[i], want[i], std::abs(before[i]) + std::abs(a * x[i]), 2e-7,
                     "axpy n=" + std::to_string(n) + " i=" + std::to_string(i));
    }
}

TEST_P(KernelTest, DotAndSumSquaresMatchScalar) {
  for (std::size_t n : kSizes)
    for (std::size_t mis : kMisalign) {
      Buffer a(n, mis), b(n, (mis + 1) % 4);
      fill_integers(a, rng_);
      fill_integers(b, rng_);
      ASSERT_EQ(table().dot(a.data(), b.data(), n), scalar().dot(a.data(), b.data(), n)) << "n=" << n;
      ASSERT_EQ(table().sum_squares(a.data(), n), scalar().sum_squares(a.data(), n)) << "n=" << n;

      fill_reals(a, rng_);
      fill_reals(b, rng_);
      double abs_dot = 0.0, squares = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        abs_dot += std::abs(static_cast<double>(a[i]) * static_cast<double>(b[i]));
        squares += static_cast<double>(a[i]) * static_cast<double>(a[i]);
      }
      // Products are exact in double; only the summation order differs.
      expect_close(table().dot(a.data(), b.data(), n), scalar().dot(a.data(), b.data(), n), abs_dot, 1e-13,
                   "dot n=" + std::to_string(n));
      expect_close(table().sum_squares(a.data(), n), scalar().sum_squares(a.data(), n), squares, 1e-13,
                   "sum_squares n=" + std::to_string(n));
    }
}

// add_n over sub-ranges [offset, offset + count) of buffers of kAddNLength
// floats, the counts being kSizes, with every source and dst misaligned
// differently.
constexpr std::size_t kAddNLength = 4100;
struct Range {
  std::size_t offset, count;
};
constexpr Range kRanges[] = {{0, 0},  {5, 0},   {0, 1},    {3, 1},    {1, 7},    {0, 8},    {2, 8},
                             {0, 15}, {5, 15},  {3, 16},   {0, 17},   {1, 17},   {0, 1000}, {3, 1000},
                             {0, 4097}, {1, 4097}, {3, 4097}, {4096, 4}, {0, kAddNLength}};

void check_add_n(const k::KernelTable& table, std::size_t n_src, bool accumulate, bool integers, std::mt19937& rng) {
  std::vector<Buffer> srcs;
  std::vector<const float*> ptrs;
  for (std::size_t s = 0; s < n_src; ++s) {
    srcs.emplace_back(kAddNLength, s % 4);
    integers ? fill_integers(srcs.back(), rng) : fill_reals(srcs.back(), rng);
  }
  for (const Buffer& s : srcs) ptrs.push_back(s.data());
  Buffer initial(kAddNLength, 0);
  integers ? fill_integers(initial, rng) : fill_reals(initial, rng);
  for (const Range& r : kRanges) {
    Buffer got(kAddNLength, (n_src + 1) % 4), want(kAddNLength, 0);
    scalar().copy(got.data(), initial.data(), kAddNLength);
    scalar().copy(want.data(), initial.data(), kAddNLength);
    const double got_sumsq = table.add_n(got.data(), ptrs.data(), n_src, r.offset, r.count, accumulate);
    const double want_sumsq = scalar().add_n(want.data(), ptrs.data(), n_src, r.offset, r.count, accumulate);
    const std::string what = "n_src=" + std::to_string(n_src) + " accumulate=" + std::to_string(accumulate) +
                             " offset=" + std::to_string(r.offset) + " count=" + std::to_string(r.count);
    // Same summation order on every target: the values match bit for bit.
    ASSERT_EQ(got.values(), want.values()) << what;
    ASSERT_TRUE(got.guards_intact()) << what;
    for (std::size_t i = 0; i < kAddNLength; ++i)
      if (i < r.offset || i >= r.offset + r.count) {
        ASSERT_EQ(got[i], initial[i]) << what << " i=" << i;
      }
    if (integers) {
      ASSERT_EQ(got_sumsq, want_sumsq) << what;
      // The oracle itself, on integers: dst = (dst +) sum of sources.
      for (std::size_t i = r.offset; i < r.offset + r.count; ++i) {
        float sum = accumulate ? initial[i] : 0.0f;
        for (const Buffer& s : srcs) sum += s[i];
        ASSERT_EQ(got[i], sum) << what << " i=" << i;
      }
    } else {
      expect_close(got_sumsq, want_sumsq, want_sumsq, 1e-13, what);
    }
  }
}

TEST_P(KernelTest, AddNMatchesScalarOnSubRanges) {
  for (std::size_t n_src = 0; n_src <= 64; ++n_src)
    for (bool accumulate : {false, true}) check_add_n(table(), n_src, accumulate, true, rng_);
  for (bool accumulate : {false, true}) check_add_n(table(), 256, accumulate, true, rng_);
  for (std::size_t n_src : {1, 3, 12})
    for (bool accumulate : {false, true}) check_add_n(table(), n_src, accumulate, false, rng_);
}

// A range large enough for streaming stores, starting off a vector boundary.
TEST_P(KernelTest, AddNStreamingRangeMatchesScalar) {
  const std::size_t count = k::kAddNStreamBytes / sizeof(float) + 37;
  const std::size_t len = count + 8, offset = 3;
  std::vector<Buffer> srcs;
  std::vector<const float*> ptrs;
  // Integer patterns (a random fill of 4M floats is slow).
  auto fill_pattern = [](Buffer& b, std::size_t seed) {
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(static_cast<int>((i * 7 + seed) % 17) - 8);
  };
  for (std::size_t s = 0; s < 3; ++s) {
    srcs.emplace_back(len, s + 1);
    fill_pattern(srcs.back(), s);
    ptrs.push_back(srcs.back().data());
  }
  Buffer got(len, 1), want(len, 0);
  fill_pattern(got, 5);
  scalar().copy(want.data(), got.data(), len);
  const double got_sumsq = table().add_n(got.data(), ptrs.data(), ptrs.size(), offset, count, false);
  const double want_sumsq = scalar().add_n(want.data(), ptrs.data(), ptrs.size(), offset, count, false);
  ASSERT_EQ(got_sumsq, want_sumsq);
  ASSERT_TRUE(got.values() == want.values());  // no per-element dump of 4M values
  ASSERT_TRUE(got.guards_intact());
}

// AdamW: several steps on the target and on scalar from the same state.
TEST_P(KernelTest, AdamWMatchesScalarOverSteps) {
  k::AdamWParams hp;
  hp.lr = 3e-3;
  hp.weight_decay = 0.1;
  hp.grad_scale = 0.75f;
  for (std::size_t n : kSizes)
    for (std::size_t mis : kMisalign) {
      Buffer p(n, mis), g(n, (mis + 1) % 4), m(n, (mis + 2) % 4), v(n, (mis + 3) % 4);
      Buffer p_ref(n, 0), m_ref(n, 0), v_ref(n, 0);
      fill_reals(p, rng_);
      for (std::size_t i = 0; i < n; ++i) m[i] = v[i] = 0.0f;
      scalar().copy(p_ref.data(), p.data(), n);
      scalar().copy(m_ref.data(), m.data(), n);
      scalar().copy(v_ref.data(), v.data(), n);
      for (long step = 1; step <= 5; ++step) {
        fill_reals(g, rng_, -2.0f, 2.0f);
        if (n > 0) g[0] = 0.0f;  // zero gradient: denominator is eps-sized
        hp.step = step;
        table().adamw(p.data(), g.data(), m.data(), v.data(), n, hp);
        scalar().adamw(p_ref.data(), g.data(), m_ref.data(), v_ref.data(), n, hp);
      }
      for (Buffer* b : {&p, &m, &v}) ASSERT_TRUE(b->guards_intact()) << "n=" << n;
      // Unfused multiplies and adds, correctly rounded sqrt and division in
      // the same order on every target: the same bits.
      ASSERT_EQ(p.values(), p_ref.values()) << "n=" << n << " misalign=" << mis;
      ASSERT_EQ(m.values(), m_ref.values()) << "n=" << n << " misalign=" << mis;
      ASSERT_EQ(v.values(), v_ref.values()) << "n=" << n << " misalign=" << mis;
    }
}

// torch.optim.AdamW's step, written out in double from the formula with the
// hyperparameters as Python floats.
struct TorchAdamW {
  double lr, beta1, beta2, eps, weight_decay;
  void step(double& p, double g, double& m, double& v, long t) const {
    p *= 1.0 - lr * weight_decay;
    m = m * beta1 + (1.0 - beta1) * g;
    v = v * beta2 + (1.0 - beta2) * g * g;
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
    p -= lr / bc1 * (m / (std::sqrt(v) / std::sqrt(bc2) + eps));
  }
};

TEST_P(KernelTest, AdamWFollowsTorch) {
  // First step from m = v = 0: the update is lr * g / (|g| + eps), i.e.
  // about lr * sign(g), after decay: 1 * (1 - 0.01 * 0.1) - 0.01 = 0.989.
  {
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    k::AdamWParams hp;
    hp.lr = 0.01;
    hp.weight_decay = 0.1;
    table().adamw(&p, &g, &m, &v, 1, hp);
    EXPECT_NEAR(p, 0.989f, 1e-6f);
    EXPECT_NEAR(m, 0.05f, 1e-8f);
    EXPECT_NEAR(v, 0.00025f, 1e-10f);
  }
  // Ten steps on 19 values (a vector and a tail) against the double formula.
  const TorchAdamW torch{1e-2, 0.9, 0.95, 1e-8, 0.1};
  constexpr std::size_t n = 19;
  std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pd(n), md(n, 0.0), vd(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<float>(pd[i] = 0.1 * static_cast<double>(i) - 0.9);
  k::AdamWParams hp;
  hp.lr = torch.lr;
  hp.beta1 = torch.beta1;
  hp.beta2 = torch.beta2;
  hp.eps = torch.eps;
  hp.weight_decay = torch.weight_decay;
  for (long t = 1; t <= 10; ++t) {
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = std::sin(static_cast<float>(i * 7 + static_cast<std::size_t>(t)));
      torch.step(pd[i], g[i], md[i], vd[i], t);
    }
    hp.step = t;
    table().adamw(p.data(), g.data(), m.data(), v.data(), n, hp);
  }
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], pd[i], 1e-6) << "i=" << i;
    EXPECT_NEAR(m[i], md[i], 1e-6) << "i=" << i;
    EXPECT_NEAR(v[i], vd[i], 1e-6 * vd[i] + 1e-9) << "i=" << i;
  }
}

TEST_P(KernelTest, AdamWRejectsStepZero) {
  float p = 1.0f, g = 1.0f, m = 0.0f, v = 0.0f;
  k::AdamWParams hp;
  hp.step = 0;
  try {
    table().adamw(&p, &g, &m, &v, 1, hp);
    FAIL() << "step 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("step"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p, 1.0f);
}

// Every float class: ties that round to even (up and down), values that
// round up into the next binade and to infinity, denormals, infinities, NaN.
TEST_P(KernelTest, Bf16ConversionRoundsToNearestEvenLikeTheScalarRule) {
  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f,
                            std::bit_cast<float>(0x3f808000u),  // tie, kept bit 0: rounds down
                            std::bit_cast<float>(0x3f818000u),  // tie, kept bit 1: rounds up
                            std::bit_cast<float>(0x3f80ffffu),  // rounds up
                            std::bit_cast<float>(0x3fffffffu),  // carries into the exponent
                            std::bit_cast<float>(0x7f7fffffu),  // largest float: to infinity
                            std::bit_cast<float>(0x00000001u),  // denormal
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), std::bit_cast<float>(0x7f800001u)};
  const std::uint16_t expected[] = {0x0000, 0x8000, 0x3f80, 0xbf80, 0x3f80, 0x3f82, 0x3f81,
                                    0x4000, 0x7f80, 0x0000, 0x7f80, 0xff80, 0x7fc0, 0x7fc0};
  std::mt19937 rng(11);
  for (std::size_t n : kSizes) {
    for (std::size_t mis : kMisalign) {
      Buffer src(n, mis);
      fill_reals(src, rng, -1e4f, 1e4f);
      for (std::size_t i = 0; i < n && i < std::size(specials); ++i) src[i * 7 % n] = specials[i];
      std::vector<k::bf16> out(n + 1, k::bf16{0xabcd}), ref(n);
      table().to_bf16(out.data(), src.data(), n);
      scalar().to_bf16(ref.data(), src.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(out[i].bits, ref[i].bits) << "n=" << n << " i=" << i;
        ASSERT_EQ(out[i].bits, k::to_bf16(src[i]).bits) << "n=" << n << " i=" << i;
      }
      ASSERT_EQ(out[n].bits, 0xabcd) << "wrote past the end, n=" << n;
      Buffer back(n, mis);
      table().from_bf16(back.data(), out.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(back[i]), static_cast<std::uint32_t>(out[i].bits) << 16);
      ASSERT_TRUE(back.guards_intact());
    }
  }
  for (std::size_t i = 0; i < std::size(specials); ++i)
    EXPECT_EQ(k::to_bf16(specials[i]).bits, expected[i]) << "special " << i;
}

INSTANTIATE_TEST_SUITE_P(Targets, KernelTest, testing::ValuesIn(k::usable_targets()), target_test_name);

// ---- dispatch ----

TEST(Dispatch, CompiledTargetsMatchTheBuild) {
  const auto compiled = k::compiled_targets();
  ASSERT_FALSE(compiled.empty());
  EXPECT_EQ(compiled.front(), k::Target::scalar);
  std::string names;
  for (k::Target t : compiled) names += std::string(k::target_name(t)) + " ";
#if CLLM_HAVE_HWY
  EXPECT_GT(compiled.size(), 1u);
  std::printf("compiled targets: %s\n", names.c_str());
#else
  EXPECT_EQ(compiled.size(), 1u);
  std::printf("compiled targets: %s(scalar-only build, CLLM_SIMD_DISPATCH=OFF: only scalar is tested)\n",
              names.c_str());
#endif
}

TEST(Dispatch, EveryTargetIsUsableOrThrowsNamingIt) {
  const std::vector<k::Target> usable = k::usable_targets();
  EXPECT_EQ(usable.front(), k::Target::scalar);
  for (k::Target t : {k::Target::scalar, k::Target::sse4, k::Target::avx2, k::Target::avx512}) {
    const bool is_usable = std::find(usable.begin(), usable.end(), t) != usable.end();
    if (is_usable) {
      EXPECT_EQ(k::table_for(t).target, t);
      continue;
    }
    try {
      k::table_for(t);
      ADD_FAILURE() << target_name(t) << " is not usable but table_for returned a table";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(k::target_name(t)), std::string::npos) << e.what();
    }
  }
}

#if !CLLM_HAVE_HWY
TEST(Dispatch, ScalarOnlyBuildRejectsSimdTargets) {
  EXPECT_EQ(k::usable_targets(), std::vector<k::Target>{k::Target::scalar});
  try {
    k::table_for(k::Target::avx2);
    FAIL() << "avx2 table in a scalar-only build";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not compiled"), std::string::npos) << e.what();
  }
}
#endif

TEST(Dispatch, ChooseTargetParsesNames) {
  EXPECT_EQ(k::choose_target(""), k::usable_targets().back());
  EXPECT_EQ(k::choose_target("auto"), k::usable_targets().back());
  EXPECT_EQ(k::choose_target("scalar"), k::Target::scalar);
  EXPECT_EQ(k::choose_target("sse4"), k::Target::sse4);
  EXPECT_EQ(k::choose_target("avx2"), k::Target::avx2);
  EXPECT_EQ(k::choose_target("avx512"), k::Target::avx512);
  for (k::Target t : {k::Target::scalar, k::Target::sse4, k::Target::avx2, k::Target::avx512})
    EXPECT_EQ(k::parse_target(k::target_name(t)), t);
}

TEST(Dispatch, ChooseTargetRejectsUnknownNamesNamingThem) {
  for (const char* bad : {"avx3", "AVX2", "neon", "scalar "}) {
    try {
      k::choose_target(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(Dispatch, ActiveFollowsCllmSimd) {
  const char* env = std::getenv("CLLM_SIMD");
  EXPECT_EQ(k::active().target, k::choose_target(env ? env : ""));
}

// active() with a bad CLLM_SIMD, in a fresh process (threadsafe death tests
// re-run the binary, so active()'s one-time choice is made there).
TEST(DispatchDeathTest, ActiveWithUnknownCllmSimdFailsNamingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("CLLM_SIMD", "avx9000", 1);
        try {
          k::active();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::exit(3);
        }
        std::exit(0);
      },
      testing::ExitedWithCode(3), "CLLM_SIMD.*'avx9000'");
}

}  // namespace
