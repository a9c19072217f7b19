#include <gtest/gtest.h>

#include "kernels/kernels.h"

namespace k = cllm::kernels;

TEST(Dispatch, ScalarAlwaysUsable) {
  EXPECT_EQ(k::usable_targets().front(), k::Target::scalar);
  EXPECT_EQ(k::table_for(k::Target::scalar).target, k::Target::scalar);
}
