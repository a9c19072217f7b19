#include "parallel/work_split.h"

#include <algorithm>
#include <tuple>

namespace cllm::parallel {

WorkSplit split_work(std::size_t micro_batches, std::size_t rows, std::size_t lanes) {
  WorkSplit best{micro_batches, rows, 1};
  if (micro_batches == 0 || micro_batches >= lanes) return best;
  // (rows of the busiest lane, idle lanes): ceil(items / lanes) items of at
  // most max_rows() rows each.
  const auto cost = [&](const WorkSplit& s) {
    const std::size_t items = s.items();
    return std::tuple{(items + lanes - 1) / lanes * s.max_rows(), lanes - std::min(items, lanes)};
  };
  for (std::size_t pieces = 2; pieces <= rows; ++pieces) {
    const WorkSplit s{micro_batches, rows, pieces};
    if (cost(s) < cost(best)) best = s;
  }
  return best;
}

}  // namespace cllm::parallel
