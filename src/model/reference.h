// Naive reference versions of the layers in layers.h: the same signatures
// and contracts, written as the plainest loops (double accumulators, no
// sgemm, no blocking) so the tests can use them as the oracle.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cllm::model::reference {

void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, bool accumulate);
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int N, int C, int OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate);
// The oracle keeps the probabilities, att (B,NH,T,T), one full row per query,
// where layers.h keeps only each row's log-sum-exp and recomputes them.
void attention_forward(float* out, float* att, float* scratch, const float* qkv, int B, int T, int C, int NH);
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH);
void gelu_forward(float* out, const float* inp, std::size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n);
float crossentropy_forward(float* probs, float* losses, const float* logits,
                           const std::int32_t* targets, int N, int V);
void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, int N,
                           int V, float dloss);

}  // namespace cllm::model::reference
