// Data parallelism over a ProcessGroup: one optimizer step of K micro-batches
// of B rows split across P ranks so that the result does not depend on P.
//
//   global micro-batch k ──► rank k mod P, local index k / P
//   each rank: its share cut into work items for its lanes
//              (parallel::split_work: pieces of rows when the share has
//              fewer micro-batches than lanes)
//              ──► GradientPipeline over the items (its own worker threads)
//              ──► stream: as the local reduction finishes the gradient from
//                  the front, each bucket (a fixed float range) inside the
//                  finished part is summed across ranks, non-blocking, while
//                  the rest is still being reduced
//              ──► hook: wait for the buckets, all-reduce (sum) the
//                  per-micro-batch losses ──► identical AdamW step everywhere
//
// Buckets start in index order on every rank (MPI matches collectives by
// order); the stream runs on the calling thread, the one MPI may be called
// from. The work function sees global micro-batch indices and row ranges, so
// data order, sequence indices and the gradient scale are those of the
// single-process run. A rank with no share (K < P) runs one empty item (zero
// gradient, no loss) and still takes part in the all-reduce.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "dist/process_group.h"
#include "parallel/gradient_pipeline.h"
#include "parallel/work_split.h"

namespace cllm::dist {

// Global micro-batches [0, K) owned by `rank` of `size`: k = rank + i * size.
std::size_t shard_size(std::size_t K, int rank, int size);

// How `rank` of `size` cuts its share of K micro-batches of B rows for
// `lanes` lanes (parallel::split_work of its shard_size micro-batches).
parallel::WorkSplit shard_split(std::size_t K, std::size_t B, std::size_t lanes, int rank, int size);

// Runs `piece` (rows of global micro-batch piece.micro_batch) on `lane`, as
// a parallel::MicroBatchFn runs a micro-batch; returns its loss, weighted by
// the caller (e.g. by its rows / (K x B), to make means).
using PieceFn = std::function<double(std::size_t lane, const parallel::Piece& piece, float* grad, bool first)>;

// 4 MiB: large enough for MPI to run at full bandwidth, small enough that
// most buckets start while the rest is reduced. A whole number of default
// segments, so a bucket is ready as soon as its last segment is.
inline constexpr std::size_t kDefaultBucketFloats = std::size_t{1} << 20;

class DataParallelStep {
 public:
  // Steps of K micro-batches of B rows; this rank's share is cut for the
  // pipeline's lanes (shard_split). Installs the all-reduce stream and hook
  // on pipeline when group.size() > 1. Both must outlive this object. Throws
  // std::invalid_argument for K, B or bucket_floats 0.
  DataParallelStep(ProcessGroup& group, parallel::GradientPipeline& pipeline, std::size_t K, std::size_t B,
                   std::size_t bucket_floats = kDefaultBucketFloats);
  ~DataParallelStep();
  DataParallelStep(const DataParallelStep&) = delete;
  DataParallelStep& operator=(const DataParallelStep&) = delete;

  // Runs this rank's share of a K-micro-batch step: work gets global indices.
  // The returned stats' loss_sum is the global one when P > 1 (sum over all K
  // in k order, each micro-batch's pieces summed first: bitwise the
  // single-process value when no rank splits); accept_loss sees it too.
  // If it throws with P > 1, buckets may still be in flight: the caller must
  // end the process (ProcessGroup::abort), as the other ranks wait for them.
  parallel::StepStats step(const PieceFn& work, float* params, optim::AdamW& opt, double lr,
                           float max_norm, const std::function<bool(double loss_sum)>& accept_loss = {});

  // Wall time of the last step's all-reduce, from the start of the first
  // bucket to the end of the losses' all-reduce, and the part of it hidden
  // behind the local reduction: before that reduction ended, less the time
  // the calling thread spent inside MPI calls meanwhile (with one thread per
  // process those calls lengthen the reduction instead of overlapping it).
  double allreduce_seconds() const { return allreduce_seconds_; }
  double hidden_allreduce_seconds() const { return hidden_allreduce_seconds_; }
  std::size_t local_micro_batches() const { return split_.micro_batches; }
  const parallel::WorkSplit& split() const { return split_; }
  std::size_t buckets() const { return requests_.size(); }  // 0 with one process

 private:
  void stream(float* grad, std::size_t ready);
  void finish();

  ProcessGroup& group_;
  parallel::GradientPipeline& pipeline_;
  std::size_t K_;
  parallel::WorkSplit split_;
  std::size_t bucket_floats_;
  std::vector<double> item_losses_;  // per local work item
  std::vector<double> losses_;       // per global micro-batch, this rank's entries
  double loss_sum_ = 0.0;
  // This step's buckets: requests_[b] for b < started_; those below finished_
  // are complete.
  std::vector<std::unique_ptr<ProcessGroup::Request>> requests_;
  std::size_t started_ = 0, finished_ = 0;
  parallel::Clock::time_point first_start_{}, reduced_{};
  double mpi_call_seconds_ = 0.0;  // in stream() from the first start to the end of the reduction
  double allreduce_seconds_ = 0.0;
  double hidden_allreduce_seconds_ = 0.0;
};

}  // namespace cllm::dist
