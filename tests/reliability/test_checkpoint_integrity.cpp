// Checkpoint manifests through the real binary: a damaged newest checkpoint
// (each kind of damage) is named on --resume, which falls back to the newest
// intact one and, deterministic, ends bitwise equal to an uninterrupted run,
// and so does a LATEST naming a step directory removed whole;
// `cllm verify` says which checkpoints are intact; --keep never prunes the
// checkpoint just written; checkpoints without a manifest load unverified.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/safetensors.h"
#include "fixtures.h"
#include "run_cllm.h"

namespace cllm::reliability {
namespace {
namespace fs = std::filesystem;

constexpr int kSteps = 6;

// Training flags of a tiny deterministic run, a checkpoint every step, all kept unless `extra` holds --keep.
std::vector<std::string> flags(const fs::path& corpus, const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> f = {"train", "--data", corpus.string(), "--out", out.string(), "--layers", "1", "--dim", "32",
                                "--heads", "2", "--context", "16", "--batch", "2", "--threads", "1", "--deterministic",
                                "--steps", std::to_string(kSteps), "--warmup", "1", "--lr", "3e-3", "--sample-tokens", "0",
                                "--eval-batches", "1", "--ckpt-every", "1", "--log-every", "100"};
  if (std::find(extra.begin(), extra.end(), "--keep") == extra.end()) extra.insert(extra.end(), {"--keep", "0"});
  f.insert(f.end(), extra.begin(), extra.end());
  return f;
}

fs::path step_dir(const fs::path& run, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d", step);
  return run / "checkpoints" / name;
}

// One uninterrupted run and one stopped after 4 steps (checkpoints 1..4),
// made once for every test here.
class CheckpointIntegrity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir("integrity");
    write_file(*dir_ / "corpus.txt", corpus_text());
    const RunResult reference = run_cllm(flags(corpus(), reference_run()));
    ASSERT_EQ(reference.exit_code, 0) << reference.output;
    const RunResult stopped = run_cllm(flags(corpus(), stopped_run(), {"--stop-after", "4"}));
    ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
    ASSERT_TRUE(fs::is_directory(step_dir(stopped_run(), 4)));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path corpus() { return *dir_ / "corpus.txt"; }
  static fs::path reference_run() { return *dir_ / "reference"; }
  static fs::path stopped_run() { return *dir_ / "stopped"; }

  // A fresh copy of the stopped run.
  static fs::path copy_of_stopped(const std::string& name) {
    const fs::path out = *dir_ / name;
    fs::remove_all(out);
    fs::copy(stopped_run(), out, fs::copy_options::recursive);
    return out;
  }

  static void expect_equal_to_reference(const fs::path& out) {
    for (const char* file : {"model.safetensors", "state.safetensors"}) {
      const auto want = read_tensors(step_dir(reference_run(), kSteps) / file);
      const auto got = read_tensors(step_dir(out, kSteps) / file);
      EXPECT_TRUE(want == got) << file << " differs from the uninterrupted run's";
    }
  }

  static ScratchDir* dir_;
};

ScratchDir* CheckpointIntegrity::dir_ = nullptr;

struct Damage {
  std::string name;
  std::function<void(const fs::path& ckpt)> apply;
  std::string expected;  // in the "is damaged" line, after the checkpoint's path
};

// gtest names a case by this, not by a dump of its bytes.
void PrintTo(const Damage& damage, std::ostream* os) { *os << damage.name; }

void edit_file(const fs::path& path, const std::function<void(std::string&)>& edit) {
  std::string bytes = read_file(path);
  edit(bytes);
  write_file(path, bytes);
}

std::vector<Damage> damages() {
  return {
      {"truncated_file", [](const fs::path& c) { edit_file(c / "state.safetensors", [](std::string& b) { b.resize(b.size() - 100); }); },
       "/state.safetensors': "},  // + "N bytes, the manifest says N+100 (truncated)", checked below
      {"flipped_byte", [](const fs::path& c) { edit_file(c / "model.safetensors", [](std::string& b) { b[b.size() / 2] ^= 0x10; }); },
       "/model.safetensors': contents changed (xxh64 "},
      {"missing_file", [](const fs::path& c) { fs::remove(c / "model.safetensors"); },
       "/model.safetensors': missing (the manifest lists it)"},
      {"missing_manifest", [](const fs::path& c) { fs::remove(c / "manifest.json"); },
       "/manifest.json': missing (state.safetensors says the checkpoint was written with one)"},
      {"manifest_names_a_missing_file",
       [](const fs::path& c) {
         edit_file(c / "manifest.json", [](std::string& b) {
           auto m = nlohmann::json::parse(b);
           m["files"]["extra.bin"] = {{"bytes", 10}, {"xxh64", "0123456789abcdef"}};
           b = m.dump();
         });
       },
       "/extra.bin': missing (the manifest lists it)"},
      {"manifest_not_json", [](const fs::path& c) { write_file(c / "manifest.json", "{\"format\": "); },
       "/manifest.json': is not valid JSON"},
      {"manifest_names_a_directory",
       [](const fs::path& c) {
         fs::create_directory(c / "sub");
         edit_file(c / "manifest.json", [](std::string& b) {
           auto m = nlohmann::json::parse(b);
           m["files"]["sub"] = {{"bytes", 0}, {"xxh64", "0123456789abcdef"}};
           b = m.dump();
         });
       },
       "/sub': is a directory, expected a regular file"},
      {"directory_emptied",  // an interrupted copy or rsync: the step directory there, its files not
       [](const fs::path& c) {
         for (const char* f : {"model.safetensors", "state.safetensors", "manifest.json"}) fs::remove(c / f);
       },
       "/model.safetensors': no such file"},
  };
}

class DamagedNewest : public CheckpointIntegrity, public ::testing::WithParamInterface<Damage> {};

TEST_P(DamagedNewest, ResumeFallsBackToThePreviousAndEndsEqualToAnUninterruptedRun) {
  const fs::path out = copy_of_stopped("resume_" + GetParam().name);
  GetParam().apply(step_dir(out, 4));
  const RunResult r = run_cllm(flags(corpus(), out, {"--resume"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: checkpoint " + step_dir(out, 4).string() + " is damaged: '" + step_dir(out, 4).string() +
                          GetParam().expected),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("falling back to " + step_dir(out, 3).string() + " (step 3), the newest intact checkpoint"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("resuming from " + step_dir(out, 3).string() + " (step 3)"), std::string::npos) << r.output;
  expect_equal_to_reference(out);
}

std::string damage_name(const ::testing::TestParamInfo<Damage>& param) { return param.param.name; }

INSTANTIATE_TEST_SUITE_P(Kinds, DamagedNewest, ::testing::ValuesIn(damages()), damage_name);

// The newest checkpoint's directory removed whole (by hand, or a cleanup
// script) while LATEST still names it: --resume says so, takes the newest
// one that is there, and ends as the uninterrupted run does.
TEST_F(CheckpointIntegrity, LatestNamingAMissingDirectoryIsSaidAndTheNewestIntactOneResumes) {
  const fs::path out = copy_of_stopped("latest_missing");
  ASSERT_EQ(read_file(out / "checkpoints" / "LATEST"), "step_00000004\n");
  fs::remove_all(step_dir(out, 4));
  const std::string warning = "warning: '" + (out / "checkpoints" / "LATEST").string() + "': names " +
                              step_dir(out, 4).string() + ", which is not there (removed since it was written?)";
  const RunResult verify = run_cllm({"verify", out.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;  // the newest checkpoint there is intact
  EXPECT_NE(verify.output.find(warning), std::string::npos) << verify.output;
  const RunResult r = run_cllm(flags(corpus(), out, {"--resume"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(warning), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("falling back to " + step_dir(out, 3).string() + " (step 3), the newest intact checkpoint"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("resuming from " + step_dir(out, 3).string() + " (step 3)"), std::string::npos) << r.output;
  expect_equal_to_reference(out);
}

TEST_F(CheckpointIntegrity, TruncationIsReportedWithBothSizes) {
  const fs::path out = copy_of_stopped("truncated_sizes");
  const fs::path state = step_dir(out, 4) / "state.safetensors";
  const auto size = fs::file_size(state);
  fs::resize_file(state, size - 100);
  const RunResult r = run_cllm({"verify", out.string()});
  EXPECT_NE(r.output.find("state.safetensors': " + std::to_string(size - 100) + " bytes, the manifest says " +
                          std::to_string(size) + " (truncated)"),
            std::string::npos)
      << r.output;
}

TEST_F(CheckpointIntegrity, VerifyNamesEachCheckpointAndFailsWhenTheNewestIsDamaged) {
  const fs::path out = copy_of_stopped("verify");
  const RunResult good = run_cllm({"verify", out.string()});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  for (int s = 1; s <= 4; ++s)
    EXPECT_NE(good.output.find(step_dir(out, s).string() + ": intact\n"), std::string::npos) << good.output;
  EXPECT_NE(good.output.find("4 checkpoints checked; newest intact: " + step_dir(out, 4).string() + " (step 4)"),
            std::string::npos)
      << good.output;

  fs::remove(step_dir(out, 4) / "model.safetensors");
  const RunResult bad = run_cllm({"verify", out.string()});
  EXPECT_TRUE(clean_failure(bad)) << describe(bad) << "\n" << bad.output;
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find(step_dir(out, 4).string() + ": damaged: '" + (step_dir(out, 4) / "model.safetensors").string() +
                            "': missing"),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find(step_dir(out, 3).string() + ": intact\n"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("newest intact: " + step_dir(out, 3).string() + " (step 3)"), std::string::npos) << bad.output;
}

TEST_F(CheckpointIntegrity, EveryCheckpointDamagedIsOneClearError) {
  const fs::path out = copy_of_stopped("all_damaged");
  for (int s = 1; s <= 4; ++s) fs::remove(step_dir(out, s) / "manifest.json");
  const RunResult r = run_cllm(flags(corpus(), out, {"--resume"}));
  EXPECT_TRUE(clean_failure(r)) << describe(r) << "\n" << r.output;
  EXPECT_NE(r.output.find("cllm: error: '" + (out / "checkpoints").string() + "': no intact checkpoint: all 4 are damaged"),
            std::string::npos)
      << r.output;
  const RunResult verify = run_cllm({"verify", out.string()});
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_NE(verify.output.find("4 checkpoints checked; none is intact"), std::string::npos) << verify.output;
}

TEST_F(CheckpointIntegrity, KeepNeverPrunesTheCheckpointJustWritten) {
  // A damaged checkpoint newer than any this run will write: with the old
  // rule (keep the newest K by step) --keep 1 kept it and deleted each new one.
  const fs::path out = copy_of_stopped("keep");
  fs::copy(step_dir(out, 4), step_dir(out, 9), fs::copy_options::recursive);
  edit_file(step_dir(out, 9) / "model.safetensors", [](std::string& b) { b[b.size() / 2] ^= 0x10; });
  const RunResult r = run_cllm(flags(corpus(), out, {"--resume", "--keep", "1"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + step_dir(out, 4).string()), std::string::npos) << r.output;
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(out / "checkpoints"))
    if (e.is_directory()) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"step_00000006"});
  expect_equal_to_reference(out);
  EXPECT_EQ(run_cllm({"verify", out.string()}).exit_code, 0);
}

// A checkpoint as an older cllm wrote it: no manifest, no "manifest" key in
// the state's metadata.
void make_old_style(const fs::path& ckpt) {
  fs::remove(ckpt / "manifest.json");
  const fs::path state_path = ckpt / "state.safetensors";
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::vector<std::size_t>> shapes;
  {
    const auto state = data::SafetensorsFile::open(state_path);
    metadata = state.metadata();
    for (const auto& [name, t] : state.tensors()) {
      tensors[name] = state.f32(name);
      shapes[name] = t.shape;
    }
  }
  ASSERT_EQ(metadata.erase("manifest"), 1u);
  std::vector<data::TensorToWrite> out;
  for (const auto& [name, values] : tensors) out.push_back({name, shapes[name], values.data()});
  data::write_safetensors(state_path, metadata, out);
}

TEST_F(CheckpointIntegrity, CheckpointsWithoutAManifestLoadUnverified) {
  const fs::path out = copy_of_stopped("old_style");
  make_old_style(step_dir(out, 4));
  const RunResult verify = run_cllm({"verify", out.string()});
  EXPECT_EQ(verify.exit_code, 1) << verify.output;  // the newest is not known to be intact
  EXPECT_NE(verify.output.find(step_dir(out, 4).string() + ": unverified (no manifest: written by an older cllm)"),
            std::string::npos)
      << verify.output;
  const RunResult r = run_cllm(flags(corpus(), out, {"--resume"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: " + step_dir(out, 4).string() + " has no manifest.json (written by an older cllm): loading it unverified"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("resuming from " + step_dir(out, 4).string() + " (step 4)"), std::string::npos) << r.output;
  expect_equal_to_reference(out);
}

TEST_F(CheckpointIntegrity, GenerateFromARunDirectoryTakesTheNewestIntactCheckpoint) {
  const fs::path out = copy_of_stopped("generate");
  fs::remove(step_dir(out, 4) / "state.safetensors");
  const RunResult r = run_cllm({"generate", "--ckpt", out.string(), "--tokens", "2", "--prompt", "the"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: checkpoint " + step_dir(out, 4).string() + " is damaged"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("falling back to " + step_dir(out, 3).string() + " (step 3)"), std::string::npos) << r.output;
}

TEST_F(CheckpointIntegrity, VerifyOfAMissingOrEmptyRunIsAClearError) {
  const RunResult missing = run_cllm({"verify", (*dir_ / "nope").string()});
  EXPECT_TRUE(clean_failure(missing)) << describe(missing) << "\n" << missing.output;
  EXPECT_NE(missing.output.find("nope': no such directory"), std::string::npos) << missing.output;
  fs::create_directories(*dir_ / "empty");
  const RunResult empty = run_cllm({"verify", (*dir_ / "empty").string()});
  EXPECT_TRUE(clean_failure(empty)) << describe(empty) << "\n" << empty.output;
  EXPECT_NE(empty.output.find("checkpoints': holds no checkpoints"), std::string::npos) << empty.output;
}

}  // namespace
}  // namespace cllm::reliability
