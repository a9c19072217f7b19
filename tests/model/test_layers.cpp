// Each fast layer against its naive reference (forward and backward), and
// the SIMD model kernels against the scalar ones on every usable target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "model/layers.h"
#include "model/model_kernels.h"
#include "model/reference.h"

namespace cllm::model {
namespace {

namespace fast = layers;
namespace ref = reference;

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<std::int32_t> random_ids(std::size_t n, int vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab));
  return v;
}

// max |a - b| / max(max |b|, floor): relative to the tensor's scale.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float max_err = 0.0f, max_ref = 1e-6f;
  for (std::size_t i = 0; i < a.size(); ++i) {
    max_err = std::max(max_err, std::abs(a[i] - b[i]));
    max_ref = std::max(max_ref, std::abs(b[i]));
  }
  EXPECT_LE(max_err / max_ref, tol) << what << ": max abs error " << max_err << ", max abs " << max_ref;
}

// Odd sizes: T spans several attention blocks plus a partial one.
constexpr int B = 2, T = 71, C = 24, NH = 3, V = 19, N = B * T;

TEST(Layers, EncoderMatchesReference) {
  const auto tokens = random_ids(N, V, 1);
  const auto wte = random_vector(V * C, 2), wpe = random_vector(T * C, 3), dout = random_vector(N * C, 4);
  std::vector<float> out_f(N * C), out_r(N * C);
  fast::encoder_forward(out_f.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  ref::encoder_forward(out_r.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  expect_close(out_f, out_r, 1e-6f, "encoder forward");
  auto dwte_f = random_vector(V * C, 5), dwpe_f = random_vector(T * C, 6);
  auto dwte_r = dwte_f, dwpe_r = dwpe_f;
  fast::encoder_backward(dwte_f.data(), dwpe_f.data(), dout.data(), tokens.data(), B, T, C);
  ref::encoder_backward(dwte_r.data(), dwpe_r.data(), dout.data(), tokens.data(), B, T, C);
  expect_close(dwte_f, dwte_r, 1e-6f, "dwte");
  expect_close(dwpe_f, dwpe_r, 1e-6f, "dwpe");
}

TEST(Layers, LayerNormMatchesReference) {
  auto inp = random_vector(N * C, 7, 2.0f);
  for (std::size_t i = 0; i < inp.size(); ++i) inp[i] += 3.0f;  // a mean far from 0
  const auto w = random_vector(C, 8), b = random_vector(C, 9), dout = random_vector(N * C, 10);
  std::vector<float> out_f(N * C), out_r(N * C), mean_f(N), mean_r(N), rstd_f(N), rstd_r(N);
  fast::layernorm_forward(out_f.data(), mean_f.data(), rstd_f.data(), inp.data(), w.data(), b.data(), N, C);
  ref::layernorm_forward(out_r.data(), mean_r.data(), rstd_r.data(), inp.data(), w.data(), b.data(), N, C);
  expect_close(out_f, out_r, 1e-5f, "layernorm out");
  expect_close(mean_f, mean_r, 1e-6f, "layernorm mean");
  expect_close(rstd_f, rstd_r, 1e-5f, "layernorm rstd");
  for (bool accumulate : {false, true}) {
    auto dinp_f = random_vector(N * C, 11), dw_f = random_vector(C, 12), db_f = random_vector(C, 13);
    auto dinp_r = dinp_f, dw_r = dw_f, db_r = db_f;
    fast::layernorm_backward(dinp_f.data(), dw_f.data(), db_f.data(), dout.data(), inp.data(), w.data(),
                             mean_r.data(), rstd_r.data(), N, C, accumulate);
    ref::layernorm_backward(dinp_r.data(), dw_r.data(), db_r.data(), dout.data(), inp.data(), w.data(),
                            mean_r.data(), rstd_r.data(), N, C, accumulate);
    expect_close(dinp_f, dinp_r, 1e-5f, "layernorm dinp");
    expect_close(dw_f, dw_r, 1e-5f, "layernorm dweight");
    expect_close(db_f, db_r, 1e-5f, "layernorm dbias");
  }
}

TEST(Layers, MatmulMatchesReference) {
  constexpr int OC = 40;
  const auto inp = random_vector(N * C, 14), w = random_vector(C * OC, 15), bias = random_vector(OC, 16);
  const auto residual = random_vector(N * OC, 17), dout = random_vector(N * OC, 18);
  for (bool with_bias : {false, true})
    for (bool with_residual : {false, true}) {
      std::vector<float> out_f(N * OC, NAN), out_r(N * OC);
      const float* bp = with_bias ? bias.data() : nullptr;
      const float* rp = with_residual ? residual.data() : nullptr;
      fast::matmul_forward(out_f.data(), inp.data(), w.data(), bp, rp, N, C, OC);
      ref::matmul_forward(out_r.data(), inp.data(), w.data(), bp, rp, N, C, OC);
      expect_close(out_f, out_r, 1e-5f, "matmul forward");
    }
  for (bool accumulate : {false, true}) {
    std::vector<float> dinp_f(N * C, NAN), dinp_r(N * C);
    auto dw_f = random_vector(C * OC, 19), db_f = random_vector(OC, 20);
    if (!accumulate) {  // overwrite must not read the old contents
      std::fill(dw_f.begin(), dw_f.end(), NAN);
      std::fill(db_f.begin(), db_f.end(), NAN);
    }
    auto dw_r = dw_f, db_r = db_f;
    fast::matmul_backward(dinp_f.data(), dw_f.data(), db_f.data(), dout.data(), inp.data(), w.data(), N, C, OC,
                          accumulate);
    ref::matmul_backward(dinp_r.data(), dw_r.data(), db_r.data(), dout.data(), inp.data(), w.data(), N, C, OC,
                         accumulate);
    expect_close(dinp_f, dinp_r, 1e-5f, "matmul dinp");
    expect_close(dw_f, dw_r, 1e-5f, "matmul dweight");
    expect_close(db_f, db_r, 1e-5f, "matmul dbias");
  }
}

TEST(Layers, AttentionMatchesReference) {
  for (int t : {1, 5, 64, T}) {  // one token, a partial block, one full block, several
    SCOPED_TRACE(t);
    const std::size_t n = static_cast<std::size_t>(B) * t;
    const auto qkv = random_vector(n * 3 * C, 21, 1.5f), dout = random_vector(n * C, 22);
    const std::size_t att_size = static_cast<std::size_t>(B) * NH * t * t;
    const std::size_t per_head = fast::attention_probs_per_head(t);
    std::vector<float> out_f(n * C), out_r(n * C), att_f(B * NH * per_head, NAN), att_r(att_size);
    std::vector<float> scratch(fast::attention_scratch_size(t, C, NH), NAN),
        operands(fast::attention_operand_scratch_size(t, C, NH), NAN);
    fast::attention_forward(out_f.data(), att_f.data(), scratch.data(), operands.data(), qkv.data(), B, t, C, NH);
    ref::attention_forward(out_r.data(), att_r.data(), nullptr, qkv.data(), B, t, C, NH);
    expect_close(out_f, out_r, 1e-5f, "attention out");
    for (std::size_t head = 0; head < static_cast<std::size_t>(B) * NH; ++head)  // the causal part of each row
      for (int row = 0; row < t; ++row) {
        const float* f = att_f.data() + head * per_head + fast::attention_row_offset(t, row);
        const float* r = att_r.data() + (head * t + row) * t;
        for (int s = 0; s <= row; ++s) ASSERT_NEAR(f[s], r[s], 1e-6f) << "head " << head << " row " << row << " key " << s;
      }
    std::vector<float> dqkv_f(n * 3 * C, NAN), dqkv_r(n * 3 * C);
    std::fill(scratch.begin(), scratch.end(), NAN);
    std::fill(operands.begin(), operands.end(), NAN);
    fast::attention_backward(dqkv_f.data(), scratch.data(), operands.data(), dout.data(), qkv.data(), att_f.data(), B,
                             t, C, NH);
    ref::attention_backward(dqkv_r.data(), nullptr, dout.data(), qkv.data(), att_r.data(), B, t, C, NH);
    expect_close(dqkv_f, dqkv_r, 1e-5f, "attention dqkv");
  }
}

TEST(Layers, GeluMatchesReference) {
  const auto inp = random_vector(1003, 23, 3.0f), dout = random_vector(1003, 24);
  std::vector<float> out_f(inp.size()), out_r(inp.size()), d_f(inp.size()), d_r(inp.size());
  fast::gelu_forward(out_f.data(), inp.data(), inp.size());
  ref::gelu_forward(out_r.data(), inp.data(), inp.size());
  expect_close(out_f, out_r, 1e-6f, "gelu forward");
  d_f = dout;  // in place, as the model uses it
  fast::gelu_backward(d_f.data(), inp.data(), d_f.data(), inp.size());
  ref::gelu_backward(d_r.data(), inp.data(), dout.data(), inp.size());
  expect_close(d_f, d_r, 1e-6f, "gelu backward");
}

TEST(Layers, CrossEntropyMatchesReference) {
  auto logits = random_vector(N * V, 25, 4.0f);
  logits[3] = 80.0f;  // a large logit: the max shift must keep exp finite
  const auto targets = random_ids(N, V, 26);
  std::vector<float> p_f(N * V), p_r(N * V), l_f(N), l_r(N);
  const float loss_f = fast::crossentropy_forward(p_f.data(), l_f.data(), logits.data(), targets.data(), N, V);
  const float loss_r = ref::crossentropy_forward(p_r.data(), l_r.data(), logits.data(), targets.data(), N, V);
  EXPECT_NEAR(loss_f, loss_r, 1e-5f * loss_r);
  expect_close(p_f, p_r, 1e-6f, "probs");
  expect_close(l_f, l_r, 1e-6f, "losses");
  std::vector<float> d_r(N * V);
  ref::crossentropy_backward(d_r.data(), p_r.data(), targets.data(), N, V, 0.25f);
  fast::crossentropy_backward(p_f.data(), p_f.data(), targets.data(), N, V, 0.25f);  // in place
  expect_close(p_f, d_r, 1e-6f, "dlogits");
}

TEST(ModelKernels, EveryTargetMatchesScalar) {
  const auto& scalar = detail::scalar_model_kernels();
  const auto inp = random_vector(517, 27, 3.0f), dout = random_vector(517, 28);
  for (kernels::Target t : kernels::usable_targets()) {
    if (t == kernels::Target::scalar) continue;
    SCOPED_TRACE(std::string(kernels::target_name(t)));
    const detail::ModelKernels* simd = detail::simd_model_kernels(t);
    ASSERT_NE(simd, nullptr);
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{16}, inp.size()}) {
      std::vector<float> a(n), b(n);
      simd->gelu_forward(a.data(), inp.data(), n);
      scalar.gelu_forward(b.data(), inp.data(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(a[i], b[i], 1e-6f * (1.0f + std::abs(b[i]))) << i;
      simd->gelu_backward(a.data(), inp.data(), dout.data(), n);
      scalar.gelu_backward(b.data(), inp.data(), dout.data(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(a[i], b[i], 2e-6f * (1.0f + std::abs(b[i]))) << i;
      EXPECT_EQ(simd->max(inp.data(), n), scalar.max(inp.data(), n));
      std::vector<float> ea(inp.begin(), inp.begin() + static_cast<std::ptrdiff_t>(n)), eb = ea;
      const float sa = simd->exp_shift_sum(ea.data(), 2.0f, n), sb = scalar.exp_shift_sum(eb.data(), 2.0f, n);
      EXPECT_NEAR(sa, sb, 1e-5f * sb);
      for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(ea[i], eb[i], 1e-6f * eb[i]) << i;
    }
  }
}

}  // namespace
}  // namespace cllm::model
