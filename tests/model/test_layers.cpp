// Each fast layer against its naive reference (forward and backward), and
// the SIMD model kernels against the scalar ones on every usable target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/kernels.h"
#include "model/layers.h"
#include "model/model_kernels.h"
#include "model/reference.h"
#include "support/bf16_skip.h"

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

// x rounded to bf16, as bf16 and back as f32 (the oracle's inputs).
std::vector<kernels::bf16> to_bf16(const std::vector<float>& x) {
  std::vector<kernels::bf16> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = kernels::to_bf16(x[i]);
  return out;
}
std::vector<float> widened(const std::vector<kernels::bf16>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = kernels::to_float(x[i]);
  return out;
}

// Each query row's log-sum-exp of its scaled causal scores, in double.
std::vector<float> naive_lse(const std::vector<float>& qkv, int b_count, int t_count, int c, int nh) {
  const int hs = c / nh;
  std::vector<float> lse(static_cast<std::size_t>(b_count) * nh * t_count);
  for (int b = 0; b < b_count; ++b)
    for (int h = 0; h < nh; ++h)
      for (int t = 0; t < t_count; ++t) {
        std::vector<double> s(static_cast<std::size_t>(t) + 1);
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hs; ++i)
            d += static_cast<double>(qkv[(static_cast<std::size_t>(b) * t_count + t) * 3 * c + h * hs + i]) *
                 static_cast<double>(qkv[(static_cast<std::size_t>(b) * t_count + j) * 3 * c + c + h * hs + i]);
          s[static_cast<std::size_t>(j)] = d / std::sqrt(static_cast<double>(hs));
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (double x : s) z += std::exp(x - mx);
        lse[(static_cast<std::size_t>(b) * nh + h) * t_count + t] = static_cast<float>(mx + std::log(z));
      }
  return lse;
}

struct AttentionCase {
  int b, t, c, nh;
};

// Runs the fast attention in operand type Op on qkv (rounded to Op) and the
// reference on the same rounded values: out, lse and dqkv within tol.
template <class Op>
void check_attention(const AttentionCase& k, float tol) {
  SCOPED_TRACE(testing::Message() << "B " << k.b << " T " << k.t << " C " << k.c << " heads " << k.nh);
  const std::size_t n = static_cast<std::size_t>(k.b) * k.t;
  const auto qkv_f = random_vector(n * 3 * k.c, 21, 1.5f), dout_f = random_vector(n * k.c, 22);
  std::vector<Op> qkv(qkv_f.size()), dout(dout_f.size()), out(n * k.c);
  std::vector<float> qkv_r = qkv_f, dout_r = dout_f;
  if constexpr (std::is_same_v<Op, float>) {
    qkv = qkv_f, dout = dout_f;
  } else {
    qkv = to_bf16(qkv_f), dout = to_bf16(dout_f);
    qkv_r = widened(qkv), dout_r = widened(dout);
  }
  std::vector<float> lse(fast::attention_kept_size(k.b, k.t, k.nh), NAN), out_r(n * k.c),
      att_r(static_cast<std::size_t>(k.b) * k.nh * k.t * k.t);
  std::vector<float> scratch(fast::attention_scratch_size(k.t, k.c, k.nh), NAN);
  std::vector<Op> operands(fast::attention_operand_scratch_size(k.t, k.c, k.nh));
  fast::attention_forward(out.data(), lse.data(), scratch.data(), operands.data(), qkv.data(), k.b, k.t, k.c, k.nh);
  ref::attention_forward(out_r.data(), att_r.data(), nullptr, qkv_r.data(), k.b, k.t, k.c, k.nh);
  if constexpr (std::is_same_v<Op, float>) {
    expect_close(out, out_r, tol, "attention out");
  } else {
    expect_close(widened(out), out_r, tol, "attention out");
  }
  expect_close(lse, naive_lse(qkv_r, k.b, k.t, k.c, k.nh), 1e-5f, "log-sum-exp");
  std::vector<float> dqkv(n * 3 * k.c, NAN), dqkv_r(n * 3 * k.c);
  std::fill(scratch.begin(), scratch.end(), NAN);  // the backward owes nothing to the forward's scratch
  fast::attention_backward(dqkv.data(), scratch.data(), operands.data(), dout.data(), qkv.data(), lse.data(), k.b,
                           k.t, k.c, k.nh);
  ref::attention_backward(dqkv_r.data(), nullptr, dout_r.data(), qkv_r.data(), att_r.data(), k.b, k.t, k.c, k.nh);
  expect_close(dqkv, dqkv_r, tol, "attention dqkv");
}

// One token, partial blocks, exactly one block and one more row, several
// blocks, a long context; head sizes 8, 12, 32 and 64.
const AttentionCase kAttentionCases[] = {{2, 1, 24, 3},  {2, 7, 24, 3},   {2, 64, 48, 4}, {1, 65, 64, 2},
                                         {2, 257, 24, 3}, {1, 1024, 16, 2}, {3, 71, 128, 2}};

TEST(Layers, AttentionMatchesReference) {
  for (const AttentionCase& k : kAttentionCases) check_attention<float>(k, 1e-5f);
}

TEST(Layers, Bf16AttentionMatchesReference) {
  SKIP_WITHOUT_NATIVE_BF16();
  // bf16 probabilities and score gradients (8 bits of mantissa) feed the products.
  for (const AttentionCase& k : kAttentionCases) check_attention<kernels::bf16>(k, 2e-2f);
}

TEST(Layers, AttentionScratchGrowsLinearlyInT) {
  // The scratch all layers share (what a layer keeps: Workspace's test).
  for (int t : {256, 1024, 4096})
    EXPECT_LE(fast::attention_scratch_size(2 * t, 768, 12), 2 * fast::attention_scratch_size(t, 768, 12)) << t;
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

TEST(Layers, GeluOfBf16InputIsGeluOfItsWidenedValues) {
  // A bf16 workspace keeps GELU's input in bf16: read in chunks, widened,
  // the result is that of the f32 path on the same values, bit for bit
  // (n crosses several chunks and ends in a partial vector).
  const auto kept = to_bf16(random_vector(3 * 512 + 37, 25, 3.0f));
  const auto inp = widened(kept);
  const auto dout = random_vector(inp.size(), 26);
  std::vector<kernels::bf16> out_kept(inp.size()), out_f(inp.size());
  fast::gelu_forward(out_kept.data(), kept.data(), kept.size());
  fast::gelu_forward(out_f.data(), inp.data(), inp.size());
  EXPECT_EQ(widened(out_kept), widened(out_f));
  std::vector<float> d_kept = dout, d_f = dout;
  fast::gelu_backward(d_kept.data(), kept.data(), d_kept.data(), kept.size());
  fast::gelu_backward(d_f.data(), inp.data(), d_f.data(), inp.size());
  EXPECT_EQ(d_kept, d_f);
}

// wte [V,C] as the [C,V] weight of a plain linear layer, for the oracle.
std::vector<float> transposed(const std::vector<float>& w, int rows, int cols) {
  std::vector<float> t(w.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[static_cast<std::size_t>(c) * rows + r] = w[static_cast<std::size_t>(r) * cols + c];
  return t;
}

// The fused, chunked LM head + cross-entropy against the reference linear
// layer and cross-entropy on the full logits: loss, dx and dwte, for chunk
// sizes that do not divide the rows, one row, and more than all of them.
TEST(Layers, FusedLmHeadMatchesReference) {
  auto x = random_vector(N * C, 25, 1.0f);
  auto wte = random_vector(V * C, 26, 2.0f);
  wte[3] = 40.0f;  // a large logit: the max shift must keep exp finite
  const auto targets = random_ids(N, V, 27);
  const float dloss = 0.25f;
  // oracle: logits = x @ wte^T, then the reference cross-entropy and its gradient back through the product
  const auto wte_t = transposed(wte, V, C);
  std::vector<float> logits_r(N * V), probs_r(N * V), losses_r(N), dx_r(N * C), dwte_t_r(C * V), dbias(V);
  ref::matmul_forward(logits_r.data(), x.data(), wte_t.data(), nullptr, nullptr, N, C, V);
  const float loss_r = ref::crossentropy_forward(probs_r.data(), losses_r.data(), logits_r.data(), targets.data(), N, V);
  ref::crossentropy_backward(probs_r.data(), probs_r.data(), targets.data(), N, V, dloss);
  ref::matmul_backward(dx_r.data(), dwte_t_r.data(), dbias.data(), probs_r.data(), x.data(), wte_t.data(), N, C, V,
                       false);
  const auto dwte_r = transposed(dwte_t_r, C, V);
  for (int chunk : {1, 5, 64, N, N + 3}) {
    SCOPED_TRACE(chunk);
    std::vector<float> logits(static_cast<std::size_t>(std::min(chunk, N)) * V, NAN);
    const float loss_only = fast::lm_head_loss(logits.data(), logits.data(), x.data(), wte.data(), targets.data(), N,
                                               C, V, chunk, 0.0f, nullptr, nullptr, false);
    EXPECT_NEAR(loss_only, loss_r, 1e-5f * loss_r);
    for (bool accumulate : {false, true}) {
      std::vector<float> dx(N * C, NAN);
      auto dwte = accumulate ? random_vector(V * C, 28) : std::vector<float>(V * C, NAN);
      std::vector<float> expected_dwte = dwte_r;
      if (accumulate)
        for (std::size_t i = 0; i < dwte.size(); ++i) expected_dwte[i] += dwte[i];
      const float loss = fast::lm_head_loss(logits.data(), logits.data(), x.data(), wte.data(), targets.data(), N, C,
                                            V, chunk, dloss, dx.data(), dwte.data(), accumulate);
      EXPECT_EQ(loss, loss_only);
      expect_close(dx, dx_r, 1e-5f, "dx");
      expect_close(dwte, expected_dwte, 1e-5f, "dwte");
    }
  }
}

TEST(Layers, LmHeadChunkHoldsBoundedLogits) {
  // GPT-2's vocabulary: a chunk of rows, not all of them; a small one: all rows at once.
  const int rows = fast::lm_head_chunk_rows(8192, 50257);
  EXPECT_GE(rows, 64);
  EXPECT_LT(rows, 8192);
  EXPECT_EQ(fast::lm_head_chunk_rows(8192, 256), 8192);
  EXPECT_EQ(fast::lm_head_chunk_rows(3, 50257), 3);
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
      // LayerNorm's row kernels (summation order and FMA differ: close, not equal)
      const auto w = random_vector(n, 29), bias = random_vector(n, 30);
      float ma = 0, ra = 0, mb = 0, rb = 0;
      simd->layernorm_stats(inp.data(), n, 1e-5f, &ma, &ra);
      scalar.layernorm_stats(inp.data(), n, 1e-5f, &mb, &rb);
      EXPECT_NEAR(ma, mb, 1e-6f * (1.0f + std::abs(mb)));
      EXPECT_NEAR(ra, rb, 1e-5f * rb);
      simd->layernorm_apply(a.data(), inp.data(), mb, rb, w.data(), bias.data(), n);
      scalar.layernorm_apply(b.data(), inp.data(), mb, rb, w.data(), bias.data(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(a[i], b[i], 1e-5f * (1.0f + std::abs(b[i]))) << i;
      std::vector<float> dx_a = dout, dw_a = w, db_a = bias, dx_b = dout, dw_b = w, db_b = bias;
      simd->layernorm_backward(dx_a.data(), dw_a.data(), db_a.data(), dout.data(), inp.data(), w.data(), mb, rb, n);
      scalar.layernorm_backward(dx_b.data(), dw_b.data(), db_b.data(), dout.data(), inp.data(), w.data(), mb, rb, n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(dx_a[i], dx_b[i], 1e-5f * (1.0f + std::abs(dx_b[i]))) << i;
        ASSERT_NEAR(dw_a[i], dw_b[i], 1e-5f * (1.0f + std::abs(dw_b[i]))) << i;
        ASSERT_EQ(db_a[i], db_b[i]) << i;
      }
    }
  }
}

}  // namespace
}  // namespace cllm::model
