// Faults during training, through the real binary: checkpoint saves that
// fail (a full disk simulated with RLIMIT_FSIZE, an unwritable checkpoint
// directory), loss spikes, stop signals, and SIGKILL at random moments
// followed by --resume, which must end bitwise equal to an uninterrupted run.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "run_cllm.h"
#include "train/checkpoint.h"

namespace cllm::reliability {
namespace {
namespace fs = std::filesystem;

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Training flags of a small deterministic run whose checkpoints are 100s of KB.
std::vector<std::string> run_flags(const fs::path& corpus, const fs::path& out, int steps) {
  return {"train", "--data", corpus.string(), "--out", out.string(), "--layers", "2", "--dim", "32", "--heads", "4",
          "--context", "32", "--batch", "4", "--accum", "2", "--threads", "2", "--deterministic", "--steps",
          std::to_string(steps), "--warmup", "2", "--lr", "3e-3", "--sample-tokens", "0", "--eval-batches", "1"};
}

// Every file of a directory tree with its bytes, for "left untouched" checks.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_file(e.path());
  return out;
}

std::vector<nlohmann::json> metrics(const fs::path& out) {
  std::vector<nlohmann::json> records;
  std::istringstream in(read_file(out / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

// Makes the child's writes past `bytes` fail with EFBIG instead of killing it,
// which is how a full disk looks to the writer.
std::function<void()> file_size_limit(rlim_t bytes) {
  return [bytes] {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{bytes, bytes};
    ::setrlimit(RLIMIT_FSIZE, &limit);
  };
}

class TrainingFaults : public ::testing::Test {
 protected:
  TrainingFaults() : dir_(::testing::UnitTest::GetInstance()->current_test_info()->name()) {
    write_file(dir_ / "corpus.txt", corpus_text());
  }
  fs::path corpus() const { return dir_ / "corpus.txt"; }
  ScratchDir dir_;
};

TEST_F(TrainingFaults, FullDiskStopsTheRunAndKeepsThePreviousCheckpoint) {
  const fs::path out = dir_ / "run";
  const RunResult first = run_cllm(run_flags(corpus(), out, 2));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = snapshot(out / "checkpoints");

  // Checkpoint files are >100 KB: a 64 KB limit fails every save, not the log.
  const RunResult r = run_cllm(with(run_flags(corpus(), out, 6), {"--resume", "--ckpt-every", "1"}), file_size_limit(64 << 10));
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find("cannot save the checkpoint of step 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step_00000003.tmp/model.safetensors"), std::string::npos) << r.output;  // names the file
  EXPECT_NE(r.output.find("previous checkpoint, intact: " + (out / "checkpoints" / "step_00000002").string()),
            std::string::npos) << r.output;
  EXPECT_EQ(snapshot(out / "checkpoints"), before) << "the failed save changed the checkpoint directory";
  const RunResult resumed = run_cllm(with(run_flags(corpus(), out, 3), {"--resume"}));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("step_00000002 (step 2)"), std::string::npos) << resumed.output;
}

TEST_F(TrainingFaults, OnSaveErrorContinueTrainsOnWithoutSaving) {
  const fs::path out = dir_ / "run";
  ASSERT_EQ(run_cllm(run_flags(corpus(), out, 2)).exit_code, 0);
  const auto before = snapshot(out / "checkpoints");
  const RunResult r = run_cllm(with(run_flags(corpus(), out, 6), {"--resume", "--ckpt-every", "1", "--on-save-error", "continue"}),
                               file_size_limit(64 << 10));
  // Every step trained; the periodic saves warned; the final save must
  // succeed, and it cannot, so the run still ends in an error.
  EXPECT_NE(r.output.find("step      6/6"), std::string::npos) << r.output;
  for (int s = 3; s <= 5; ++s)
    EXPECT_NE(r.output.find("warning: cannot save the checkpoint of step " + std::to_string(s)), std::string::npos) << r.output;
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find("cannot save the final checkpoint of step 6"), std::string::npos) << r.output;
  EXPECT_EQ(snapshot(out / "checkpoints"), before);
  int save_errors = 0;
  for (const auto& m : metrics(out)) save_errors += m.contains("save_error");
  EXPECT_EQ(save_errors, 3);
}

TEST_F(TrainingFaults, UnwritableCheckpointDirectoryIsNamed) {
  const fs::path out = dir_ / "run";
  fs::create_directories(out);
  write_file(out / "checkpoints", "a file where the checkpoint directory should be");
  const RunResult r = run_cllm(run_flags(corpus(), out, 2));
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find((out / "checkpoints").string() + "': cannot create checkpoint directory"), std::string::npos)
      << r.output;
}

TEST_F(TrainingFaults, LossSpikesAreSkippedAndLogged) {
  // Regular text, then a stretch of random bytes, then regular text again:
  // read in order, the random stretch makes the loss jump.
  std::string text;
  while (text.size() < 6000) text += "the cat sat on the mat. ";
  std::mt19937 rng(3);
  for (int i = 0; i < 600; ++i) text.push_back(static_cast<char>(32 + rng() % 95));
  while (text.size() < 9000) text += "the cat sat on the mat. ";
  write_file(dir_ / "spiky.txt", text);
  const fs::path out = dir_ / "run";
  const RunResult r = run_cllm({"train", "--data", (dir_ / "spiky.txt").string(), "--out", out.string(), "--layers", "1",
                                "--dim", "32", "--heads", "2", "--context", "32", "--batch", "4", "--threads", "1",
                                "--data-order", "sequential", "--val-fraction", "0.05", "--epochs", "1", "--lr", "1e-2",
                                "--sample-tokens", "0", "--skip-spikes", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("is a spike"), std::string::npos) << r.output;
  int skipped = 0;
  for (const auto& m : metrics(out))
    if (m.value("skipped", false)) {
      EXPECT_EQ(m["skip_reason"], "loss spike");
      ++skipped;
    }
  EXPECT_GE(skipped, 1);
}

TEST_F(TrainingFaults, StopSignalSavesAndResumes) {
  const fs::path out = dir_ / "run";
  const pid_t pid = start_cllm(with(run_flags(corpus(), out, 100000), {"--log-every", "1000"}), dir_ / "log");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ::kill(pid, SIGTERM);
  const RunResult r = wait_cllm(pid);
  const std::string log = read_file(dir_ / "log");
  EXPECT_EQ(r.exit_code, 130) << describe(r) << "\n" << log;
  EXPECT_NE(log.find("continue with the same command and --resume"), std::string::npos) << log;
  const auto latest = train::CheckpointStore(out).latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_NO_THROW(train::load_weights(latest->dir / "model.safetensors"));
}

// The newest complete checkpoint must always load: weights and state whole.
std::uint64_t check_latest_loads(const fs::path& out) {
  const auto latest = train::CheckpointStore(out).latest();
  if (!latest) return 0;
  const auto weights = train::load_weights(latest->dir / "model.safetensors");
  const model::ParamLayout layout(weights.config);
  std::vector<float> p(layout.total()), m(layout.total()), v(layout.total());
  return train::CheckpointStore(out).load(*latest, layout, p, m, v).step;
}

TEST_F(TrainingFaults, KilledAtRandomMomentsResumesToTheSameModel) {
  constexpr int kSteps = 30;
  const auto flags = [&](const fs::path& out) {
    return with(run_flags(corpus(), out, kSteps), {"--ckpt-every", "1", "--keep", "2", "--log-every", "100"});
  };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult reference = run_cllm(flags(dir_ / "reference"));
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const double run_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  // Kill at uniformly random moments of a run's lifetime, at least 10 times
  // and until at least 2 kills landed inside a checkpoint write (a hidden
  // .tmp directory left behind); always resume with --resume.
  const fs::path out = dir_ / "killed";
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> delay_ms(0.0, run_ms * 0.9);
  int kills = 0, kills_in_save = 0;
  std::uint64_t last_step = 0;
  for (int attempt = 0; attempt < 200 && (kills < 10 || kills_in_save < 2); ++attempt) {
    const pid_t pid = start_cllm(with(flags(out), {"--resume"}), dir_ / "killed.log");
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    const RunResult r = wait_cllm(pid);
    if (r.signal != SIGKILL) {  // finished first: start over so later kills still land mid-run
      ASSERT_EQ(r.exit_code, 0) << describe(r) << "\n" << read_file(dir_ / "killed.log");
      fs::remove_all(out);
      last_step = 0;
      continue;
    }
    ++kills;
    bool in_save = false;
    if (fs::is_directory(out / "checkpoints"))
      for (const auto& e : fs::directory_iterator(out / "checkpoints"))
        in_save = in_save || e.path().filename().string().ends_with(".tmp");
    kills_in_save += in_save;
    std::uint64_t step = 0;
    ASSERT_NO_THROW(step = check_latest_loads(out)) << "after kill " << kills;
    EXPECT_GE(step, last_step) << "the newest complete checkpoint went backwards after kill " << kills;
    last_step = step;
  }
  EXPECT_GE(kills, 10);
  EXPECT_GE(kills_in_save, 2);
  std::printf("%d kills, %d inside a checkpoint write (reference run %.0f ms)\n", kills, kills_in_save, run_ms);

  const RunResult finish = run_cllm(with(flags(out), {"--resume"}));
  ASSERT_EQ(finish.exit_code, 0) << finish.output;
  const auto want = read_tensors(dir_ / "reference" / "checkpoints" / "step_00000030" / "model.safetensors");
  const auto got = read_tensors(out / "checkpoints" / "step_00000030" / "model.safetensors");
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, values] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(got.at(name) == values) << "tensor " << name << " differs from the uninterrupted run";
  }
  EXPECT_TRUE(read_tensors(dir_ / "reference" / "checkpoints" / "step_00000030" / "state.safetensors") ==
              read_tensors(out / "checkpoints" / "step_00000030" / "state.safetensors"))
      << "optimizer moments differ from the uninterrupted run";
}

}  // namespace
}  // namespace cllm::reliability
