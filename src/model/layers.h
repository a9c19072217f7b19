// The GPT layers as forward/backward pairs over flat row-major arrays.
// N = rows (B*T tokens), C = input width, OC = output width, NH = heads.
// "accumulate" on a backward: parameter gradients are added (true) or
// written (false). Activation gradients named dinp are written unless the
// comment says "+=". Matmuls go through cllm::kernels::sgemm; the loops
// elsewhere are O(N*C). reference.h has the naive version of each, with the
// same signature, that the tests use as the oracle.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cllm::model::layers {

// tokens (B,T) -> out (B,T,C) = wte[token] + wpe[t]
void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C);
// dout (B,T,C) -> dwte[token] +=, dwpe[t] += (always accumulates: wte also
// receives the LM head's gradient; the caller zeroes dwpe when overwriting)
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C);

// inp (N,C) -> out (N,C), mean (N), rstd (N); eps 1e-5
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);
// dout (N,C) -> dinp (N,C) +=, dweight (C), dbias (C)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, bool accumulate);

// inp (N,C) @ weight [C,OC] + bias (OC) [+ residual (N,OC)] -> out (N,OC)
// residual may be null; it may not alias out.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int N, int C, int OC);
// dout (N,OC) -> dinp (N,C) = dout @ weight^T, dweight [C,OC], dbias (OC)
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate);

// Causal multi-head self-attention core (no projections).
// qkv (B,T,3C) = [q | k | v] -> out (B,T,C), att (B,NH) x
// attention_probs_per_head(T) softmax probabilities, stored by blocks of
// query rows: row t starts at attention_row_offset(T, t) and holds keys
// 0..t (then zeros up to its block's last key). scratch holds
// attention_scratch_size(T, C, NH) floats.
void attention_forward(float* out, float* att, float* scratch, const float* qkv, int B, int T, int C, int NH);
// dout (B,T,C) -> dqkv (B,T,3C); scratch as for the forward.
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH);
std::size_t attention_row_offset(int T, int t);
std::size_t attention_probs_per_head(int T);
std::size_t attention_scratch_size(int T, int C, int NH);

// GELU, tanh approximation, elementwise over n values.
void gelu_forward(float* out, const float* inp, std::size_t n);
// dinp = dout * gelu'(inp); dinp may alias dout.
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n);

// logits (N,V) -> probs (N,V) = softmax, losses (N) = -log probs[target].
// Returns the mean loss.
float crossentropy_forward(float* probs, float* losses, const float* logits,
                           const std::int32_t* targets, int N, int V);
// dlogits (N,V) = dloss * (probs - onehot(target)); dlogits may alias probs.
void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, int N,
                           int V, float dloss);

}  // namespace cllm::model::layers
