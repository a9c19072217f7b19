#include "dist/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cllm::dist {

std::size_t shard_size(std::size_t K, int rank, int size) {
  const auto r = static_cast<std::size_t>(rank), p = static_cast<std::size_t>(size);
  return r < K ? (K - r + p - 1) / p : 0;
}

DataParallelStep::DataParallelStep(ProcessGroup& group, parallel::GradientPipeline& pipeline, std::size_t K)
    : group_(group), pipeline_(pipeline), K_(K), local_(shard_size(K, group.rank(), group.size())), losses_(K, 0.0) {
  if (K == 0) throw std::invalid_argument("data parallel step: needs at least 1 micro-batch");
  if (group_.size() > 1)
    pipeline_.set_gradient_hook([this](float* grad, std::size_t n) { reduce_across_ranks(grad, n); });
}

DataParallelStep::~DataParallelStep() {
  if (group_.size() > 1) pipeline_.set_gradient_hook({});
}

void DataParallelStep::reduce_across_ranks(float* grad, std::size_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  group_.allreduce_sum(grad, n);
  // One rank owns each entry, the others add zeros: exact, then summed in
  // micro-batch order like the single-process pipeline.
  group_.allreduce_sum(losses_.data(), losses_.size());
  allreduce_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  loss_sum_ = 0.0;
  for (double l : losses_) loss_sum_ += l;
  std::fill(losses_.begin(), losses_.end(), 0.0);
}

parallel::StepStats DataParallelStep::step(const parallel::MicroBatchFn& work, float* params, optim::AdamW& opt,
                                           double lr, float max_norm,
                                           const std::function<bool(double)>& accept_loss) {
  if (group_.size() == 1) {
    allreduce_seconds_ = 0.0;
    return pipeline_.step(K_, work, params, opt, lr, max_norm, accept_loss);
  }
  const std::size_t rank = static_cast<std::size_t>(group_.rank()), size = static_cast<std::size_t>(group_.size());
  const parallel::MicroBatchFn local_work = [&](std::size_t w, std::size_t i, float* grad, bool first) -> double {
    if (local_ == 0) {  // no share this step: contribute zeros
      kernels::active().zero(grad, pipeline_.size());
      return 0.0;
    }
    const std::size_t k = rank + i * size;
    const double loss = work(w, k, grad, first);
    losses_[k] = loss;
    return loss;
  };
  std::function<bool(double)> accept_global;
  if (accept_loss) accept_global = [&](double) { return accept_loss(loss_sum_); };
  parallel::StepStats stats = pipeline_.step(std::max<std::size_t>(local_, 1), local_work, params, opt, lr, max_norm, accept_global);
  stats.loss_sum = loss_sum_;
  return stats;
}

}  // namespace cllm::dist
