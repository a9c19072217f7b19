// train/memory_plan.h: the plan's parts and the refusal's advice.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "train/memory_plan.h"

namespace cllm::train {
namespace {

const model::Config kGpt2Small{.vocab = 50257, .layers = 12, .dim = 768, .heads = 12, .context = 1024};

std::string refusal(model::Precision precision) {
  const MemoryPlan plan = plan_training_memory(kGpt2Small, 4, 1024, 2, precision);
  try {
    check_memory_fits(plan, {.bytes = 1u << 30, .source = "test"});
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "a " << model::precision_name(precision) << " plan of " << format_bytes(plan.total())
                << " fit in 1 GiB";
  return {};
}

TEST(MemoryPlan, OneGradientBufferPerLaneAndNoMore) {
  // The lanes' gradients are summed into one of their buffers (parallel::GradientAccumulator).
  const MemoryPlan plan = plan_training_memory(kGpt2Small, 4, 1024, 3, model::Precision::fp32);
  bool found = false;
  for (const MemoryPart& part : plan.parts) {
    if (part.name != "grads") continue;
    found = true;
    EXPECT_EQ(part.count, 3u);
    EXPECT_EQ(part.bytes, kGpt2Small.num_params() * sizeof(float));
  }
  EXPECT_TRUE(found);
}

TEST(MemoryPlan, RefusalSuggestsBf16OnlyToAnFp32Run) {
  const std::string fp32 = refusal(model::Precision::fp32), bf16 = refusal(model::Precision::bf16);
  EXPECT_NE(fp32.find("--precision bf16"), std::string::npos) << fp32;
  EXPECT_EQ(bf16.find("--precision bf16"), std::string::npos) << bf16;
  for (const std::string& message : {fp32, bf16}) {
    EXPECT_NE(message.find("smaller --batch"), std::string::npos) << message;
    EXPECT_NE(message.find("1.0 GiB is available (test)"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace cllm::train
