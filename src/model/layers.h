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
// inp (N,C) @ weight [C,OC] + bias (OC) -> out (N,OC) in the operand type,
// for an output that only feeds products (and GELU): qkv, c_fc. bf16 is
// rounded once as the product writes it (kernels::gemm_bf16_rounded), with
// no f32 array written and converted.
template <class Op>
void matmul_forward_operand(Op* out, const Op* inp, const Op* weight, const float* bias, int N, int C, int OC);
// dout (N,OC) -> dinp (N,C) = dout @ weight^T, dweight [C,OC], dbias (OC).
// dout_operand: dout in the operand type (as_operand), for the products;
// the bias gradient sums the f32 dout.
template <class Op>
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const Op* dout_operand,
                     const Op* inp, const Op* weight, int N, int C, int OC, bool accumulate);
// The plain f32 layer (the reference's signature, for tests and callers without a conversion).
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate);

// Causal multi-head self-attention core (no projections), flash-style, its
// inputs and outputs in the operand type (bf16 runs its products on bf16
// operands). qkv (B,T,3C) = [q | k | v] -> out (B,T,C) and lse (B,NH,T),
// each query row's log-sum-exp of its scaled scores: all that a layer keeps
// for its backward (attention_kept_size floats), which recomputes the
// probabilities from q, k and lse. No T x T matrix is stored: the work goes
// by blocks of query rows, each against the keys up to its last row (the
// masked rest skipped), in scratch that every layer reuses:
// attention_scratch_size(T, C, NH) floats and
// attention_operand_scratch_size(T, C, NH) elements of Op, linear in T.
template <class Op>
void attention_forward(Op* out, float* lse, float* scratch, Op* operands, const Op* qkv, int B, int T, int C, int NH);
// dout (B,T,C) -> dqkv (B,T,3C) (f32), from qkv and the forward's lse;
// scratch and operands as for the forward.
template <class Op>
void attention_backward(float* dqkv, float* scratch, Op* operands, const Op* dout, const Op* qkv, const float* lse,
                        int B, int T, int C, int NH);
std::size_t attention_kept_size(int B, int T, int NH);
std::size_t attention_scratch_size(int T, int C, int NH);
std::size_t attention_operand_scratch_size(int T, int C, int NH);

// The tied LM head: x (N,C) @ wte^T -> logits (N,V).
template <class Op>
void lm_head_forward(float* logits, const Op* x, const Op* wte, int N, int C, int V);

// The LM head fused with the cross-entropy and, when dwte is not null, its
// backward, chunk_rows (>= 1) rows at a time, so that no (N,V) array exists:
// per chunk the logits (into `logits`, scratch for min(chunk_rows, N) rows;
// lm_head_chunk_rows picks the size the model uses), each row's loss, then
// dlogits = dloss * (softmax - onehot) in place, dx (N,C) = dlogits @ wte
// and dwte [V,C] (+)= dlogits^T @ x. dlogits_operand: a chunk's dlogits in
// the operand type (bf16; unused for f32). Returns the mean loss over the N
// rows; with dwte null, dx, dloss and dlogits_operand are unused.
template <class Op>
float lm_head_loss(float* logits, Op* dlogits_operand, const Op* x, const Op* wte, const std::int32_t* targets, int N,
                   int C, int V, int chunk_rows, float dloss, float* dx, float* dwte, bool accumulate);
// Rows per chunk for N rows of vocabulary V: about 128 MiB of logits (all
// the rows of a small vocabulary at once), enough rows to keep the products
// compute-bound.
int lm_head_chunk_rows(int N, int V);

// GELU, tanh approximation, elementwise over n values. The input is f32,
// or bf16 (a bf16 workspace keeps GELU's input so), widened in L1-sized
// chunks on the way.
template <class Op, class In>
void gelu_forward(Op* out, const In* inp, std::size_t n);
// dinp = dout * gelu'(inp); dinp may alias dout.
template <class In>
void gelu_backward(float* dinp, const In* inp, const float* dout, std::size_t n);

}  // namespace cllm::model::layers
