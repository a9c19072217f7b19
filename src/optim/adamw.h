// AdamW over one flat parameter buffer, torch.optim.AdamW semantics:
// decoupled weight decay (p -= lr * wd * p), bias-corrected moments, eps
// added to sqrt(v_hat). Decay applies only to the ranges marked decay (the
// >= 2-D tensors; not biases, not LayerNorm).
//
// Thread safety: begin_step() is called once per step by one thread; then
// update_range() may run concurrently on disjoint [begin, end) ranges (the
// gradient pipeline gives each segment one owner).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "kernels/bf16.h"

namespace cllm::optim {

// A contiguous slice of the flat parameter buffer (one tensor, or several
// tensors sharing the same decay setting).
struct ParamRange {
  std::size_t offset = 0;
  std::size_t size = 0;
  bool decay = false;
};

// Doubles, as the Python floats torch receives, so the per-step constants
// round to float exactly as torch's do.
struct AdamWConfig {
  double lr = 1e-3;  // default learning rate (a schedule usually overrides it per step)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  // ranges: sorted, disjoint, covering [0, n_params) exactly; empty means one
  // range [0, n_params) with decay. Throws std::invalid_argument otherwise,
  // or when a hyper-parameter is out of range (betas in [0,1), eps > 0,
  // weight_decay >= 0). Moments start at zero, step at 0.
  AdamW(std::size_t n_params, AdamWConfig config, std::vector<ParamRange> ranges = {});

  // Starts optimizer step step()+1 (bias corrections use the new count).
  void begin_step() { ++step_; }
  // Updates params[begin, end) from grad[begin, end) for the current step,
  // with g scaled by grad_scale (the clipping factor, 1 for none). Splits the
  // range at decay boundaries. Requires begin <= end <= size() and a prior
  // begin_step().
  void update_range(float* params, const float* grad, std::size_t begin, std::size_t end, double lr,
                    float grad_scale);
  // Mixed precision: update_range also writes the updated parameters,
  // rounded to bf16, into copy[begin, end) (size() elements), in the same
  // pass while they are in cache; nullptr (the default) stops that.
  void set_bf16_copy(kernels::bf16* copy) { bf16_copy_ = copy; }
  // begin_step() + update_range(0, size()): a whole single-threaded step.
  void update(float* params, const float* grad, double lr, float grad_scale = 1.0f);

  std::size_t size() const { return m_.size(); }
  std::size_t step() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  const std::vector<ParamRange>& ranges() const { return ranges_; }
  // Moments, for checkpoints (save, and restore with set_step).
  std::span<float> m() { return m_; }
  std::span<float> v() { return v_; }
  std::span<const float> m() const { return m_; }
  std::span<const float> v() const { return v_; }
  void set_step(std::size_t step) { step_ = step; }

 private:
  AdamWConfig config_;
  std::vector<ParamRange> ranges_;
  std::vector<float> m_;
  std::vector<float> v_;
  std::size_t step_ = 0;
  kernels::bf16* bf16_copy_ = nullptr;
};

// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: the
// factor is max_norm / (norm + 1e-6) when that is below 1, else 1.
// max_norm <= 0 turns clipping off (factor 1).
float clip_scale(double grad_norm, float max_norm);

}  // namespace cllm::optim
