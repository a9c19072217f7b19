// parallel::split_work and even_part: every row of every micro-batch in
// exactly one item, in order; near-even pieces; every lane busy where the
// rows allow; no split where there are micro-batches enough.
#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "parallel/work_split.h"

namespace cllm::parallel {
namespace {

TEST(EvenPart, CoversTheRowsInOrderWithSizesOneApart) {
  for (std::size_t n = 0; n <= 40; ++n) {
    for (std::size_t parts = 1; parts <= 12; ++parts) {
      std::size_t next = 0, smallest = n, largest = 0;
      for (std::size_t p = 0; p < parts; ++p) {
        const RowRange r = even_part(n, parts, p);
        ASSERT_EQ(r.begin, next) << n << " rows in " << parts << ", part " << p;
        next = r.end;
        smallest = std::min(smallest, r.size());
        largest = std::max(largest, r.size());
      }
      ASSERT_EQ(next, n) << n << " rows in " << parts;
      ASSERT_LE(largest - smallest, 1u) << n << " rows in " << parts;
    }
  }
}

TEST(SplitWork, ExamplesOfTheHeader) {
  EXPECT_EQ(split_work(1, 8, 2).pieces, 2u);
  EXPECT_EQ(split_work(1, 8, 2).max_rows(), 4u);
  const WorkSplit three = split_work(2, 8, 3);  // 6 items of 3, 3, 2: two per lane
  EXPECT_EQ(three.pieces, 3u);
  EXPECT_EQ(three.item(4).micro_batch, 1u);
  EXPECT_EQ(three.item(4).rows.begin, 3u);
  EXPECT_EQ(three.item(5).rows.size(), 2u);
  EXPECT_EQ(split_work(1, 5, 3).max_rows(), 2u);  // 2, 2, 1
  EXPECT_EQ(split_work(1, 1, 4).pieces, 1u);      // one row cannot be cut
  EXPECT_EQ(split_work(0, 8, 4).items(), 0u);     // a rank with no share
}

TEST(SplitWork, OnlyWhenThereAreFewerMicroBatchesThanLanes) {
  for (std::size_t lanes = 1; lanes <= 8; ++lanes)
    for (std::size_t K = lanes; K <= lanes + 3; ++K) EXPECT_EQ(split_work(K, 8, lanes).pieces, 1u) << K << " " << lanes;
}

TEST(SplitWork, EveryRowOnceAndEveryLaneBusyWhereTheRowsAllow) {
  for (std::size_t lanes = 1; lanes <= 16; ++lanes) {
    for (std::size_t K = 1; K < lanes + 2; ++K) {
      for (std::size_t B = 1; B <= 12; ++B) {
        const std::string at = "K " + std::to_string(K) + " B " + std::to_string(B) + " lanes " + std::to_string(lanes);
        const WorkSplit s = split_work(K, B, lanes);
        ASSERT_EQ(s.micro_batches, K) << at;
        ASSERT_GE(s.pieces, 1u) << at;
        ASSERT_LE(s.pieces, B) << at;
        std::vector<std::size_t> runs(K * B, 0);
        std::size_t largest = 0;
        for (std::size_t j = 0; j < s.items(); ++j) {
          const Piece p = s.item(j);
          ASSERT_LT(p.micro_batch, K) << at;
          ASSERT_GE(p.rows.size(), 1u) << at;
          largest = std::max(largest, p.rows.size());
          for (std::size_t r = p.rows.begin; r < p.rows.end; ++r) ++runs[p.micro_batch * B + r];
        }
        ASSERT_EQ(largest, s.max_rows()) << at;
        for (std::size_t runs_of_row : runs) ASSERT_EQ(runs_of_row, 1u) << at;
        if (K < lanes) {
          EXPECT_GE(s.items(), std::min(K * B, lanes)) << at;
        }
        // Dealt out in turn, the busiest lane has no more rows than without the split.
        EXPECT_LE((s.items() + lanes - 1) / lanes * s.max_rows(), (K + lanes - 1) / lanes * B) << at;
      }
    }
  }
}

}  // namespace
}  // namespace cllm::parallel
