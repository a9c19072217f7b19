// train::evaluate_loss, the evaluation `cllm train` and `cllm eval` share:
// the same loss on 1, 2 or 3 lanes up to rounding, every lane used, and a
// mean over the tokens whatever the pieces.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "model/gpt.h"
#include "parallel/worker_pool.h"
#include "train/lanes.h"

namespace cllm::train {
namespace {
namespace fs = std::filesystem;

TEST(EvalPieces, EnoughForTheWorkspacesAndOnePerLane) {
  EXPECT_EQ(eval_pieces(64, 8, 2), 8u);
  EXPECT_EQ(eval_pieces(65, 8, 2), 9u);
  EXPECT_EQ(eval_pieces(8, 8, 2), 2u);  // one batch: a piece per lane
  EXPECT_EQ(eval_pieces(3, 8, 4), 3u);  // no lane gets an empty piece
  EXPECT_EQ(eval_pieces(1, 8, 1), 1u);
}

class EvaluateLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path dir = fs::temp_directory_path() / "cllm_evaluate_loss";
    fs::create_directories(dir);
    std::ofstream out(dir / "text.txt");
    std::mt19937 rng(3);
    for (int i = 0; i < 3000; ++i) out << static_cast<char>('a' + rng() % 20) << (i % 9 == 8 ? " " : "");
    out.close();
    data_ = data::Dataset::load({dir / "text.txt", {}, 0.0}, data::ByteTokenizer());
    fs::remove_all(dir);
    model::init_params(layout_, params_.data(), 11);
  }

  // evaluate_loss of the first n sequences on `lanes` lanes of at most `rows` sequences a pass.
  EvalResult evaluate(std::uint64_t n, std::size_t lanes, std::size_t rows) const {
    const data::BatchSampler sampler(data_.train, kSeq, data::DataOrder::sequential, 0);
    parallel::WorkerPool pool(lanes);
    Lanes state(lanes);
    pool.run([&](std::size_t w) { state[w] = std::make_unique<LaneState>(config_, rows, kSeq, model::Precision::fp32); });
    return evaluate_loss(layout_, params_.data(), sampler, n, state,
                         [&](const std::function<void(std::size_t)>& fn) { pool.run(fn); });
  }
  // The same mean from one sequence per pass, on the calling thread.
  double one_by_one(std::uint64_t n) const {
    const data::BatchSampler sampler(data_.train, kSeq, data::DataOrder::sequential, 0);
    LaneState s(config_, 1, kSeq, model::Precision::fp32);
    double sum = 0.0;
    for (std::uint64_t i = 0; i < n; ++i) {
      s.fill(sampler, i, 1);
      sum += static_cast<double>(model::forward(layout_, params_.data(), s.inputs.data(), s.targets.data(), 1, kSeq, s.ws));
    }
    return sum / static_cast<double>(n);
  }

  static constexpr int kSeq = 16;
  const model::Config config_{256, 1, 16, 2, 16};
  const model::ParamLayout layout_{config_};
  std::vector<float> params_ = std::vector<float>(layout_.total());
  data::Dataset data_;
};

TEST_F(EvaluateLoss, IsTheSameOnAnyNumberOfLanesAndUsesThemAll) {
  for (const std::uint64_t n : {5u, 37u, 160u}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const double expected = one_by_one(n);
    for (const std::size_t lanes : {1u, 2u, 3u}) {
      SCOPED_TRACE(std::to_string(lanes) + " lanes");
      const EvalResult r = evaluate(n, lanes, 8);
      EXPECT_NEAR(r.loss, expected, 1e-6 * expected);
      ASSERT_EQ(r.sequences_per_lane.size(), lanes);
      EXPECT_EQ(std::accumulate(r.sequences_per_lane.begin(), r.sequences_per_lane.end(), std::uint64_t{0}), n);
      for (const std::uint64_t s : r.sequences_per_lane) EXPECT_GT(s, 0u);
      // Repeatable bit for bit: the pieces are summed in order.
      EXPECT_EQ(evaluate(n, lanes, 8).loss, r.loss);
    }
  }
}

}  // namespace
}  // namespace cllm::train
