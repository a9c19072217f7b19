#include "train/lanes.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include <fmt/core.h>

#include "parallel/work_split.h"
#include "parallel/worker_pool.h"

namespace cllm::train {

std::size_t resolve_threads(std::size_t requested) {
  const std::size_t threads = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  if (threads > parallel::WorkerPool::kMaxThreads)
    throw std::invalid_argument(
        fmt::format("--threads must be in [1, {}], got {}", parallel::WorkerPool::kMaxThreads, threads));
  return threads;
}

LaneState::LaneState(const model::Config& config, std::size_t rows, int seq, model::Precision precision)
    : ws(config, static_cast<int>(rows), seq, precision),
      inputs(rows * static_cast<std::size_t>(seq)),
      targets(inputs.size()) {}

void LaneState::fill(const data::BatchSampler& sampler, std::uint64_t first, std::size_t n) {
  const auto T = static_cast<std::size_t>(sampler.seq_len());
  for (std::size_t r = 0; r < n; ++r) sampler.fill(first + r, inputs.data() + r * T, targets.data() + r * T);
}

std::uint64_t eval_pieces(std::uint64_t n, std::size_t max_rows, std::size_t lanes) {
  return std::max<std::uint64_t>((n + max_rows - 1) / max_rows, std::min<std::uint64_t>(n, lanes));
}

EvalResult evaluate_loss(const model::ParamLayout& layout, model::Weights weights, const data::BatchSampler& sampler,
                         std::uint64_t n, Lanes& lanes, const ForEachLane& for_each_lane) {
  const auto max_rows = static_cast<std::size_t>(lanes.front()->ws.max_batch());
  const std::uint64_t pieces = eval_pieces(n, max_rows, lanes.size());
  std::vector<double> weighted(pieces);  // per piece: mean loss x rows
  EvalResult result;
  result.sequences_per_lane.assign(lanes.size(), 0);
  for_each_lane([&](std::size_t lane) {
    LaneState& s = *lanes[lane];
    for (std::uint64_t p = lane; p < pieces; p += lanes.size()) {
      const parallel::RowRange rows = parallel::even_part(n, pieces, p);
      s.fill(sampler, rows.begin, rows.size());
      const float loss = model::forward(layout, weights, s.inputs.data(), s.targets.data(), static_cast<int>(rows.size()),
                                        sampler.seq_len(), s.ws);
      weighted[p] = static_cast<double>(loss) * static_cast<double>(rows.size());
      result.sequences_per_lane[lane] += rows.size();
    }
  });
  double sum = 0.0;
  for (double w : weighted) sum += w;  // piece order: deterministic
  result.loss = sum / static_cast<double>(n);
  return result;
}

}  // namespace cllm::train
