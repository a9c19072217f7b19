// The loss-spike rule on its own: window statistics, the z threshold, and
// the round trip through checkpoint text.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "train/loss_spike.h"

namespace cllm::train {
namespace {

TEST(LossSpike, JudgesOnlyOnceTheWindowHasEnoughLosses) {
  LossSpikeDetector d(3.0);
  for (std::size_t i = 0; i + 1 < LossSpikeDetector::kMinSamples; ++i) d.add(i % 2 ? 1.0 : 2.0);
  EXPECT_FALSE(d.is_spike(1000.0));
  d.add(2.0);
  EXPECT_TRUE(d.is_spike(1000.0));
}

TEST(LossSpike, ThresholdIsZStandardDeviationsAboveTheMean) {
  LossSpikeDetector d(3.0);
  for (int i = 0; i < 50; ++i) d.add(i % 2 ? 1.0 : 3.0);  // mean 2, sd 1
  EXPECT_DOUBLE_EQ(d.z_score(4.5), 2.5);
  EXPECT_FALSE(d.is_spike(4.9));
  EXPECT_TRUE(d.is_spike(5.1));
  EXPECT_FALSE(d.is_spike(-100.0));  // falling losses are never spikes
}

TEST(LossSpike, WindowForgetsOldLosses) {
  LossSpikeDetector d(3.0, 20);
  for (int i = 0; i < 20; ++i) d.add(100.0 + (i % 2));
  for (int i = 0; i < 20; ++i) d.add(1.0 + (i % 2));  // the old regime has left the window
  EXPECT_TRUE(d.is_spike(50.0));
}

TEST(LossSpike, OffWhenZIsZero) {
  LossSpikeDetector d(0.0);
  for (int i = 0; i < 50; ++i) d.add(1.0 + 0.01 * (i % 3));
  EXPECT_FALSE(d.enabled());
  EXPECT_FALSE(d.is_spike(1e9));
}

TEST(LossSpike, SerializeRestoreRoundTripsExactly) {
  LossSpikeDetector a(2.0), b(2.0);
  for (int i = 0; i < 30; ++i) a.add(std::sqrt(2.0 + i) / 3.0);
  b.restore(a.serialize());
  EXPECT_EQ(b.serialize(), a.serialize());
  for (double probe : {0.1, 0.5, 1.0, 1.7, 2.5}) EXPECT_EQ(a.z_score(probe), b.z_score(probe));
}

TEST(LossSpike, RestoreRejectsJunk) {
  LossSpikeDetector d(2.0);
  EXPECT_THROW(d.restore("1.0,abc"), std::invalid_argument);
  EXPECT_THROW(d.restore("1.0,,2.0"), std::invalid_argument);
  EXPECT_THROW(d.restore("inf"), std::invalid_argument);
  EXPECT_THROW(LossSpikeDetector(NAN), std::invalid_argument);
}

}  // namespace
}  // namespace cllm::train
