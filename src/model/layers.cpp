#include "model/layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "model/model_kernels.h"
#include "model/phase_profile.h"

namespace cllm::model::layers {
namespace {

using kernels::GemmShape;
using kernels::sgemm;

constexpr float kLayerNormEps = 1e-5f;
// Attention works on blocks of this many query rows: a block's scores only
// reach its last key, so the masked upper triangle is skipped except inside
// diagonal blocks, and every product is still one sgemm call. A block meets
// all its keys in one product (kAttentionBlock x T scores, 256 KiB at
// T = 1024), so its softmax is exact in one pass, with no running rescale.
constexpr int kAttentionBlock = 64;
// The LM head's chunk: about this many logits (128 MiB) at a time. Fewer
// rows make dwte's product (k = rows) slower: GPT-2 124M trained at 165
// tokens/s with 32 MiB chunks (166 rows), 177 with these (667 rows), on 2
// Zen 3 cores (docs/BENCHMARKS.md, section 6).
constexpr int kLogitsChunkFloats = 1 << 25;

// Eight independent partial sums: the loop vectorizes without reassociation
// flags, and the order is fixed (deterministic).
constexpr int kLanes = 8;

// dst (OC) += sum of the N rows of src (N,OC), or = when !accumulate.
void add_column_sums(float* dst, const float* src, int N, int OC, bool accumulate) {
  if (!accumulate) std::fill(dst, dst + OC, 0.0f);
  for (int n = 0; n < N; ++n) {
    const float* row = src + static_cast<std::size_t>(n) * OC;
    for (int o = 0; o < OC; ++o) dst[o] += row[o];
  }
}

// The matrix products, by operand type.
void product(const GemmShape& s, const float* a, const float* b, float* c) {
  const PhaseScope scope(Phase::matmul);
  sgemm(s, a, b, c);
}
void product(const GemmShape& s, const bf16* a, const bf16* b, float* c) {
  const PhaseScope scope(Phase::matmul);
  kernels::gemm_bf16(s, a, b, c);
}

// f32 values stored in the operand type.
void store(float* dst, const float* src, std::size_t n) { std::memcpy(dst, src, sizeof(float) * n); }
void store(bf16* dst, const float* src, std::size_t n) { kernels::active().to_bf16(dst, src, n); }

// bf16 values pass through f32 buffers of this many (2 KiB: stays in L1).
constexpr std::size_t kF32Chunk = 512;

// fn(chunk, begin, count) for [0, n) in pieces of at most kF32Chunk, with
// chunk an f32 buffer of that size.
template <class Fn>
void for_each_f32_chunk(std::size_t n, const Fn& fn) {
  float chunk[kF32Chunk];
  for (std::size_t i = 0; i < n; i += kF32Chunk) fn(chunk, i, std::min(kF32Chunk, n - i));
}

// out[0, n) = values that compute(y, begin, count) writes as f32 into
// y[0, count) for out[begin, begin + count): for float straight into out,
// for bf16 a chunk at a time into an L1-sized buffer, then converted.
template <class Op, class Compute>
void write_in_chunks(Op* out, std::size_t n, const Compute& compute) {
  if constexpr (std::is_same_v<Op, float>) {
    compute(out, 0, n);
  } else {
    for_each_f32_chunk(n, [&](float* chunk, std::size_t begin, std::size_t count) {
      compute(chunk, begin, count);
      store(out + begin, chunk, count);
    });
  }
}

// body(x, begin, count) for x = inp[begin, begin + count) as f32: float
// input whole, bf16 input a chunk at a time widened into an L1-sized buffer.
template <class In, class Body>
void read_in_chunks(const In* inp, std::size_t n, const Body& body) {
  if constexpr (std::is_same_v<In, float>) {
    body(inp, 0, n);
  } else {
    for_each_f32_chunk(n, [&](float* chunk, std::size_t begin, std::size_t count) {
      kernels::active().from_bf16(chunk, inp + begin, count);
      body(chunk, begin, count);
    });
  }
}

// sum a[i] * b[i]
float dot(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += acc[j];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// One head's (T, hs) slice of a (T, ld) matrix to or from a dense (T, hs)
// copy (the way back in the operand type). The products then see dense
// operands only, which oneDNN's brgemm kernels, its lock-free path, require.
template <class Op>
void gather_head(Op* dense, const Op* strided, int T, int hs, int ld) {
  for (int t = 0; t < T; ++t)
    std::memcpy(dense + static_cast<std::size_t>(t) * hs, strided + static_cast<std::size_t>(t) * ld,
                sizeof(Op) * static_cast<std::size_t>(hs));
}

template <class Op>
void scatter_head(Op* strided, const float* dense, int T, int hs, int ld) {
  for (int t = 0; t < T; ++t)
    store(strided + static_cast<std::size_t>(t) * ld, dense + static_cast<std::size_t>(t) * hs,
          static_cast<std::size_t>(hs));
}

}  // namespace

const float* as_operand(const float* x, float*, std::size_t) { return x; }

const bf16* as_operand(const float* x, bf16* scratch, std::size_t n) {
  const PhaseScope scope(Phase::convert);
  store(scratch, x, n);
  return scratch;
}

void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C) {
  const PhaseScope scope(Phase::other);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::size_t bt = static_cast<std::size_t>(b) * T + t;
      float* o = out + bt * C;
      const float* e = wte + static_cast<std::size_t>(tokens[bt]) * C;
      const float* p = wpe + static_cast<std::size_t>(t) * C;
      for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
    }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C) {
  const PhaseScope scope(Phase::other);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::size_t bt = static_cast<std::size_t>(b) * T + t;
      const float* d = dout + bt * C;
      float* de = dwte + static_cast<std::size_t>(tokens[bt]) * C;
      float* dp = dwpe + static_cast<std::size_t>(t) * C;
      for (int c = 0; c < C; ++c) {
        de[c] += d[c];
        dp[c] += d[c];
      }
    }
}

template <class Op>
void layernorm_forward(Op* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
  const PhaseScope scope(Phase::layernorm);
  const auto& mk = detail::model_kernels();
  for (int n = 0; n < N; ++n) {
    const float* x = inp + static_cast<std::size_t>(n) * C;
    float m = 0.0f, s = 0.0f;
    mk.layernorm_stats(x, static_cast<std::size_t>(C), kLayerNormEps, &m, &s);
    write_in_chunks(out + static_cast<std::size_t>(n) * C, static_cast<std::size_t>(C),
                    [&](float* y, std::size_t c0, std::size_t count) {
                      mk.layernorm_apply(y, x + c0, m, s, weight + c0, bias + c0, count);
                    });
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, bool accumulate) {
  const PhaseScope scope(Phase::layernorm);
  const auto& mk = detail::model_kernels();
  if (!accumulate) {
    std::fill(dweight, dweight + C, 0.0f);
    std::fill(dbias, dbias + C, 0.0f);
  }
  for (int n = 0; n < N; ++n) {
    const std::size_t row = static_cast<std::size_t>(n) * C;
    mk.layernorm_backward(dinp + row, dweight, dbias, dout + row, inp + row, weight, mean[n], rstd[n],
                          static_cast<std::size_t>(C));
  }
}

template <class Op>
void matmul_forward(float* out, const Op* inp, const Op* weight, const float* bias,
                    const float* residual, int N, int C, int OC) {
  const PhaseScope scope(Phase::other);
  // out = residual + bias first, then the product accumulates (beta = 1).
  for (int n = 0; n < N; ++n) {
    float* o = out + static_cast<std::size_t>(n) * OC;
    const float* r = residual ? residual + static_cast<std::size_t>(n) * OC : nullptr;
    if (r && bias) {
      for (int j = 0; j < OC; ++j) o[j] = r[j] + bias[j];
    } else if (r) {
      std::memcpy(o, r, sizeof(float) * static_cast<std::size_t>(OC));
    } else if (bias) {
      std::memcpy(o, bias, sizeof(float) * static_cast<std::size_t>(OC));
    }
  }
  const GemmShape s{.m = N, .n = OC, .k = C, .beta = (bias || residual) ? 1.0f : 0.0f, .lda = C, .ldb = OC, .ldc = OC};
  product(s, inp, weight, out);
}

template <class Op>
void matmul_forward_operand(Op* out, const Op* inp, const Op* weight, const float* bias, int N, int C, int OC) {
  if constexpr (std::is_same_v<Op, float>) {
    matmul_forward(out, inp, weight, bias, nullptr, N, C, OC);
  } else {
    const PhaseScope scope(Phase::matmul);
    const GemmShape s{.m = N, .n = OC, .k = C, .lda = C, .ldb = OC, .ldc = OC};
    kernels::gemm_bf16_rounded(s, inp, weight, bias, out);
  }
}

template <class Op>
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const Op* dout_operand,
                     const Op* inp, const Op* weight, int N, int C, int OC, bool accumulate) {
  const PhaseScope scope(Phase::other);
  // dinp (N,C) = dout (N,OC) @ weight^T
  const GemmShape di{.trans_b = true, .m = N, .n = C, .k = OC, .lda = OC, .ldb = OC, .ldc = C};
  product(di, dout_operand, weight, dinp);
  // dweight [C,OC] (+)= inp^T (C,N) @ dout (N,OC)
  const GemmShape dw{.trans_a = true, .m = C, .n = OC, .k = N, .beta = accumulate ? 1.0f : 0.0f,
                     .lda = C, .ldb = OC, .ldc = OC};
  product(dw, inp, dout_operand, dweight);
  if (dbias) add_column_sums(dbias, dout, N, OC, accumulate);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate) {
  matmul_backward(dinp, dweight, dbias, dout, dout, inp, weight, N, C, OC, accumulate);
}

// f32: the forward's output head and one row block's scores; the backward's
// dq, dk, dv and one row block's probabilities and their gradients.
// Operands: q, k, v and the output gradient of one head, and one row block's
// probabilities and score gradients in the operand type (bf16).
std::size_t attention_scratch_size(int T, int C, int NH) {
  const std::size_t head = static_cast<std::size_t>(T) * (C / NH);
  return 3 * head + 2 * static_cast<std::size_t>(kAttentionBlock) * T;
}

std::size_t attention_operand_scratch_size(int T, int C, int NH) {
  const std::size_t head = static_cast<std::size_t>(T) * (C / NH);
  return 4 * head + 2 * static_cast<std::size_t>(kAttentionBlock) * T;
}

std::size_t attention_kept_size(int B, int T, int NH) {
  return static_cast<std::size_t>(B) * static_cast<std::size_t>(NH) * static_cast<std::size_t>(T);
}

namespace {

// scores (m, r1) of query rows r0.. of one head: scale * q[r0:r1] @ k[0:r1]^T.
template <class Op>
void block_scores(float* scores, const Op* q, const Op* k, int r0, int r1, int hs, float scale) {
  const GemmShape qk{.trans_b = true, .m = r1 - r0, .n = r1, .k = hs, .alpha = scale,
                     .lda = hs, .ldb = hs, .ldc = r1, .lock_free = true};
  product(qk, q + static_cast<std::size_t>(r0) * hs, k, scores);
}

}  // namespace

template <class Op>
void attention_forward(Op* out, float* lse, float* scratch, Op* operands, const Op* qkv, int B, int T, int C,
                       int NH) {
  const PhaseScope scope(Phase::attention);
  const int hs = C / NH;
  const int ld = 3 * C;
  const std::size_t head = static_cast<std::size_t>(T) * hs;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const auto& mk = detail::model_kernels();
  Op* q = operands;  // (T, hs) each
  Op* k = q + head;
  Op* v = k + head;
  Op* p_operand = q + 4 * head;  // one block's probabilities in the operand type (bf16), as the backward's
  float* o = scratch;
  float* p = o + head;  // (m, r1): one row block's scores, then probabilities
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const Op* qkv_h = qkv + static_cast<std::size_t>(b) * T * ld + h * hs;
      gather_head(q, qkv_h, T, hs, ld);
      gather_head(k, qkv_h + C, T, hs, ld);
      gather_head(v, qkv_h + 2 * C, T, hs, ld);
      float* lse_h = lse + (static_cast<std::size_t>(b) * NH + h) * T;
      for (int r0 = 0; r0 < T; r0 += kAttentionBlock) {
        const int r1 = std::min(r0 + kAttentionBlock, T), m = r1 - r0;
        block_scores(p, q, k, r0, r1, hs, scale);
        for (int t = r0; t < r1; ++t) {
          float* row = p + static_cast<std::size_t>(t - r0) * r1;
          const std::size_t n = static_cast<std::size_t>(t) + 1;
          const float mx = mk.max(row, n);
          const float sum = mk.exp_shift_sum(row, mx, n);
          const float inv = 1.0f / sum;
          for (std::size_t j = 0; j < n; ++j) row[j] *= inv;
          std::fill(row + n, row + r1, 0.0f);  // masked: the product below reads them
          lse_h[t] = mx + std::log(sum);
        }
        // o[r0:r1] = p @ v[0:r1]
        const GemmShape pv{.m = m, .n = hs, .k = r1, .lda = r1, .ldb = hs, .ldc = hs, .lock_free = true};
        product(pv, as_operand(p, p_operand, static_cast<std::size_t>(m) * r1), v, o + static_cast<std::size_t>(r0) * hs);
      }
      scatter_head(out + static_cast<std::size_t>(b) * T * C + h * hs, o, T, hs, C);
    }
}

template <class Op>
void attention_backward(float* dqkv, float* scratch, Op* operands, const Op* dout, const Op* qkv, const float* lse,
                        int B, int T, int C, int NH) {
  const PhaseScope scope(Phase::attention);
  const int hs = C / NH;
  const int ld = 3 * C;
  const std::size_t head = static_cast<std::size_t>(T) * hs;
  const std::size_t block = static_cast<std::size_t>(kAttentionBlock) * T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const auto& mk = detail::model_kernels();
  Op* q = operands;  // (T, hs) each
  Op* k = q + head;
  Op* v = k + head;
  Op* d = v + head;
  Op* p_operand = d + head;  // p and ds below in the operand type (bf16)
  Op* ds_operand = p_operand + block;
  float* dq = scratch;  // (T, hs) each
  float* dk = dq + head;
  float* dv = dk + head;
  float* p = dv + head;  // (m, r1) each: one row block's probabilities, recomputed,
  float* ds = p + block;  // and their score gradients
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const std::size_t qoff = static_cast<std::size_t>(b) * T * ld + h * hs;
      gather_head(q, qkv + qoff, T, hs, ld);
      gather_head(k, qkv + qoff + C, T, hs, ld);
      gather_head(v, qkv + qoff + 2 * C, T, hs, ld);
      gather_head(d, dout + static_cast<std::size_t>(b) * T * C + h * hs, T, hs, C);
      std::fill(dk, dk + 2 * head, 0.0f);  // dk and dv accumulate over the row blocks
      const float* lse_h = lse + (static_cast<std::size_t>(b) * NH + h) * T;
      for (int r0 = 0; r0 < T; r0 += kAttentionBlock) {
        const int r1 = std::min(r0 + kAttentionBlock, T), m = r1 - r0;
        const std::size_t cells = static_cast<std::size_t>(m) * r1;
        // p = exp(scores - lse): the forward's probabilities, from what it kept
        block_scores(p, q, k, r0, r1, hs, scale);
        for (int t = r0; t < r1; ++t) {
          float* row = p + static_cast<std::size_t>(t - r0) * r1;
          mk.exp_shift_sum(row, lse_h[t], static_cast<std::size_t>(t) + 1);
          std::fill(row + t + 1, row + r1, 0.0f);
        }
        const Op* pm = as_operand(p, p_operand, cells);
        // dp = d[r0:r1] @ v[0:r1]^T, then ds = p * (dp - rowsum(p * dp)) * scale (the softmax's backward)
        const GemmShape dp{.trans_b = true, .m = m, .n = r1, .k = hs, .lda = hs, .ldb = hs, .ldc = r1,
                           .lock_free = true};
        product(dp, d + static_cast<std::size_t>(r0) * hs, v, ds);
        for (int t = r0; t < r1; ++t) {
          float* drow = ds + static_cast<std::size_t>(t - r0) * r1;
          const float* prow = p + static_cast<std::size_t>(t - r0) * r1;
          const float pd = dot(prow, drow, t + 1);
          for (int j = 0; j <= t; ++j) drow[j] = prow[j] * (drow[j] - pd) * scale;
          std::fill(drow + t + 1, drow + r1, 0.0f);
        }
        const Op* dsm = as_operand(ds, ds_operand, cells);
        // dq[r0:r1] = ds @ k[0:r1]
        const GemmShape gq{.m = m, .n = hs, .k = r1, .lda = r1, .ldb = hs, .ldc = hs, .lock_free = true};
        product(gq, dsm, k, dq + static_cast<std::size_t>(r0) * hs);
        // dk[0:r1] += ds^T @ q[r0:r1];  dv[0:r1] += p^T @ d[r0:r1]
        const GemmShape g{.trans_a = true, .m = r1, .n = hs, .k = m, .beta = 1.0f, .lda = r1, .ldb = hs, .ldc = hs,
                          .lock_free = true};
        product(g, dsm, q + static_cast<std::size_t>(r0) * hs, dk);
        product(g, pm, d + static_cast<std::size_t>(r0) * hs, dv);
      }
      scatter_head(dqkv + qoff, dq, T, hs, ld);
      scatter_head(dqkv + qoff + C, dk, T, hs, ld);
      scatter_head(dqkv + qoff + 2 * C, dv, T, hs, ld);
    }
}

int lm_head_chunk_rows(int N, int V) { return std::clamp(kLogitsChunkFloats / V, 1, std::max(N, 1)); }

template <class Op>
void lm_head_forward(float* logits, const Op* x, const Op* wte, int N, int C, int V) {
  const GemmShape s{.trans_b = true, .m = N, .n = V, .k = C, .lda = C, .ldb = C, .ldc = V};
  product(s, x, wte, logits);
}

template <class Op>
float lm_head_loss(float* logits, Op* dlogits_operand, const Op* x, const Op* wte, const std::int32_t* targets, int N,
                   int C, int V, int chunk_rows, float dloss, float* dx, float* dwte, bool accumulate) {
  const auto& mk = detail::model_kernels();
  double total = 0.0;
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    const int m = std::min(chunk_rows, N - r0);
    const Op* xc = x + static_cast<std::size_t>(r0) * C;
    lm_head_forward(logits, xc, wte, m, C, V);
    {
      const PhaseScope scope(Phase::crossentropy);
      for (int i = 0; i < m; ++i) {
        float* row = logits + static_cast<std::size_t>(i) * V;
        const std::int32_t target = targets[r0 + i];
        const float target_logit = row[target];
        const float mx = mk.max(row, static_cast<std::size_t>(V));
        const float z = mk.exp_shift_sum(row, mx, static_cast<std::size_t>(V));
        // log-sum-exp form: exact even when the target's probability underflows
        total += static_cast<double>(mx + std::log(z) - target_logit);
        if (!dwte) continue;
        // dlogits = dloss * (softmax - onehot(target)), in place
        const float s = dloss / z;
        for (int j = 0; j < V; ++j) row[j] *= s;
        row[target] -= dloss;
      }
    }
    if (!dwte) continue;
    const Op* dl = as_operand(logits, dlogits_operand, static_cast<std::size_t>(m) * V);
    // dx[r0:] (m, C) = dlogits @ wte;  dwte [V,C] (+)= dlogits^T @ x[r0:]
    const GemmShape ddx{.m = m, .n = C, .k = V, .lda = V, .ldb = C, .ldc = C};
    product(ddx, dl, wte, dx + static_cast<std::size_t>(r0) * C);
    const GemmShape dw{.trans_a = true, .m = V, .n = C, .k = m, .beta = accumulate || r0 > 0 ? 1.0f : 0.0f,
                       .lda = V, .ldb = C, .ldc = C};
    product(dw, dl, xc, dwte);
  }
  return static_cast<float>(total / N);
}

template <class Op, class In>
void gelu_forward(Op* out, const In* inp, std::size_t n) {
  const PhaseScope scope(Phase::gelu);
  read_in_chunks(inp, n, [&](const float* x, std::size_t x_begin, std::size_t x_count) {
    write_in_chunks(out + x_begin, x_count, [&](float* y, std::size_t begin, std::size_t count) {
      detail::model_kernels().gelu_forward(y, x + begin, count);
    });
  });
}

template <class In>
void gelu_backward(float* dinp, const In* inp, const float* dout, std::size_t n) {
  const PhaseScope scope(Phase::gelu);
  read_in_chunks(inp, n, [&](const float* x, std::size_t begin, std::size_t count) {
    detail::model_kernels().gelu_backward(dinp + begin, x, dout + begin, count);
  });
}

// The two operand types.
template void layernorm_forward(float*, float*, float*, const float*, const float*, const float*, int, int);
template void layernorm_forward(bf16*, float*, float*, const float*, const float*, const float*, int, int);
template void matmul_forward(float*, const float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward(float*, const bf16*, const bf16*, const float*, const float*, int, int, int);
template void matmul_forward_operand(float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward_operand(bf16*, const bf16*, const bf16*, const float*, int, int, int);
template void matmul_backward(float*, float*, float*, const float*, const float*, const float*, const float*, int,
                              int, int, bool);
template void matmul_backward(float*, float*, float*, const float*, const bf16*, const bf16*, const bf16*, int, int,
                              int, bool);
template void attention_forward(float*, float*, float*, float*, const float*, int, int, int, int);
template void attention_forward(bf16*, float*, float*, bf16*, const bf16*, int, int, int, int);
template void attention_backward(float*, float*, float*, const float*, const float*, const float*, int, int, int,
                                 int);
template void attention_backward(float*, float*, bf16*, const bf16*, const bf16*, const float*, int, int, int, int);
template void lm_head_forward(float*, const float*, const float*, int, int, int);
template void lm_head_forward(float*, const bf16*, const bf16*, int, int, int);
template float lm_head_loss(float*, float*, const float*, const float*, const std::int32_t*, int, int, int, int, float,
                            float*, float*, bool);
template float lm_head_loss(float*, bf16*, const bf16*, const bf16*, const std::int32_t*, int, int, int, int, float,
                            float*, float*, bool);
template void gelu_forward(float*, const float*, std::size_t);
template void gelu_forward(bf16*, const float*, std::size_t);
template void gelu_forward(bf16*, const bf16*, std::size_t);
template void gelu_backward(float*, const float*, const float*, std::size_t);
template void gelu_backward(float*, const bf16*, const float*, std::size_t);

}  // namespace cllm::model::layers
