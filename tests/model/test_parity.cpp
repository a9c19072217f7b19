// Parity with PyTorch: fixtures/parity.safetensors, written by
// tools/make_parity_fixture.py from bench/torch_gpt.py's GPT, holds a tiny
// model's weights, a token batch, and PyTorch's loss, logits and gradient of
// every parameter (computed in float64, stored as float32). The model here
// must reproduce loss and logits within 1e-5 and every gradient tensor within
// 1e-4, relative: max |ours - torch| / max |torch| over the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/safetensors.h"
#include "kernels/kernels.h"
#include "model/gpt.h"
#include "support/bf16_skip.h"

namespace {

namespace m = cllm::model;

const std::filesystem::path kFixture = std::filesystem::path(__FILE__).parent_path() / "fixtures" / "parity.safetensors";

// max |got - want| / max |want|
double normalized_error(const float* got, const std::vector<float>& want) {
  double max_err = 0, max_ref = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    max_err = std::max(max_err, std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

class Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& meta = file.metadata();
    auto get = [&](const char* key) { return std::stoi(meta.at(key)); };
    config.vocab = get("vocab");
    config.layers = get("layers");
    config.dim = get("dim");
    config.heads = get("heads");
    config.context = get("context");
    batch = get("batch");
    seq = get("seq");
    layout = std::make_unique<m::ParamLayout>(config);
    params.assign(layout->total(), 0.0f);
    for (const m::TensorInfo& t : layout->tensors()) {
      ASSERT_TRUE(file.has(t.name)) << "fixture lacks parameter " << t.name;
      ASSERT_EQ(file.tensor(t.name).shape, t.shape) << t.name;
      file.read_f32(t.name, std::span<float>(params.data() + t.offset, t.size));
    }
    tokens = file.i32("input_ids");
    targets = file.i32("targets");
    ASSERT_EQ(tokens.size(), static_cast<std::size_t>(batch * seq));
    ASSERT_EQ(targets.size(), tokens.size());
  }

  // Every tensor of the layout is in the fixture, and nothing else but the
  // batch, the outputs and one gradient per parameter.
  void expect_fixture_covers_layout() const {
    EXPECT_EQ(file.tensors().size(), 2 * layout->tensors().size() + 4);
    for (const m::TensorInfo& t : layout->tensors()) EXPECT_TRUE(file.has("grad." + t.name)) << t.name;
  }

  cllm::data::SafetensorsFile file = cllm::data::SafetensorsFile::open(kFixture);
  m::Config config;
  int batch = 0, seq = 0;
  std::unique_ptr<m::ParamLayout> layout;
  std::vector<float> params;
  std::vector<std::int32_t> tokens, targets;
};

TEST_F(Parity, FixtureMatchesTheLayout) { expect_fixture_covers_layout(); }

TEST_F(Parity, LossAndLogitsMatchPyTorch) {
  m::Workspace ws(config, batch, seq);
  const float loss = m::forward(*layout, params.data(), tokens.data(), targets.data(), batch, seq, ws);
  const double torch_loss = file.f32("loss").at(0);
  EXPECT_LE(std::fabs(static_cast<double>(loss) - torch_loss), 1e-5 * std::fabs(torch_loss))
      << "loss " << loss << " vs PyTorch " << torch_loss;
  const std::vector<float> torch_logits = file.f32("logits");
  ASSERT_EQ(torch_logits.size(), static_cast<std::size_t>(batch * seq * config.vocab));
  std::vector<float> logits(torch_logits.size());
  m::forward_logits(*layout, params.data(), tokens.data(), batch, seq, ws, logits.data());
  EXPECT_LE(normalized_error(logits.data(), torch_logits), 1e-5);
}

TEST_F(Parity, EveryGradientMatchesPyTorch) {
  m::Workspace ws(config, batch, seq);
  std::vector<float> grad(layout->total(), std::nanf(""));  // overwrite must ignore old contents
  m::forward_backward(*layout, params.data(), tokens.data(), targets.data(), batch, seq, grad.data(), 1.0f,
                      /*overwrite=*/true, ws);
  for (const m::TensorInfo& t : layout->tensors()) {
    const double err = normalized_error(grad.data() + t.offset, file.f32("grad." + t.name));
    EXPECT_LE(err, 1e-4) << "gradient of " << t.name;
  }
}

// forward_backward(scale, overwrite=false) adds scale * PyTorch's gradient.
TEST_F(Parity, ScaledGradientIsAddedToTheBuffer) {
  m::Workspace ws(config, batch, seq);
  constexpr float kScale = 0.25f, kOld = 0.5f;
  std::vector<float> grad(layout->total(), kOld);
  m::forward_backward(*layout, params.data(), tokens.data(), targets.data(), batch, seq, grad.data(), kScale,
                      /*overwrite=*/false, ws);
  for (const m::TensorInfo& t : layout->tensors()) {
    std::vector<float> added(grad.begin() + static_cast<std::ptrdiff_t>(t.offset),
                             grad.begin() + static_cast<std::ptrdiff_t>(t.offset + t.size));
    for (float& g : added) g = (g - kOld) / kScale;
    EXPECT_LE(normalized_error(added.data(), file.f32("grad." + t.name)), 1e-4) << "gradient of " << t.name;
  }
}

// Mixed precision against the same fixture: the loss within 1e-2 relative
// and each gradient tensor pointing the same way (cosine >= 0.99).
class ParityBf16 : public Parity {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_NATIVE_BF16();
    Parity::SetUp();
    params_bf16.resize(params.size());
    cllm::kernels::active().to_bf16(params_bf16.data(), params.data(), params.size());
  }
  m::Weights weights() const { return {params.data(), params_bf16.data()}; }
  std::vector<cllm::kernels::bf16> params_bf16;
};

double cosine(const float* got, const std::vector<float>& want) {
  double dot = 0, a = 0, b = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    dot += static_cast<double>(got[i]) * static_cast<double>(want[i]);
    a += static_cast<double>(got[i]) * static_cast<double>(got[i]);
    b += static_cast<double>(want[i]) * static_cast<double>(want[i]);
  }
  if (a == 0 && b == 0) return 1.0;  // both zero (e.g. rows of wpe past the batch's length)
  return dot / std::sqrt(a * b);
}

TEST_F(ParityBf16, LossIsWithinOnePercentOfPyTorch) {
  m::Workspace ws(config, batch, seq, m::Precision::bf16);
  const float loss = m::forward(*layout, weights(), tokens.data(), targets.data(), batch, seq, ws);
  const double torch_loss = file.f32("loss").at(0);
  EXPECT_LE(std::fabs(static_cast<double>(loss) - torch_loss), 1e-2 * std::fabs(torch_loss))
      << "loss " << loss << " vs PyTorch " << torch_loss;
  EXPECT_NE(static_cast<double>(loss), torch_loss) << "bf16 products should round differently from float64";
}

TEST_F(ParityBf16, EveryGradientPointsLikePyTorchs) {
  m::Workspace ws(config, batch, seq, m::Precision::bf16);
  std::vector<float> grad(layout->total(), std::nanf(""));
  m::forward_backward(*layout, weights(), tokens.data(), targets.data(), batch, seq, grad.data(), 1.0f,
                      /*overwrite=*/true, ws);
  for (const m::TensorInfo& t : layout->tensors()) {
    const std::vector<float> want = file.f32("grad." + t.name);
    EXPECT_GE(cosine(grad.data() + t.offset, want), 0.99) << "gradient of " << t.name;
    EXPECT_LE(normalized_error(grad.data() + t.offset, want), 0.1) << "gradient of " << t.name;
  }
}

TEST_F(ParityBf16, WorkspaceWithoutBf16WeightsIsRefused) {
  m::Workspace ws(config, batch, seq, m::Precision::bf16);
  EXPECT_THROW(m::forward(*layout, params.data(), tokens.data(), targets.data(), batch, seq, ws),
               std::invalid_argument);
}

}  // namespace
