// The compute lanes' side of training and evaluation: the thread count, each
// lane's buffers for a model pass, and evaluation spread over the lanes (the
// trainer's periodic eval and `cllm eval` alike).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "data/dataset.h"
#include "model/gpt.h"

namespace cllm::train {

// --threads: 0 is all hardware threads. Throws std::invalid_argument naming
// --threads above parallel::WorkerPool::kMaxThreads.
std::size_t resolve_threads(std::size_t requested);

// One lane's buffers for passes of up to `rows` sequences of `seq` tokens:
// built on the lane's own thread (first touch) and used only by it.
struct LaneState {
  LaneState(const model::Config& config, std::size_t rows, int seq, model::Precision precision);
  // Rows [0, n) of inputs and targets: sequences first .. first + n - 1.
  void fill(const data::BatchSampler& sampler, std::uint64_t first, std::size_t n);
  model::Workspace ws;
  std::vector<std::int32_t> inputs, targets;
};
using Lanes = std::vector<std::unique_ptr<LaneState>>;

// Runs fn(lane) for every lane at once, each on its own thread
// (GradientPipeline::for_each_lane, WorkerPool::run).
using ForEachLane = std::function<void(const std::function<void(std::size_t lane)>&)>;

// The pieces evaluate_loss cuts n sequences into for `lanes` lanes whose
// passes take at most max_rows sequences: enough for max_rows, and at least
// one per lane while n allows.
std::uint64_t eval_pieces(std::uint64_t n, std::size_t max_rows, std::size_t lanes);

struct EvalResult {
  double loss = 0.0;                               // mean over the tokens
  std::vector<std::uint64_t> sequences_per_lane;  // what each lane ran
};
// Mean loss over sequences [0, n) of sampler (n >= 1), in eval_pieces
// consecutive near-even pieces, piece p on lane p mod lanes: the pieces
// differ by at most one sequence, so a fixed deal is balanced and every lane
// with a piece is used. Each piece's loss is weighted by its rows and the
// pieces are summed in order, so the result does not depend on the lanes
// but for the pieces' rounding.
EvalResult evaluate_loss(const model::ParamLayout& layout, model::Weights weights, const data::BatchSampler& sampler,
                         std::uint64_t n, Lanes& lanes, const ForEachLane& for_each_lane);

}  // namespace cllm::train
