#include "dist/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cllm::dist {
static_assert(kDefaultBucketFloats % parallel::kDefaultSegmentFloats == 0);

std::size_t shard_size(std::size_t K, int rank, int size) {
  const auto r = static_cast<std::size_t>(rank), p = static_cast<std::size_t>(size);
  return r < K ? (K - r + p - 1) / p : 0;
}

parallel::WorkSplit shard_split(std::size_t K, std::size_t B, std::size_t lanes, int rank, int size) {
  return parallel::split_work(shard_size(K, rank, size), B, lanes);
}

DataParallelStep::DataParallelStep(ProcessGroup& group, parallel::GradientPipeline& pipeline, std::size_t K,
                                   std::size_t B, std::size_t bucket_floats)
    : group_(group),
      pipeline_(pipeline),
      K_(K),
      split_(shard_split(K, B, pipeline.lanes(), group.rank(), group.size())),
      bucket_floats_(bucket_floats),
      item_losses_(split_.items(), 0.0),
      losses_(K, 0.0) {
  if (K == 0) throw std::invalid_argument("data parallel step: needs at least 1 micro-batch");
  if (B == 0) throw std::invalid_argument("data parallel step: a micro-batch needs at least 1 row");
  if (bucket_floats == 0) throw std::invalid_argument("data parallel step: bucket size must be >= 1 float");
  if (group_.size() > 1) {
    requests_.resize((pipeline_.size() + bucket_floats - 1) / bucket_floats);
    pipeline_.set_gradient_stream([this](float* grad, std::size_t ready) { stream(grad, ready); });
    pipeline_.set_gradient_hook([this](float*, std::size_t) { finish(); });
  }
}

DataParallelStep::~DataParallelStep() {
  if (group_.size() > 1) {
    pipeline_.set_gradient_stream({});
    pipeline_.set_gradient_hook({});
  }
}

void DataParallelStep::stream(float* grad, std::size_t ready) {
  const std::size_t n = pipeline_.size();
  const auto t0 = parallel::Clock::now();
  if (ready == n) reduced_ = t0;
  // In bucket order, the same on every rank: MPI matches collectives by order.
  for (; started_ < requests_.size(); ++started_) {
    const std::size_t begin = started_ * bucket_floats_, end = std::min(n, begin + bucket_floats_);
    if (end > ready) break;
    if (started_ == 0) first_start_ = parallel::Clock::now();
    requests_[started_] = group_.iallreduce_sum(grad + begin, end - begin);
  }
  // MPI moves a non-blocking collective on only inside MPI calls: testing the
  // oldest unfinished bucket progresses them all.
  while (finished_ < started_ && requests_[finished_]->test()) ++finished_;
  // Starting and progressing buckets takes this thread's time (copies inside
  // MPI): while the reduction runs, that time is not hidden behind it.
  if (ready < n && started_ > 0) mpi_call_seconds_ += parallel::seconds_between(t0, parallel::Clock::now());
}

void DataParallelStep::finish() {
  // The stream's last call (ready == n) has started every bucket.
  for (; finished_ < started_; ++finished_) requests_[finished_]->wait();
  // A micro-batch's pieces in row order, then one rank owns each entry and
  // the others add zeros: exact, then summed in micro-batch order like the
  // single-process pipeline.
  const std::size_t rank = static_cast<std::size_t>(group_.rank()), size = static_cast<std::size_t>(group_.size());
  for (std::size_t j = 0; j < split_.items(); ++j) losses_[rank + split_.item(j).micro_batch * size] += item_losses_[j];
  group_.allreduce_sum(losses_.data(), losses_.size());
  allreduce_seconds_ = parallel::seconds_between(first_start_, parallel::Clock::now());
  hidden_allreduce_seconds_ = std::max(0.0, parallel::seconds_between(first_start_, reduced_) - mpi_call_seconds_);
  loss_sum_ = 0.0;
  for (double l : losses_) loss_sum_ += l;
  std::fill(losses_.begin(), losses_.end(), 0.0);
}

parallel::StepStats DataParallelStep::step(const PieceFn& work, float* params, optim::AdamW& opt, double lr,
                                           float max_norm, const std::function<bool(double)>& accept_loss) {
  const std::size_t rank = static_cast<std::size_t>(group_.rank()), size = static_cast<std::size_t>(group_.size());
  // Item j of this rank's share: its piece, with the global micro-batch index.
  const parallel::MicroBatchFn item_work = [&](std::size_t lane, std::size_t j, float* grad, bool first) -> double {
    if (split_.items() == 0) {  // no share this step: contribute zeros
      kernels::active().zero(grad, pipeline_.size());
      return 0.0;
    }
    parallel::Piece piece = split_.item(j);
    piece.micro_batch = rank + piece.micro_batch * size;
    const double loss = work(lane, piece, grad, first);
    item_losses_[j] = loss;
    return loss;
  };
  if (size == 1) {
    allreduce_seconds_ = hidden_allreduce_seconds_ = 0.0;
    return pipeline_.step(split_.items(), item_work, params, opt, lr, max_norm, accept_loss);
  }
  started_ = finished_ = 0;
  mpi_call_seconds_ = 0.0;
  std::function<bool(double)> accept_global;
  if (accept_loss) accept_global = [&](double) { return accept_loss(loss_sum_); };
  parallel::StepStats stats =
      pipeline_.step(std::max<std::size_t>(split_.items(), 1), item_work, params, opt, lr, max_norm, accept_global);
  stats.loss_sum = loss_sum_;
  return stats;
}

}  // namespace cllm::dist
