#include "model/reference.h"

#include <cmath>
#include <vector>

namespace cllm::model::reference {
namespace {
constexpr double kPi = 3.14159265358979323846;
}

void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe,
                     int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        const int bt = b * T + t;
        out[bt * C + c] = wte[tokens[bt] * C + c] + wpe[t * C + c];
      }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens,
                      int B, int T, int C) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        const int bt = b * T + t;
        dwte[tokens[bt] * C + c] += dout[bt * C + c];
        dwpe[t * C + c] += dout[bt * C + c];
      }
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    double m = 0.0, v = 0.0;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; ++c) out[n * C + c] = static_cast<float>((x[c] - m) * s * weight[c] + bias[c]);
    mean[n] = static_cast<float>(m);
    rstd[n] = static_cast<float>(s);
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C, bool accumulate) {
  if (!accumulate)
    for (int c = 0; c < C; ++c) dweight[c] = dbias[c] = 0.0f;
  for (int n = 0; n < N; ++n) {
    double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
    for (int c = 0; c < C; ++c) {
      const double norm = (inp[n * C + c] - mean[n]) * static_cast<double>(rstd[n]);
      const double dnorm = static_cast<double>(weight[c]) * dout[n * C + c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int c = 0; c < C; ++c) {
      const double norm = (inp[n * C + c] - mean[n]) * static_cast<double>(rstd[n]);
      const double dnorm = static_cast<double>(weight[c]) * dout[n * C + c];
      dbias[c] += dout[n * C + c];
      dweight[c] += static_cast<float>(norm * dout[n * C + c]);
      dinp[n * C + c] += static_cast<float>((dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[n]);
    }
  }
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int N, int C, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (int c = 0; c < C; ++c) acc += static_cast<double>(inp[n * C + c]) * weight[c * OC + o];
      if (residual) acc += residual[n * OC + o];
      out[n * OC + o] = static_cast<float>(acc);
    }
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, bool accumulate) {
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int o = 0; o < OC; ++o) acc += static_cast<double>(dout[n * OC + o]) * weight[c * OC + o];
      dinp[n * C + c] = static_cast<float>(acc);
    }
  for (int c = 0; c < C; ++c)
    for (int o = 0; o < OC; ++o) {
      double acc = accumulate ? dweight[c * OC + o] : 0.0;
      for (int n = 0; n < N; ++n) acc += static_cast<double>(inp[n * C + c]) * dout[n * OC + o];
      dweight[c * OC + o] = static_cast<float>(acc);
    }
  if (dbias)
    for (int o = 0; o < OC; ++o) {
      double acc = accumulate ? dbias[o] : 0.0;
      for (int n = 0; n < N; ++n) acc += dout[n * OC + o];
      dbias[o] = static_cast<float>(acc);
    }
}

void attention_forward(float* out, float* att, float* /*scratch*/, const float* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const float* q = qkv + (b * T + t) * 3 * C + h * hs;
        float* a = att + ((b * NH + h) * T + t) * T;
        double mx = -INFINITY;
        std::vector<double> score(static_cast<std::size_t>(t) + 1);
        for (int s = 0; s <= t; ++s) {
          const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
          double acc = 0.0;
          for (int i = 0; i < hs; ++i) acc += static_cast<double>(q[i]) * k[i];
          score[s] = acc * scale;
          mx = std::max(mx, score[s]);
        }
        double z = 0.0;
        for (int s = 0; s <= t; ++s) z += std::exp(score[s] - mx);
        for (int s = 0; s < T; ++s) a[s] = s <= t ? static_cast<float>(std::exp(score[s] - mx) / z) : 0.0f;
        for (int i = 0; i < hs; ++i) {
          double acc = 0.0;
          for (int s = 0; s <= t; ++s) acc += static_cast<double>(a[s]) * qkv[(b * T + s) * 3 * C + 2 * C + h * hs + i];
          out[(b * T + t) * C + h * hs + i] = static_cast<float>(acc);
        }
      }
}

void attention_backward(float* dqkv, float* /*scratch*/, const float* dout, const float* qkv,
                        const float* att, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (int i = 0; i < B * T * 3 * C; ++i) dqkv[i] = 0.0f;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const float* a = att + ((b * NH + h) * T + t) * T;
        const float* d = dout + (b * T + t) * C + h * hs;
        std::vector<double> datt(static_cast<std::size_t>(t) + 1);
        for (int s = 0; s <= t; ++s) {
          const float* v = qkv + (b * T + s) * 3 * C + 2 * C + h * hs;
          float* dv = dqkv + (b * T + s) * 3 * C + 2 * C + h * hs;
          double acc = 0.0;
          for (int i = 0; i < hs; ++i) {
            acc += static_cast<double>(d[i]) * v[i];
            dv[i] += a[s] * d[i];
          }
          datt[s] = acc;
        }
        double pd = 0.0;
        for (int s = 0; s <= t; ++s) pd += a[s] * datt[s];
        const float* q = qkv + (b * T + t) * 3 * C + h * hs;
        float* dq = dqkv + (b * T + t) * 3 * C + h * hs;
        for (int s = 0; s <= t; ++s) {
          const double dscore = a[s] * (datt[s] - pd) * scale;
          const float* k = qkv + (b * T + s) * 3 * C + C + h * hs;
          float* dk = dqkv + (b * T + s) * 3 * C + C + h * hs;
          for (int i = 0; i < hs; ++i) {
            dq[i] += static_cast<float>(dscore * k[i]);
            dk[i] += static_cast<float>(dscore * q[i]);
          }
        }
      }
}

void gelu_forward(float* out, const float* inp, std::size_t n) {
  const double s = std::sqrt(2.0 / kPi);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = inp[i];
    out[i] = static_cast<float>(0.5 * x * (1.0 + std::tanh(s * (x + 0.044715 * x * x * x))));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
  const double s = std::sqrt(2.0 / kPi);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = inp[i];
    const double th = std::tanh(s * (x + 0.044715 * x * x * x));
    const double grad = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * s * (1.0 + 3.0 * 0.044715 * x * x);
    dinp[i] = static_cast<float>(dout[i] * grad);
  }
}

float crossentropy_forward(float* probs, float* losses, const float* logits,
                           const std::int32_t* targets, int N, int V) {
  double total = 0.0;
  for (int n = 0; n < N; ++n) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[n * V + i]));
    for (int i = 0; i < V; ++i) z += std::exp(logits[n * V + i] - mx);
    for (int i = 0; i < V; ++i) probs[n * V + i] = static_cast<float>(std::exp(logits[n * V + i] - mx) / z);
    const double loss = std::log(z) - (logits[n * V + targets[n]] - mx);
    losses[n] = static_cast<float>(loss);
    total += loss;
  }
  return static_cast<float>(total / N);
}

void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, int N,
                           int V, float dloss) {
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < V; ++i)
      dlogits[n * V + i] = (probs[n * V + i] - (i == targets[n] ? 1.0f : 0.0f)) * dloss;
}

}  // namespace cllm::model::reference
