// The GPT layers as forward/backward pairs over flat row-major arrays.
// N = rows (B*T tokens), C = input width, OC = output width, NH = heads.
// "accumulate" on a backward: parameter gradients are added (true) or
// written (false). Activation gradients named dinp are written unless the
// comment says "+=". Matmuls go through cllm::kernels::sgemm; the loops
// elsewhere are O(N*C). reference.h has the naive version of each, with the
// same signature, that the tests use as the oracle.
//
// Operand type Op (float or kernels::bf16): the type of the activations and
// weights that only feed matrix products. With bf16 the products run on the
// CPU's bf16 units with f32 accumulation (kernels::gemm_bf16); everything
// else (statistics, softmax, GELU, residuals, gradients) stays in f32 and
// converts on load and store. Both are instantiated in layers.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/bf16.h"

namespace cllm::model::layers {

using kernels::bf16;

// x (n) in the operand type: x itself for float; for bf16 converted into
// scratch (n elements), which is returned.
const float* as_operand(const float* x, float* scratch, std::size_t n);
const bf16* as_operand(const float* x, bf16* scratch, std::size_t n);

// tokens (B,T) -> out (B,T,C) = wte[token] + wpe[t]
void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C);
// dout (B,T,C) -> dwte[token] +=, dwpe[t] += (always accumulates: wte also
// receives the LM head's gradient; the caller zeroes dwpe when overwriting)
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C);

// inp (N,C) -> out (N,C), mean (N), rstd (N); eps 1e-5
template <class Op>
void layernorm_forward(Op* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);
// dout (N,C) -> dinp (N,C) +=, dweight (C), dbias (C)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, bool accumulate);

// inp (N,C) @ weight [C,OC] + bias (OC) [+ residual (N,OC)] -> out (N,OC)
// residual may be null; it may not alias out.
template <class Op>
void matmul_forward(float* out, const Op* inp, const Op* weight, const float* bias,
                    const float* residual, int N, int C, int OC);
// dout (N,OC) -> dinp (N,C) = dout @ weight^T, dweight [C,OC], dbias (OC).
// dout_operand: dout in the operand type (as_operand), for the products;
// the bias gradient sums the f32 dout.
template <class Op>
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const Op* dout_operand,
                     const Op* inp, const Op* weight, int N, int C, int OC, bool accumulate);
// The plain f32 layer (the reference's signature, for tests and callers without a conversion).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate);

// Causal multi-head self-attention core (no projections), its inputs and
// outputs in the operand type (bf16 runs its products on bf16 operands).
// qkv (B,T,3C) = [q | k | v] -> out (B,T,C), att (B,NH) x
// attention_probs_per_head(T) softmax probabilities, stored by blocks of
// query rows: row t starts at attention_row_offset(T, t) and holds keys
// 0..t (then zeros up to its block's last key). scratch holds
// attention_scratch_size(T, C, NH) floats and operands
// attention_operand_scratch_size(T, C, NH) elements of Op.
template <class Op>
void attention_forward(Op* out, Op* att, float* scratch, Op* operands, const Op* qkv, int B, int T, int C,
                       int NH);
// dout (B,T,C) -> dqkv (B,T,3C) (f32); scratch and operands as for the forward.
template <class Op>
void attention_backward(float* dqkv, float* scratch, Op* operands, const Op* dout, const Op* qkv,
                        const Op* att, int B, int T, int C, int NH);
std::size_t attention_row_offset(int T, int t);
std::size_t attention_probs_per_head(int T);
std::size_t attention_scratch_size(int T, int C, int NH);
std::size_t attention_operand_scratch_size(int T, int C, int NH);

// The tied LM head: x (N,C) @ wte^T -> logits (N,V).
template <class Op>
void lm_head_forward(float* logits, const Op* x, const Op* wte, int N, int C, int V);
// dlogits (N,V) -> dx (N,C) = dlogits @ wte, dwte [V,C] (+)= dlogits^T @ x.
template <class Op>
void lm_head_backward(float* dx, float* dwte, const Op* dlogits, const Op* x, const Op* wte, int N, int C, int V,
                      bool accumulate);

// GELU, tanh approximation, elementwise over n values.
template <class Op>
void gelu_forward(Op* out, const float* inp, std::size_t n);
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
