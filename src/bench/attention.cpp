#include "bench/attention.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "kernels/bf16.h"
#include "model/layers.h"

namespace cllm::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace layers = model::layers;

template <class T>
double median_ms(int reps, T&& fn) {
  std::vector<double> t;
  fn();  // warm-up: pages touched, oneDNN primitives created
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// x in the operand type (as_operand converts into the copy, or hands back x for f32).
template <class Op>
std::vector<Op> operand_copy(const std::vector<float>& x) {
  std::vector<Op> out(x.size());
  const Op* converted = layers::as_operand(x.data(), out.data(), x.size());
  if (converted != out.data()) std::copy_n(converted, x.size(), out.data());
  return out;
}

template <class Op>
AttentionMeasurement measure(int B, int T, int C, int NH, int reps) {
  const std::size_t n = static_cast<std::size_t>(B) * T;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv_f(n * 3 * C), dout_f(n * C);
  for (float& x : qkv_f) x = normal(rng);
  for (float& x : dout_f) x = normal(rng);
  const std::vector<Op> qkv = operand_copy<Op>(qkv_f), dout = operand_copy<Op>(dout_f);
  std::vector<Op> out(n * C);
  std::vector<float> kept(layers::attention_kept_size(B, T, NH));
  std::vector<Op> operands(layers::attention_operand_scratch_size(T, C, NH));
  std::vector<float> scratch(layers::attention_scratch_size(T, C, NH)), dqkv(n * 3 * C);
  AttentionMeasurement r;
  r.forward_ms = median_ms(reps, [&] {
    layers::attention_forward(out.data(), kept.data(), scratch.data(), operands.data(), qkv.data(), B, T, C, NH);
  });
  r.backward_ms = median_ms(reps, [&] {
    layers::attention_backward(dqkv.data(), scratch.data(), operands.data(), dout.data(), qkv.data(), kept.data(), B,
                               T, C, NH);
  });
  r.kept_bytes = kept.size() * sizeof(float);
  r.scratch_bytes = scratch.size() * sizeof(float) + operands.size() * sizeof(Op);
  return r;
}

}  // namespace

AttentionMeasurement measure_attention(model::Precision precision, int batch, int seq, int dim, int heads, int reps) {
  AttentionMeasurement r = precision == model::Precision::bf16 ? measure<kernels::bf16>(batch, seq, dim, heads, reps)
                                                               : measure<float>(batch, seq, dim, heads, reps);
  const int hs = dim / heads;
  const double pairs = static_cast<double>(batch) * heads * seq * (seq + 1) / 2.0;
  r.forward_gflops = 4.0 * hs * pairs / r.forward_ms * 1e-6;
  r.backward_gflops = 8.0 * hs * pairs / r.backward_ms * 1e-6;
  return r;
}

}  // namespace cllm::bench
