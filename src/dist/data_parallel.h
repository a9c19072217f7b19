// Data parallelism over a ProcessGroup: one optimizer step of K micro-batches
// split across P ranks so that the result does not depend on P.
//
//   global micro-batch k ──► rank k mod P, local index k / P
//   each rank: GradientPipeline over its share (its own worker threads)
//              ──► hook: all-reduce (sum) of the local gradient and of the
//                  per-micro-batch losses ──► identical AdamW step everywhere
//
// The work function sees global indices, so data order, sequence indices and
// the 1/K gradient scale are those of the single-process run. A rank with no
// share (K < P) runs one empty micro-batch (zero gradient, no loss) and still
// takes part in the all-reduce.
#pragma once

#include <cstddef>
#include <vector>

#include "dist/process_group.h"
#include "parallel/gradient_pipeline.h"

namespace cllm::dist {

// Global micro-batches [0, K) owned by `rank` of `size`: k = rank + i * size.
std::size_t shard_size(std::size_t K, int rank, int size);

class DataParallelStep {
 public:
  // Installs the all-reduce hook on pipeline when group.size() > 1. Both must
  // outlive this object. Throws std::invalid_argument for K == 0.
  DataParallelStep(ProcessGroup& group, parallel::GradientPipeline& pipeline, std::size_t K);
  ~DataParallelStep();
  DataParallelStep(const DataParallelStep&) = delete;
  DataParallelStep& operator=(const DataParallelStep&) = delete;

  // Runs this rank's share of a K-micro-batch step: work gets global indices.
  // The returned stats' loss_sum is the global one (sum over all K in k order,
  // bitwise the single-process value) when P > 1; accept_loss sees it too.
  parallel::StepStats step(const parallel::MicroBatchFn& work, float* params, optim::AdamW& opt, double lr,
                           float max_norm, const std::function<bool(double loss_sum)>& accept_loss = {});

  // Wall time of the last step's all-reduce, and how much of it ran while the
  // rank was still computing or reducing (0: the all-reduce is blocking).
  double allreduce_seconds() const { return allreduce_seconds_; }
  double hidden_allreduce_seconds() const { return 0.0; }
  std::size_t local_micro_batches() const { return local_; }

 private:
  void reduce_across_ranks(float* grad, std::size_t n);

  ProcessGroup& group_;
  parallel::GradientPipeline& pipeline_;
  std::size_t K_, local_;
  std::vector<double> losses_;  // per global micro-batch, this rank's entries
  double loss_sum_ = 0.0;
  double allreduce_seconds_ = 0.0;
};

}  // namespace cllm::dist
