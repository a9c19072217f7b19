// Cutting a step's micro-batches into work items for the compute lanes, so
// that every lane has work at any batch: with fewer micro-batches than lanes
// each micro-batch is split into pieces of consecutive rows (sequences).
// The global batch and its order do not change; only how many rows one pass
// (one Workspace) runs at a time.
#pragma once

#include <cstddef>

namespace cllm::parallel {

// Rows [begin, end).
struct RowRange {
  std::size_t begin = 0, end = 0;
  std::size_t size() const { return end - begin; }
};

// Part p of n rows cut into `parts` consecutive near-even parts: the first
// n mod parts parts have one row more (p < parts, parts >= 1).
constexpr RowRange even_part(std::size_t n, std::size_t parts, std::size_t p) {
  const std::size_t q = n / parts, r = n % parts;
  const auto begin = [&](std::size_t i) { return i * q + (i < r ? i : r); };
  return {begin(p), begin(p + 1)};
}

// One work item: rows of micro-batch `micro_batch`.
struct Piece {
  std::size_t micro_batch = 0;
  RowRange rows;
};

// K micro-batches of B rows, each cut into `pieces` parts: items K x pieces,
// item j is part j mod pieces of micro-batch j / pieces (so the items of a
// micro-batch are consecutive and in row order).
struct WorkSplit {
  std::size_t micro_batches = 1;
  std::size_t rows = 1;
  std::size_t pieces = 1;
  std::size_t items() const { return micro_batches * pieces; }
  // The rows one item runs at most: what a lane's workspace needs.
  std::size_t max_rows() const { return (rows + pieces - 1) / pieces; }
  Piece item(std::size_t j) const { return {j / pieces, even_part(rows, pieces, j % pieces)}; }
};

// The split of K micro-batches of B rows (B >= 1) over `lanes` lanes: none
// (pieces 1) when K >= lanes; otherwise the pieces per micro-batch that give
// the busiest lane the fewest rows when the items are dealt out in turn (as
// the fixed assignment does and the dynamic queue roughly does), then the one
// that leaves the fewest lanes idle, then the fewest pieces (larger products).
// E.g. K 1, B 8, 2 lanes: 2 pieces of 4; K 2, B 8, 3 lanes: 3 pieces of 3, 3, 2.
WorkSplit split_work(std::size_t micro_batches, std::size_t rows, std::size_t lanes);

}  // namespace cllm::parallel
