// AdamW against a double-precision reference of torch.optim.AdamW, decay
// ranges, range splitting, clipping factor and learning-rate schedules.
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "optim/adamw.h"
#include "optim/schedule.h"

namespace cllm::optim {
namespace {

std::vector<float> random_floats(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// torch.optim.AdamW, one element at a time, in double.
struct ReferenceAdamW {
  AdamWConfig c;
  std::vector<double> m, v;
  long step = 0;
  void update(std::vector<double>& p, const std::vector<float>& g, const std::vector<bool>& decay, double lr,
              double grad_scale) {
    ++step;
    const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(step));
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double gi = static_cast<double>(g[i]) * grad_scale;
      if (decay[i]) p[i] *= 1.0 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
      p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + c.eps);
    }
  }
};

TEST(AdamW, MatchesReferenceOverStepsWithDecayRanges) {
  const std::size_t n = 1000;
  const std::vector<ParamRange> ranges = {{0, 300, true}, {300, 37, false}, {337, 600, true}, {937, 63, false}};
  std::vector<bool> decay(n);
  for (const auto& r : ranges) {
    for (std::size_t i = r.offset; i < r.offset + r.size; ++i) decay[i] = r.decay;
  }
  AdamWConfig config{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  AdamW opt(n, config, ranges);
  ReferenceAdamW ref{config, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  std::vector<float> p = random_floats(n, 1);
  std::vector<double> p_ref(p.begin(), p.end());
  for (int step = 0; step < 10; ++step) {
    const auto g = random_floats(n, 100 + static_cast<unsigned>(step), 0.5f);
    const double lr = 1e-3 * (1.0 + step);
    const float scale = step % 2 == 0 ? 1.0f : 0.5f;
    opt.update(p.data(), g.data(), lr, scale);
    ref.update(p_ref, g, decay, lr, scale);
  }
  EXPECT_EQ(opt.step(), 10u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_NEAR(p[i], p_ref[i], 1e-5 * (1.0 + std::abs(p_ref[i]))) << "element " << i;
    ASSERT_NEAR(opt.m()[i], ref.m[i], 1e-6) << "element " << i;
    ASSERT_NEAR(opt.v()[i], ref.v[i], 1e-6) << "element " << i;
  }
}

TEST(AdamW, DecayOnlyOnDecayRanges) {
  // A zero gradient leaves m = v = 0, so the update is the decay alone.
  AdamW opt(10, {.lr = 0.1, .weight_decay = 0.5}, {{0, 4, true}, {4, 6, false}});
  std::vector<float> p(10, 2.0f), g(10, 0.0f);
  opt.update(p.data(), g.data(), 0.1);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(p[i], 2.0f * 0.95f);
  for (std::size_t i = 4; i < 10; ++i) EXPECT_EQ(p[i], 2.0f);
}

TEST(AdamW, SplitRangesEqualWholeUpdateBitwise) {
  // Boundaries on multiples of 16 floats: the SIMD kernels round their
  // vector bodies and scalar tails differently, so only cuts that keep the
  // same elements in vector bodies give the same bits.
  const std::size_t n = 777;
  const std::vector<ParamRange> ranges = {{0, 96, true}, {96, 32, false}, {128, 649, true}};
  AdamWConfig config{.lr = 1e-2, .weight_decay = 0.01};
  AdamW whole(n, config, ranges), split(n, config, ranges);
  auto p1 = random_floats(n, 2);
  auto p2 = p1;
  for (int step = 0; step < 3; ++step) {
    const auto g = random_floats(n, 50 + static_cast<unsigned>(step));
    whole.update(p1.data(), g.data(), 1e-2, 0.7f);
    split.begin_step();
    // Pieces that straddle range boundaries, in no particular order.
    const std::size_t cuts[][2] = {{512, 777}, {0, 80}, {80, 112}, {112, 512}};
    for (const auto& c : cuts) split.update_range(p2.data(), g.data(), c[0], c[1], 1e-2, 0.7f);
  }
  EXPECT_EQ(0, std::memcmp(p1.data(), p2.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(whole.m().data(), split.m().data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(whole.v().data(), split.v().data(), n * sizeof(float)));
}

TEST(AdamW, EmptyRangesMeanDecayEverything) {
  AdamW opt(3, {.lr = 0.1, .weight_decay = 1.0});
  ASSERT_EQ(opt.ranges().size(), 1u);
  EXPECT_TRUE(opt.ranges()[0].decay);
  EXPECT_EQ(opt.ranges()[0].size, 3u);
}

TEST(AdamW, RejectsBadRangesAndConfig) {
  EXPECT_THROW(AdamW(10, {}, {{0, 4, true}, {5, 5, false}}), std::invalid_argument);  // gap
  EXPECT_THROW(AdamW(10, {}, {{0, 4, true}, {4, 5, false}}), std::invalid_argument);  // short
  EXPECT_THROW(AdamW(10, {}, {{0, 4, true}, {4, 0, false}, {4, 6, true}}), std::invalid_argument);  // empty
  EXPECT_THROW(AdamW(10, {.beta1 = 1.0}), std::invalid_argument);
  EXPECT_THROW(AdamW(10, {.eps = 0.0}), std::invalid_argument);
  EXPECT_THROW(AdamW(10, {.weight_decay = -1.0}), std::invalid_argument);
  AdamW opt(10, {});
  std::vector<float> p(10), g(10);
  EXPECT_THROW(opt.update_range(p.data(), g.data(), 0, 10, 1e-3, 1.0f), std::logic_error);  // no begin_step
  opt.begin_step();
  EXPECT_THROW(opt.update_range(p.data(), g.data(), 5, 11, 1e-3, 1.0f), std::invalid_argument);
}

TEST(Clip, ScaleFollowsTorchClipGradNorm) {
  EXPECT_EQ(clip_scale(10.0, 0.0f), 1.0f);  // off
  EXPECT_EQ(clip_scale(0.5, 1.0f), 1.0f);   // below the limit
  EXPECT_FLOAT_EQ(clip_scale(4.0, 1.0f), static_cast<float>(1.0 / (4.0 + 1e-6)));
  EXPECT_EQ(clip_scale(0.0, 1.0f), 1.0f);
}

TEST(Schedule, WarmupThenCosineToMin) {
  LrSchedule s{LrScheduleKind::cosine, 1e-3, 1e-4, 10, 110};
  s.validate();
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(4), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);
  EXPECT_NEAR(s.at(60), 0.5 * (1e-3 + 1e-4), 1e-12);
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(1000), 1e-4);
  for (std::size_t t = 10; t < 110; ++t) EXPECT_GE(s.at(t), s.at(t + 1));
}

TEST(Schedule, LinearAndConstant) {
  LrSchedule lin{LrScheduleKind::linear, 1.0, 0.0, 0, 4};
  EXPECT_DOUBLE_EQ(lin.at(0), 1.0);
  EXPECT_DOUBLE_EQ(lin.at(1), 0.75);
  EXPECT_DOUBLE_EQ(lin.at(4), 0.0);
  LrSchedule constant{LrScheduleKind::constant, 0.5, 0.0, 2, 10};
  EXPECT_DOUBLE_EQ(constant.at(0), 0.25);
  EXPECT_DOUBLE_EQ(constant.at(1), 0.5);
  EXPECT_DOUBLE_EQ(constant.at(9), 0.5);
  EXPECT_DOUBLE_EQ(constant.at(50), 0.5);
}

TEST(Schedule, ParseAndValidate) {
  EXPECT_EQ(parse_lr_schedule("cosine"), LrScheduleKind::cosine);
  EXPECT_EQ(parse_lr_schedule("linear"), LrScheduleKind::linear);
  EXPECT_EQ(parse_lr_schedule("constant"), LrScheduleKind::constant);
  EXPECT_EQ(lr_schedule_name(LrScheduleKind::linear), "linear");
  EXPECT_THROW(parse_lr_schedule("step"), std::invalid_argument);
  EXPECT_THROW((LrSchedule{LrScheduleKind::cosine, 0.0, 0.0, 0, 10}.validate()), std::invalid_argument);
  EXPECT_THROW((LrSchedule{LrScheduleKind::cosine, 1.0, 2.0, 0, 10}.validate()), std::invalid_argument);
  EXPECT_THROW((LrSchedule{LrScheduleKind::cosine, 1.0, 0.0, 11, 10}.validate()), std::invalid_argument);
  EXPECT_THROW((LrSchedule{LrScheduleKind::cosine, 1.0, 0.0, 0, 0}.validate()), std::invalid_argument);
}

}  // namespace
}  // namespace cllm::optim
