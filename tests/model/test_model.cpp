// The whole model: config validation, parameter layout, init, a central
// finite-difference gradient check over every tensor, overwrite vs add,
// the KV cache against the full forward, and concurrent workspaces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "model/gpt.h"
#include "model/layers.h"
#include "support/bf16_skip.h"

namespace cllm::model {
namespace {

Config tiny_config() { return Config{11, 2, 8, 2, 9}; }

std::vector<std::int32_t> random_ids(std::size_t n, int vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab));
  return v;
}

// Larger than GPT-2 init so every path (attention, GELU curvature) carries
// gradient; LayerNorm weights stay near 1.
std::vector<float> test_params(const ParamLayout& layout, std::uint64_t seed) {
  std::vector<float> p(layout.total());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  for (const TensorInfo& t : layout.tensors())
    for (std::size_t i = 0; i < t.size; ++i)
      p[t.offset + i] = (t.name.find("ln_") != std::string::npos && t.name.ends_with("weight") ? 1.0f : 0.0f) +
                        dist(rng);
  return p;
}

void expect_invalid(const Config& c, const std::string& needle) {
  try {
    c.validate();
    FAIL() << "expected std::invalid_argument mentioning " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Config, ValidationNamesTheField) {
  EXPECT_NO_THROW(tiny_config().validate());
  expect_invalid(Config{0, 2, 8, 2, 9}, "vocab");
  expect_invalid(Config{11, 0, 8, 2, 9}, "layers");
  expect_invalid(Config{11, 2, -8, 2, 9}, "dim");
  expect_invalid(Config{11, 2, 8, 0, 9}, "heads");
  expect_invalid(Config{11, 2, 8, 2, 0}, "context");
  expect_invalid(Config{11, 2, 8, 3, 9}, "divisible by heads");
  expect_invalid(Config{11, 2, 8, 16, 9}, "heads");
  expect_invalid(Config{1 << 30, 2, 8, 2, 9}, "vocab");
  expect_invalid(Config{50257, 4000, 65536, 64, 1024}, "parameters");  // ~2e14 floats
  EXPECT_THROW(ParamLayout(Config{11, 2, 8, 3, 9}), std::invalid_argument);
}

TEST(ParamLayout, HuggingFaceNamesShapesAndOrder) {
  const Config c{50, 2, 12, 3, 7};
  const ParamLayout layout(c);
  EXPECT_EQ(layout.total(), c.num_params());
  ASSERT_EQ(layout.tensors().size(), 2u + 12u * 2u + 2u);
  const auto shape = [&](const char* name) { return layout.find(name).shape; };
  using S = std::vector<std::size_t>;
  EXPECT_EQ(shape("wte.weight"), (S{50, 12}));
  EXPECT_EQ(shape("wpe.weight"), (S{7, 12}));
  EXPECT_EQ(shape("h.1.attn.c_attn.weight"), (S{12, 36}));
  EXPECT_EQ(shape("h.1.attn.c_attn.bias"), (S{36}));
  EXPECT_EQ(shape("h.0.attn.c_proj.weight"), (S{12, 12}));
  EXPECT_EQ(shape("h.0.mlp.c_fc.weight"), (S{12, 48}));
  EXPECT_EQ(shape("h.0.mlp.c_proj.weight"), (S{48, 12}));
  EXPECT_EQ(shape("h.1.ln_2.bias"), (S{12}));
  EXPECT_EQ(shape("ln_f.weight"), (S{12}));
  EXPECT_EQ(layout.tensors().front().name, "wte.weight");
  EXPECT_EQ(layout.tensors().back().name, "ln_f.bias");
  std::size_t offset = 0;  // contiguous, in order
  for (const TensorInfo& t : layout.tensors()) {
    EXPECT_EQ(t.offset, offset) << t.name;
    EXPECT_EQ(t.decay, t.shape.size() >= 2) << t.name;
    offset += t.size;
  }
  EXPECT_EQ(offset, layout.total());
  EXPECT_EQ(layout.find("h.1.mlp.c_fc.bias").offset, layout.block(1).fc_b);
  EXPECT_THROW(layout.find("h.2.ln_1.weight"), std::out_of_range);
}

TEST(Init, Gpt2Statistics) {
  const Config c{256, 4, 64, 4, 32};
  const ParamLayout layout(c);
  std::vector<float> p(layout.total()), q(layout.total());
  init_params(layout, p.data(), 42);
  init_params(layout, q.data(), 42);
  EXPECT_EQ(p, q);
  auto stddev = [&](const TensorInfo& t) {
    double s = 0.0;
    for (std::size_t i = 0; i < t.size; ++i) s += static_cast<double>(p[t.offset + i]) * static_cast<double>(p[t.offset + i]);
    return std::sqrt(s / static_cast<double>(t.size));
  };
  for (const TensorInfo& t : layout.tensors()) {
    const float* v = p.data() + t.offset;
    if (t.name.ends_with(".bias")) {
      EXPECT_TRUE(std::all_of(v, v + t.size, [](float x) { return x == 0.0f; })) << t.name;
    } else if (t.name.find("ln_") != std::string::npos) {
      EXPECT_TRUE(std::all_of(v, v + t.size, [](float x) { return x == 1.0f; })) << t.name;
    } else {
      const double want = t.name.ends_with("c_proj.weight") ? 0.02 / std::sqrt(8.0) : 0.02;
      EXPECT_NEAR(stddev(t), want, want * 0.1) << t.name;
    }
  }
  init_params(layout, q.data(), 43);
  EXPECT_NE(p, q);
}

TEST(Forward, RejectsBadInput) {
  const ParamLayout layout(tiny_config());
  const auto p = test_params(layout, 1);
  Workspace ws(tiny_config(), 2, 5);
  auto tokens = random_ids(10, 11, 2), targets = random_ids(10, 11, 3);
  EXPECT_NO_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 2, 5, ws));
  tokens[7] = 11;
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 2, 5, ws), std::invalid_argument);
  tokens[7] = -1;
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 2, 5, ws), std::invalid_argument);
  tokens[7] = 3;
  targets[0] = 1000;
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 2, 5, ws), std::invalid_argument);
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 3, 5, ws), std::invalid_argument);
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), targets.data(), 2, 6, ws), std::invalid_argument);
  EXPECT_THROW(forward(layout, p.data(), tokens.data(), nullptr, 2, 5, ws), std::invalid_argument);
  std::vector<float> logits(static_cast<std::size_t>(3 * 5 * tiny_config().vocab));
  EXPECT_THROW(forward_logits(layout, p.data(), tokens.data(), 3, 5, ws, logits.data()), std::invalid_argument);
  EXPECT_THROW(Workspace(tiny_config(), 1, 10), std::invalid_argument);  // seq > context
  EXPECT_THROW(Workspace(tiny_config(), 0, 4), std::invalid_argument);
  std::vector<float> g(layout.total());
  EXPECT_THROW(forward_backward(layout, p.data(), tokens.data(), nullptr, 2, 5, g.data(), 1.0f, true, ws),
               std::invalid_argument);
}

// Loss in double from a float forward: the finite differences below need
// the loss as a smooth function of one parameter.
double loss_at(const ParamLayout& layout, const std::vector<float>& p, const std::vector<std::int32_t>& tokens,
               const std::vector<std::int32_t>& targets, int B, int T, Workspace& ws) {
  return forward(layout, p.data(), tokens.data(), targets.data(), B, T, ws);
}

TEST(Backward, MatchesCentralFiniteDifferencesOnEveryTensor) {
  const Config c = tiny_config();
  const ParamLayout layout(c);
  constexpr int B = 2, T = 7;
  auto p = test_params(layout, 4);
  const auto tokens = random_ids(B * T, c.vocab, 5), targets = random_ids(B * T, c.vocab, 6);
  Workspace ws(c, B, T);
  std::vector<float> grad(layout.total(), NAN);
  forward_backward(layout, p.data(), tokens.data(), targets.data(), B, T, grad.data(), 1.0f, true, ws);
  std::mt19937_64 rng(7);
  const float eps = 1e-2f;  // float forward: larger steps beat rounding noise
  int checked = 0;
  for (const TensorInfo& t : layout.tensors()) {
    SCOPED_TRACE(t.name);
    for (int k = 0; k < 6; ++k) {
      std::size_t i = t.offset + rng() % t.size;
      if (t.name == "wpe.weight") i = t.offset + rng() % (static_cast<std::size_t>(T) * c.dim);  // used rows
      const float saved = p[i];
      p[i] = saved + eps;
      const double up = loss_at(layout, p, tokens, targets, B, T, ws);
      p[i] = saved - eps;
      const double down = loss_at(layout, p, tokens, targets, B, T, ws);
      p[i] = saved;
      const double numeric = (up - down) / (2.0 * static_cast<double>(eps));
      EXPECT_NEAR(static_cast<double>(grad[i]), numeric, 2e-4 + 2e-2 * std::abs(numeric)) << "element " << i - t.offset;
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(layout.tensors().size()) * 6);
  // rows of wpe past T get exactly zero gradient
  const std::size_t wpe_used = static_cast<std::size_t>(T) * c.dim, wpe = layout.wpe();
  for (std::size_t i = wpe + wpe_used; i < wpe + static_cast<std::size_t>(c.context) * c.dim; ++i)
    ASSERT_EQ(grad[i], 0.0f);
}

TEST(Backward, OverwriteAddAndScale) {
  const Config c = tiny_config();
  const ParamLayout layout(c);
  constexpr int B = 3, T = 9;
  const auto p = test_params(layout, 8);
  const auto tokens = random_ids(B * T, c.vocab, 9), targets = random_ids(B * T, c.vocab, 10);
  Workspace ws(c, B, T);
  auto run = [&](std::vector<float>& g, float scale, bool overwrite) {
    forward_backward(layout, p.data(), tokens.data(), targets.data(), B, T, g.data(), scale, overwrite, ws);
  };
  std::vector<float> g1(layout.total(), NAN);
  run(g1, 1.0f, true);
  std::vector<float> g_zero(layout.total(), 0.0f);
  run(g_zero, 1.0f, false);
  EXPECT_EQ(g1, g_zero);  // overwrite ignores NaN garbage, add to zero is the same
  std::vector<float> g_sum = g1;
  run(g_sum, 0.5f, false);
  std::vector<float> g_half(layout.total(), NAN);
  run(g_half, 0.5f, true);
  // Adding into a non-zero buffer rounds differently than summing first:
  // compare against the gradient's scale, not element by element.
  float max_abs = 0.0f;
  for (float g : g1) max_abs = std::max(max_abs, std::abs(g));
  for (std::size_t i = 0; i < g1.size(); ++i) {
    ASSERT_NEAR(g_half[i], 0.5f * g1[i], 1e-6f * max_abs) << i;
    ASSERT_NEAR(g_sum[i], 1.5f * g1[i], 1e-6f * max_abs) << i;
  }
}

// GPT-2 124M's shape: activations grow linearly in T (no T x T attention
// matrix) and the vocabulary costs one chunk of LM head rows, not (B,T,V).
TEST(Workspace, GrowsLinearlyInTAndHoldsOneChunkOfLogits) {
  const Config gpt2{50257, 12, 768, 12, 2048};
  Config bytes_vocab = gpt2;
  bytes_vocab.vocab = 256;
  for (const Precision p : {Precision::fp32, Precision::bf16}) {
    SCOPED_TRACE(std::string(precision_name(p)));
    for (int t : {128, 256, 512, 1024})
      EXPECT_LE(static_cast<double>(Workspace::planned_bytes(gpt2, 4, 2 * t, p)),
                2.2 * static_cast<double>(Workspace::planned_bytes(gpt2, 4, t, p)))
          << "T " << t << " -> " << 2 * t;
    const auto vocab_cost = [&](int batch) {
      return Workspace::planned_bytes(gpt2, batch, 1024, p) - Workspace::planned_bytes(bytes_vocab, batch, 1024, p);
    };
    const std::size_t chunk = static_cast<std::size_t>(layers::lm_head_chunk_rows(4 * 1024, 50257));
    EXPECT_LE(vocab_cost(4), chunk * 50257 * (sizeof(float) + sizeof(kernels::bf16)));
    Config twice_the_vocab = gpt2;
    twice_the_vocab.vocab = 2 * gpt2.vocab;  // half the rows per chunk: about the same bytes
    EXPECT_NEAR(static_cast<double>(Workspace::planned_bytes(twice_the_vocab, 8, 1024, p)),
                static_cast<double>(Workspace::planned_bytes(gpt2, 8, 1024, p)),
                0.01 * static_cast<double>(Workspace::planned_bytes(gpt2, 8, 1024, p)));
  }
}

// The memory plan's figure is what the workspace then holds, in both precisions.
TEST(Workspace, PlannedBytesAreTheBytesItHolds) {
  for (const Precision p : {Precision::fp32, Precision::bf16}) {
    EXPECT_EQ(Workspace::planned_bytes(tiny_config(), 3, 7, p), Workspace(tiny_config(), 3, 7, p).bytes())
        << precision_name(p);
  }
  EXPECT_LT(Workspace::planned_bytes(tiny_config(), 3, 7, Precision::bf16),
            Workspace::planned_bytes(tiny_config(), 3, 7, Precision::fp32));
  EXPECT_THROW(Workspace::planned_bytes(tiny_config(), 0, 4, Precision::fp32), std::invalid_argument);
}

TEST(Forward, SmallerBatchInLargerWorkspaceGivesSameResult) {
  const Config c = tiny_config();
  const ParamLayout layout(c);
  const auto p = test_params(layout, 11);
  const auto tokens = random_ids(2 * 4, c.vocab, 12), targets = random_ids(2 * 4, c.vocab, 13);
  Workspace exact(c, 2, 4), large(c, 3, 9);
  std::vector<float> g1(layout.total()), g2(layout.total());
  const float l1 = forward_backward(layout, p.data(), tokens.data(), targets.data(), 2, 4, g1.data(), 1.0f, true, exact);
  const float l2 = forward_backward(layout, p.data(), tokens.data(), targets.data(), 2, 4, g2.data(), 1.0f, true, large);
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(g1, g2);
}

TEST(KvCache, LogitsMatchFullForwardAtEveryPosition) {
  const Config c{23, 3, 16, 4, 70};  // context > one attention block (64)
  const ParamLayout layout(c);
  const auto p = test_params(layout, 14);
  const int T = c.context;
  const auto tokens = random_ids(static_cast<std::size_t>(T), c.vocab, 15);
  Workspace ws(c, 1, T);
  std::vector<float> full(static_cast<std::size_t>(T) * c.vocab);
  forward_logits(layout, p.data(), tokens.data(), 1, T, ws, full.data());
  KvCache cache(c);
  for (int round = 0; round < 2; ++round) {  // reset() starts over
    cache.reset();
    for (int t = 0; t < T; ++t) {
      const float* step = cache.step(layout, p.data(), tokens[static_cast<std::size_t>(t)]);
      EXPECT_EQ(cache.position(), t + 1);
      for (int v = 0; v < c.vocab; ++v)
        ASSERT_NEAR(step[v], full[static_cast<std::size_t>(t) * c.vocab + v], 1e-4f) << "pos " << t << " vocab " << v;
    }
  }
  EXPECT_THROW(cache.step(layout, p.data(), 0), std::length_error);
  cache.reset();
  EXPECT_THROW(cache.step(layout, p.data(), 23), std::invalid_argument);
}

// With bf16 weights the cache's products are bf16: its logits follow the
// f32 cache's within bf16 rounding.
TEST(KvCache, Bf16WeightsGiveTheF32LogitsWithinBf16Rounding) {
  SKIP_WITHOUT_NATIVE_BF16();
  const Config c{23, 2, 32, 4, 40};
  const ParamLayout layout(c);
  const auto p = test_params(layout, 16);
  const std::vector<kernels::bf16> p_bf16 = bf16_copy(p, Precision::bf16);
  const auto tokens = random_ids(static_cast<std::size_t>(c.context), c.vocab, 17);
  KvCache f32(c), bf16(c);
  for (const std::int32_t token : tokens) {
    const float* a = f32.step(layout, p.data(), token);
    const float* b = bf16.step(layout, Weights(p.data(), p_bf16), token);
    float max_abs = 0.0f, max_err = 0.0f;
    for (int v = 0; v < c.vocab; ++v) {
      max_abs = std::max(max_abs, std::abs(a[v]));
      max_err = std::max(max_err, std::abs(a[v] - b[v]));
    }
    ASSERT_LE(max_err, 2e-2f * max_abs) << "position " << f32.position();
  }
}

TEST(Concurrency, SeparateWorkspacesMatchSingleThread) {
  const Config c{64, 2, 32, 4, 48};
  const ParamLayout layout(c);
  std::vector<float> p(layout.total());
  init_params(layout, p.data(), 16);
  constexpr int B = 2, T = 48;
  std::vector<std::int32_t> tokens[2] = {random_ids(B * T, c.vocab, 17), random_ids(B * T, c.vocab, 18)};
  std::vector<std::int32_t> targets[2] = {random_ids(B * T, c.vocab, 19), random_ids(B * T, c.vocab, 20)};
  auto work = [&](int i, float& loss, std::vector<float>& grad) {
    Workspace ws(c, B, T);
    for (int rep = 0; rep < 3; ++rep) {
      loss = forward_backward(layout, p.data(), tokens[i].data(), targets[i].data(), B, T, grad.data(), 1.0f, true, ws);
    }
  };
  float loss_serial[2], loss_threads[2];
  std::vector<float> grad_serial[2], grad_threads[2];
  for (int i = 0; i < 2; ++i) {
    grad_serial[i].resize(layout.total());
    grad_threads[i].resize(layout.total());
    work(i, loss_serial[i], grad_serial[i]);
  }
  std::thread a(work, 0, std::ref(loss_threads[0]), std::ref(grad_threads[0]));
  std::thread b(work, 1, std::ref(loss_threads[1]), std::ref(grad_threads[1]));
  a.join();
  b.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(loss_serial[i], loss_threads[i]);
    EXPECT_EQ(grad_serial[i], grad_threads[i]);
  }
  EXPECT_NE(loss_serial[0], loss_serial[1]);
}

}  // namespace
}  // namespace cllm::model
