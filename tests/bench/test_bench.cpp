// cllm bench kernels, bench scaling and plot, driven through the binary: output
// well-formed (JSON Lines with the documented fields, SVG that parses as
// XML), measurements consistent with the designs, clear errors on bad input.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "report/svg_plot.h"

namespace {
namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;
  std::string out, err;
};

// One JSON object per line, as --json prints them.
std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> rows;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class BenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cllm_test_bench_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs a shell command line, capturing stdout and stderr.
  Result shell(const std::string& command) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const int status = std::system((command + " >" + out.string() + " 2>" + err.string()).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }
  Result cllm(const std::string& args) { return shell(std::string(CLLM_BINARY) + " " + args); }

  // True when xmllint accepts the file as well-formed XML.
  void expect_well_formed_svg(const fs::path& svg) {
    ASSERT_TRUE(fs::exists(svg)) << svg;
    ASSERT_NE(std::string(CLLM_XMLLINT), "") << "xmllint not found: run scripts/install-deps.sh (libxml2-utils)";
    const Result r = shell(std::string(CLLM_XMLLINT) + " --noout " + svg.string());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(slurp(svg).find("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""), std::string::npos);
  }

  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }

  fs::path dir_;
};

TEST_F(BenchTest, KernelsJsonHasEveryKernelPerTargetAgainstTheSameRunsMemcpy) {
  const Result r = cllm("bench kernels --quick --json --targets scalar,best");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::uint64_t, double> memcpy_by_buffer;  // the reference of each buffer size
  std::set<std::pair<std::string, std::string>> measured;  // (kernel, target)
  const std::vector<nlohmann::json> rows = json_lines(r.out);
  for (const auto& row : rows) {
    for (const char* field : {"kernel", "target", "n_sources", "bytes", "seconds", "gb_per_s", "memcpy_gb_per_s",
                              "buffer_bytes", "command"})
      ASSERT_TRUE(row.contains(field)) << field << " missing in " << row.dump();
    EXPECT_GT(row["bytes"].get<double>(), 0.0) << row.dump();
    EXPECT_GT(row["seconds"].get<double>(), 0.0) << row.dump();
    EXPECT_NEAR(row["gb_per_s"].get<double>(), row["bytes"].get<double>() / row["seconds"].get<double>() * 1e-9,
                row["gb_per_s"].get<double>() * 1e-6)
        << row.dump();
    if (row["kernel"] == "memcpy") memcpy_by_buffer[row["buffer_bytes"]] = row["gb_per_s"];
    measured.emplace(row["kernel"], row["target"]);
  }
  for (const auto& row : rows) {
    ASSERT_TRUE(memcpy_by_buffer.count(row["buffer_bytes"])) << "no memcpy for " << row.dump();
    EXPECT_EQ(row["memcpy_gb_per_s"].get<double>(), memcpy_by_buffer[row["buffer_bytes"]]) << row.dump();
  }
  const std::string best(cllm::kernels::target_name(cllm::kernels::usable_targets().back()));
  for (const std::string kernel : {"zero", "copy", "add", "add_n", "scale", "axpy", "dot", "sum_squares", "adamw"}) {
    EXPECT_TRUE(measured.count({kernel, "scalar"})) << kernel << " on scalar";
    EXPECT_TRUE(measured.count({kernel, best})) << kernel << " on " << best;
  }
  for (const auto& row : rows) {
    if (row["kernel"] == "add_n") {
      EXPECT_EQ(row["n_sources"], 12) << row.dump();
    }
  }
}

TEST_F(BenchTest, ScalingSmokeRunPrintsOneJsonRowPerRunAndAParsableSvg) {
  const fs::path svg = dir_ / "scaling.svg";
  const Result r = cllm("bench scaling --config tiny --threads 1,2,4 --steps 2 --warmup 1 --accum 8 --json --plot " +
                     svg.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> rows = json_lines(r.out);
  ASSERT_EQ(rows.size(), 6u) << r.out;  // pipeline and baseline at 1, 2, 4 threads
  const std::size_t expected_threads[] = {1, 2, 4, 1, 2, 4};
  const unsigned cores = std::thread::hardware_concurrency();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    for (const char* field :
         {"command", "config", "design", "threads", "lanes", "oversubscribed", "tokens_per_s", "speedup", "efficiency", "epoch_s",
          "step_ms", "compute_ms", "idle_ms", "accumulate_thread_ms", "exposed_accumulate_ms", "exposed_accumulate_pct",
          "optimizer_ms", "idle_pct", "blocking_locks_per_step", "contended_locks_per_step", "threads_created_per_step",
          "cpu_util_pct",
          "peak_rss_mib", "final_loss", "tokens_per_step"})
      EXPECT_TRUE(row.contains(field)) << field << " missing in " << row.dump();
    EXPECT_EQ(row["design"], i < 3 ? "pipeline" : "baseline");
    EXPECT_EQ(row["threads"], expected_threads[i]);
    // The pipeline computes on one lane per core at most; the baseline runs every thread.
    EXPECT_EQ(row["lanes"], i < 3 ? std::min<std::size_t>(expected_threads[i], cores) : expected_threads[i]);
    EXPECT_EQ(row["config"], "tiny");
    EXPECT_EQ(row["tokens_per_step"], 8 * 64);
    EXPECT_EQ(row["oversubscribed"], expected_threads[i] > cores);
    EXPECT_GT(row["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(row["peak_rss_mib"].get<double>(), 1.0);
    EXPECT_NEAR(row["epoch_s"].get<double>() * row["tokens_per_s"].get<double>(), 1048576.0, 1.0);
    const double parts = row["compute_ms"].get<double>() + row["idle_ms"].get<double>() +
                         row["exposed_accumulate_ms"].get<double>() + row["optimizer_ms"].get<double>();
    EXPECT_LE(parts, row["step_ms"].get<double>() * 1.001 + 0.01);  // the breakdown is a part of the step
  }
  EXPECT_DOUBLE_EQ(rows[0]["speedup"].get<double>(), 1.0);
  for (std::size_t i = 0; i < 3; ++i) {
    // The pipeline creates no thread; the baseline one per micro-batch.
    // (Lock counts include the sgemm library's, which vary: see the next test.)
    EXPECT_EQ(rows[i]["threads_created_per_step"], 0.0);
    EXPECT_EQ(rows[i + 3]["threads_created_per_step"], 8.0);
    // Same data, same model, same optimizer: the designs agree up to rounding.
    EXPECT_NEAR(rows[i]["final_loss"].get<double>(), rows[i + 3]["final_loss"].get<double>(), 1e-4);
  }
  expect_well_formed_svg(svg);
  const std::string text = slurp(svg);
  for (const char* part : {"Training throughput", "Parallel efficiency", "Mean step time, pipeline",
                           "Mean step time, baseline", "exposed accumulation"})
    EXPECT_NE(text.find(part), std::string::npos) << part;
}

// With the naive sgemm (no library mutex) the measured lock counts are the
// designs' own: none for the pipeline, the global mutex once per micro-batch
// for the baseline. (The warm-up step is left out: in the first one the
// thread OpenBLAS's pthread build started at load goes to sleep, one lock;
// none with OPENBLAS_NUM_THREADS=1.)
// The designs' own locks: fp32 with the naive sgemm takes none of a library's
// (bf16 products always run on oneDNN, whose new threads set up under locks).
TEST_F(BenchTest, PipelineTakesNoLockAndTheBaselineOnePerMicroBatch) {
  const Result r = shell("CLLM_GEMM=naive " + std::string(CLLM_BINARY) +
                         " bench scaling --config tiny --threads 2 --steps 2 --warmup 1 --accum 3 --precision fp32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> rows = json_lines(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_EQ(rows[0]["design"], "pipeline");
  EXPECT_EQ(rows[0]["blocking_locks_per_step"], 0.0);
  EXPECT_EQ(rows[1]["design"], "baseline");
  EXPECT_EQ(rows[1]["blocking_locks_per_step"], 3.0);
}

TEST_F(BenchTest, ScalingTablePrintsTheCommandFirst) {
  const Result r = cllm("bench scaling --config tiny --threads 1 --steps 1 --warmup 0 --accum 2 --no-baseline");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("command: cllm bench scaling --config tiny --threads 1", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("pipeline"), std::string::npos);
  EXPECT_EQ(r.out.find("baseline "), std::string::npos);
}

// The last-level cache miss rate: a percentage per row where perf_event_open
// counts, else "unavailable (reason)" (as in most VMs); in JSON llc_miss_pct,
// or null with llc_unavailable saying why.
TEST_F(BenchTest, ScalingReportsTheCacheMissRateOrWhyNot) {
  const std::string args = "bench scaling --config tiny --threads 1 --steps 1 --warmup 0 --accum 2 --no-baseline";
  const Result table = cllm(args);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  const std::string prefix = "LLC miss rate (cache misses / references, every thread, timed steps): ";
  const std::size_t at = table.out.find(prefix);
  ASSERT_NE(at, std::string::npos) << table.out;
  const std::string rest = table.out.substr(at + prefix.size(), table.out.find('\n', at) - at - prefix.size());
  const bool unavailable = rest.starts_with("unavailable (perf_event_open: ") && rest.ends_with(")");
  const bool counted = rest.starts_with("pipeline 1t ") && rest.ends_with("%");
  EXPECT_TRUE(unavailable || counted) << rest;

  const Result json = cllm(args + " --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const std::vector<nlohmann::json> rows = json_lines(json.out);
  ASSERT_EQ(rows.size(), 1u) << json.out;
  if (unavailable) {
    EXPECT_TRUE(rows[0]["llc_miss_pct"].is_null()) << rows[0].dump();
    EXPECT_TRUE(rows[0]["llc_unavailable"].is_string()) << rows[0].dump();
  } else {
    EXPECT_TRUE(rows[0]["llc_unavailable"].is_null()) << rows[0].dump();
    EXPECT_GE(rows[0]["llc_miss_pct"].get<double>(), 0.0) << rows[0].dump();
    EXPECT_LE(rows[0]["llc_miss_pct"].get<double>(), 100.0) << rows[0].dump();
  }
}

TEST_F(BenchTest, ScalingRejectsBadFlags) {
  Result r = cllm("bench scaling --config huge --threads 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown config 'huge'"), std::string::npos) << r.err;
  r = cllm("bench scaling --config tiny --threads 1,0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("'0' is not a thread count"), std::string::npos) << r.err;
  r = cllm("bench scaling --config tiny --threads 1 --plot /nonexistent-dir/x.svg");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

// Under mpirun -np 2 the pipeline rows run data-parallel: rank 0 alone prints
// one row per thread count (no baseline), with the all-reduce time and its
// hidden part; the loss is the single-process run's, where those fields are 0.
TEST_F(BenchTest, ScalingUnderMpirunReportsAllReduceTimeAndTheHiddenPart) {
  if (std::string(CLLM_MPIRUN_NP2).empty()) GTEST_SKIP() << "built without MPI";
  const std::string args = "bench scaling --config tiny --threads 1,2 --steps 2 --warmup 1 --accum 8 --json";
  const Result r = shell(std::string(CLLM_MPIRUN_NP2) + " " + CLLM_BINARY + " " + args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> rows = json_lines(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  const Result one = cllm(args + " --no-baseline");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const std::vector<nlohmann::json> single = json_lines(one.out);
  ASSERT_EQ(single.size(), 2u) << one.out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    for (const char* field : {"ranks", "allreduce_ms", "hidden_allreduce_ms", "hidden_allreduce_pct", "step_ms", "final_loss"})
      ASSERT_TRUE(row.contains(field)) << field << " missing in " << row.dump();
    EXPECT_EQ(row["design"], "pipeline");
    EXPECT_EQ(row["threads"], i + 1);
    EXPECT_EQ(row["ranks"], 2);
    EXPECT_EQ(row["tokens_per_step"], 8 * 64);  // the global batch, split over the ranks
    const double allreduce = row["allreduce_ms"], hidden = row["hidden_allreduce_ms"];
    EXPECT_GT(allreduce, 0.0) << row.dump();
    EXPECT_GE(allreduce, hidden) << row.dump();
    EXPECT_GE(hidden, 0.0) << row.dump();
    EXPECT_LE(allreduce, row["step_ms"].get<double>()) << row.dump();  // inside the step
    EXPECT_NEAR(row["hidden_allreduce_pct"].get<double>(), 100.0 * hidden / allreduce, 1e-9);
    EXPECT_NEAR(row["final_loss"].get<double>(), single[i]["final_loss"].get<double>(), 1e-4);
    EXPECT_EQ(single[i]["ranks"], 1);
    EXPECT_EQ(single[i]["allreduce_ms"], 0.0);
    EXPECT_EQ(single[i]["hidden_allreduce_ms"], 0.0);
    EXPECT_EQ(single[i]["hidden_allreduce_pct"], 0.0);
  }
}

TEST_F(BenchTest, PlotDrawsTrainAndValidationLoss) {
  const fs::path metrics = write("metrics.jsonl",
                                 "{\"step\":1,\"loss\":5.5,\"lr\":0.001}\n"
                                 "{\"step\":2,\"loss\":null,\"skipped\":true}\n"
                                 "{\"step\":3,\"loss\":4.25}\n"
                                 "{\"step\":3,\"val_loss\":4.5,\"val_ppl\":90.0}\n"
                                 "\n"
                                 "{\"step\":3,\"save_error\":\"disk full\"}\n");
  const fs::path svg = dir_ / "loss.svg";
  const Result r = cllm("plot " + metrics.string() + " --out " + svg.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_well_formed_svg(svg);
  const std::string text = slurp(svg);
  EXPECT_NE(text.find("train loss"), std::string::npos);
  EXPECT_NE(text.find("val loss"), std::string::npos);
  EXPECT_NE(text.find("<polyline"), std::string::npos);
}

// Several runs in one chart (e.g. fp32 against bf16), each series named after its run directory.
TEST_F(BenchTest, PlotDrawsSeveralRunsInOneChart) {
  fs::create_directories(dir_ / "fp32");
  fs::create_directories(dir_ / "bf16");
  const std::string rows = "{\"step\":1,\"loss\":5.5}\n{\"step\":2,\"loss\":4.5}\n{\"step\":2,\"val_loss\":4.75}\n";
  const fs::path a = write("fp32/metrics.jsonl", rows), b = write("bf16/metrics.jsonl", rows);
  const fs::path svg = dir_ / "both.svg";
  const Result r = cllm("plot " + a.string() + " " + b.string() + " --out " + svg.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_well_formed_svg(svg);
  const std::string text = slurp(svg);
  for (const char* name : {"fp32 train loss", "fp32 val loss", "bf16 train loss", "bf16 val loss"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
}

TEST_F(BenchTest, PlotRejectsEmptyAndNonJsonInput) {
  Result r = cllm("plot " + write("empty.jsonl", "").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("empty.jsonl: empty"), std::string::npos) << r.err;
  r = cllm("plot " + write("bad.jsonl", "{\"step\":1,\"loss\":2}\nstep 2 loss 1.5\n").string() + " --out " +
           (dir_ / "bad.svg").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.jsonl:2: not a JSON object"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "bad.svg"));
  r = cllm("plot " + write("noloss.jsonl", "{\"step\":1,\"lr\":0.1}\n").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nothing to plot"), std::string::npos) << r.err;
  r = cllm("plot " + (dir_ / "missing.jsonl").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.jsonl: cannot open"), std::string::npos) << r.err;
}

TEST_F(BenchTest, SvgWriterEscapesTextAndChecksShapes) {
  using namespace cllm::report;
  LineChart line{"a < b & \"c\"", "x", "y", {{"s<1>", {0, 1, 2}, {1, 3, 2}}}, {}, true};
  StackedBarChart bars{"bars", "t", "ms", {"1", "2"}, {"compute", "idle"}, {{1, 2}, {3, 0.5}}};
  const fs::path svg = dir_ / "w.svg";
  write_svg(svg, {line, bars});
  expect_well_formed_svg(svg);
  EXPECT_NE(slurp(svg).find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);

  EXPECT_THROW(render_svg({}), std::invalid_argument);
  EXPECT_THROW(render_svg({LineChart{"t", "x", "y", {{"s", {0, 1}, {1}}}, {}, true}}), std::invalid_argument);
  EXPECT_THROW(render_svg({StackedBarChart{"t", "x", "y", {"1"}, {"a", "b"}, {{1}}}}), std::invalid_argument);
}

TEST(NiceTicks, CoverTheRangeWithRoundSteps) {
  const auto ticks = cllm::report::nice_ticks(0.0, 37.0);
  ASSERT_GE(ticks.size(), 2u);
  EXPECT_LE(ticks.front(), 0.0);
  EXPECT_GE(ticks.back(), 37.0);
  EXPECT_DOUBLE_EQ(ticks[1] - ticks[0], 10.0);
  const auto small = cllm::report::nice_ticks(3.9, 4.3);
  EXPECT_LE(small.front(), 3.9);
  EXPECT_GE(small.back(), 4.3 - 1e-9);
  EXPECT_NEAR(small[1] - small[0], 0.1, 1e-12);
}

}  // namespace
