// Skips the current test, saying why by name in the output, where the CPU
// has no native bf16 matrix products (kernels::bf16_support()).
#pragma once

#include <gtest/gtest.h>

#include "kernels/sgemm.h"

#define SKIP_WITHOUT_NATIVE_BF16()                                                                     \
  do {                                                                                                 \
    if (!cllm::kernels::bf16_support().native)                                                         \
      GTEST_SKIP() << "no native bf16: " << cllm::kernels::bf16_support().detail;                      \
  } while (0)
