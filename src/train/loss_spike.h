// Loss-spike rule for skipping updates, as llm.c does: a step whose loss is
// more than z standard deviations above the mean of the last `window`
// accepted losses is a spike; its update is skipped and its loss is not added
// to the window. The window travels in checkpoints so a resumed run decides
// exactly as an uninterrupted one.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>

namespace cllm::train {

class LossSpikeDetector {
 public:
  static constexpr std::size_t kDefaultWindow = 100;
  // Judging starts once this many losses are in the window.
  static constexpr std::size_t kMinSamples = 20;

  // z <= 0 turns the rule off (nothing is a spike). Throws
  // std::invalid_argument for a non-finite z or a window below kMinSamples.
  explicit LossSpikeDetector(double z, std::size_t window = kDefaultWindow);

  bool enabled() const { return z_ > 0.0; }
  // z-score of `loss` against the window; 0 until kMinSamples are in it.
  double z_score(double loss) const;
  bool is_spike(double loss) const { return enabled() && z_score(loss) > z_; }
  // Adds an accepted loss, dropping the oldest beyond the window.
  void add(double loss);

  // The window as text (for checkpoint metadata) and back; restore throws
  // std::invalid_argument on text that serialize() could not have written.
  std::string serialize() const;
  void restore(std::string_view text);

 private:
  double z_;
  std::size_t window_;
  std::deque<double> losses_;
};

}  // namespace cllm::train
