#include "optim/adamw.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

namespace cllm::optim {
namespace {

void check_config(const AdamWConfig& c) {
  auto in_unit = [](double b) { return b >= 0.0 && b < 1.0; };
  if (!(c.lr >= 0.0)) throw std::invalid_argument("AdamW: lr must be >= 0, got " + std::to_string(c.lr));
  if (!in_unit(c.beta1) || !in_unit(c.beta2)) {
    throw std::invalid_argument("AdamW: beta1 and beta2 must be in [0, 1), got " + std::to_string(c.beta1) +
                                " and " + std::to_string(c.beta2));
  }
  if (!(c.eps > 0.0)) throw std::invalid_argument("AdamW: eps must be > 0, got " + std::to_string(c.eps));
  if (!(c.weight_decay >= 0.0)) {
    throw std::invalid_argument("AdamW: weight_decay must be >= 0, got " + std::to_string(c.weight_decay));
  }
}

void check_ranges(const std::vector<ParamRange>& ranges, std::size_t n_params) {
  std::size_t expected = 0;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].offset != expected || ranges[i].size == 0) {
      throw std::invalid_argument("AdamW: parameter range " + std::to_string(i) + " (offset " +
                                  std::to_string(ranges[i].offset) + ", size " + std::to_string(ranges[i].size) +
                                  ") must be non-empty and start at " + std::to_string(expected) +
                                  ": ranges must be sorted, disjoint and cover the parameters");
    }
    expected += ranges[i].size;
  }
  if (expected != n_params) {
    throw std::invalid_argument("AdamW: parameter ranges cover " + std::to_string(expected) + " floats, expected " +
                                std::to_string(n_params));
  }
}

}  // namespace

AdamW::AdamW(std::size_t n_params, AdamWConfig config, std::vector<ParamRange> ranges)
    : config_(config), ranges_(std::move(ranges)), m_(n_params, 0.0f), v_(n_params, 0.0f) {
  check_config(config_);
  if (ranges_.empty() && n_params > 0) ranges_.push_back({0, n_params, true});
  check_ranges(ranges_, n_params);
}

void AdamW::update_range(float* params, const float* grad, std::size_t begin, std::size_t end, double lr,
                         float grad_scale) {
  if (begin > end || end > size()) {
    throw std::invalid_argument("AdamW::update_range: range [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") is outside [0, " + std::to_string(size()) + ")");
  }
  if (step_ == 0) throw std::logic_error("AdamW::update_range: call begin_step() first");
  kernels::AdamWParams hp;
  hp.lr = lr;
  hp.beta1 = config_.beta1;
  hp.beta2 = config_.beta2;
  hp.eps = config_.eps;
  hp.step = static_cast<long>(step_);
  hp.grad_scale = grad_scale;
  const auto& k = kernels::active();
  // First range ending after begin; walk the ranges until end.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), begin,
                             [](std::size_t pos, const ParamRange& r) { return pos < r.offset + r.size; });
  for (std::size_t pos = begin; pos < end; ++it) {
    const std::size_t stop = std::min(end, it->offset + it->size);
    hp.weight_decay = it->decay ? config_.weight_decay : 0.0;
    k.adamw(params + pos, grad + pos, m_.data() + pos, v_.data() + pos, stop - pos, hp);
    if (bf16_copy_ != nullptr) k.to_bf16(bf16_copy_ + pos, params + pos, stop - pos);
    pos = stop;
  }
}

void AdamW::update(float* params, const float* grad, double lr, float grad_scale) {
  begin_step();
  update_range(params, grad, 0, size(), lr, grad_scale);
}

float clip_scale(double grad_norm, float max_norm) {
  if (max_norm <= 0.0f) return 1.0f;
  const double factor = static_cast<double>(max_norm) / (grad_norm + 1e-6);
  return factor < 1.0 ? static_cast<float>(factor) : 1.0f;
}

}  // namespace cllm::optim
