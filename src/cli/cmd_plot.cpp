// `cllm plot METRICS.jsonl... --out loss.svg`: the loss curves of training
// runs (train loss per step, validation loss per evaluation) from the metrics
// logs that `cllm train` writes, as one SVG chart; with several logs each
// series is named after its run (e.g. runs/fp32/metrics.jsonl -> "fp32").
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "data/file_io.h"
#include "report/svg_plot.h"

namespace cllm::cli {
namespace fs = std::filesystem;
namespace {

// A metrics.jsonl of a million steps is about 300 MB.
constexpr std::uint64_t kMaxMetricsBytes = std::uint64_t{4} << 30;

// Train and validation loss series from a metrics.jsonl. Lines without a
// loss (e.g. save errors) are ignored; a skipped step's null loss leaves a
// gap. Throws std::runtime_error naming the file (and line) when it cannot be
// read, is empty, holds a line that is not a JSON object, or has no loss.
report::LineChart loss_chart(const fs::path& path) {
  std::string text;
  try {
    text = data::InputFile::open(path).read_all(kMaxMetricsBytes);  // a regular file: never a FIFO or /dev/zero
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("{}: cannot open ({}; expected a metrics.jsonl written by cllm train)", path.string(), e.what()));
  }
  std::istringstream in(text);
  report::Series train{"train loss", {}, {}}, val{"val loss", {}, {}};
  std::string line;
  std::size_t line_no = 0, objects = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(fmt::format("{}:{}: not a JSON object ({}); expected JSON Lines written by cllm train",
                                           path.string(), line_no, e.what()));
    }
    if (!row.is_object())
      throw std::runtime_error(fmt::format("{}:{}: expected a JSON object per line, got {}", path.string(), line_no, row.type_name()));
    ++objects;
    const auto step = row.find("step");
    if (step == row.end() || !step->is_number()) continue;
    const double s = step->get<double>();
    if (const auto loss = row.find("loss"); loss != row.end()) {
      train.x.push_back(s);
      train.y.push_back(loss->is_number() ? loss->get<double>() : std::numeric_limits<double>::quiet_NaN());
    }
    if (const auto v = row.find("val_loss"); v != row.end() && v->is_number()) {
      val.x.push_back(s);
      val.y.push_back(v->get<double>());
    }
  }
  if (objects == 0) throw std::runtime_error(fmt::format("{}: empty: expected JSON Lines written by cllm train", path.string()));
  if (train.x.empty() && val.x.empty())
    throw std::runtime_error(fmt::format("{}: no line has a \"step\" with a \"loss\" or \"val_loss\": nothing to plot", path.string()));
  report::LineChart chart{fmt::format("Loss ({})", path.filename().string()), "step", "loss (nats/token)", {}, {}, false};
  if (!train.x.empty()) chart.series.push_back(std::move(train));
  if (!val.x.empty()) chart.series.push_back(std::move(val));
  return chart;
}

// The run a metrics log belongs to: its directory's name (cllm train writes
// OUT/metrics.jsonl), or the file's own name when it has been moved.
std::string run_name(const fs::path& path) {
  const fs::path dir = path.parent_path().filename();
  return path.filename() == "metrics.jsonl" && !dir.empty() ? dir.string() : path.stem().string();
}

report::LineChart loss_charts(const std::vector<fs::path>& paths) {
  if (paths.size() == 1) return loss_chart(paths.front());
  report::LineChart chart{"Loss", "step", "loss (nats/token)", {}, {}, false};
  for (const fs::path& path : paths) {
    for (report::Series& s : loss_chart(path).series) {
      s.name = run_name(path) + " " + s.name;
      chart.series.push_back(std::move(s));
    }
  }
  return chart;
}

}  // namespace

void add_plot_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("plot", "Draw the loss curves of metrics.jsonl files as one SVG chart");
  struct Options {
    std::vector<fs::path> metrics;
    fs::path out = "loss.svg";
  };
  auto opt = std::make_shared<Options>();
  cmd->add_option("metrics", opt->metrics, "metrics.jsonl files written by cllm train (one chart)")->required();
  cmd->add_option("--out,-o", opt->out, "SVG file to write")->capture_default_str();
  cmd->callback([opt] {
    const report::LineChart chart = loss_charts(opt->metrics);
    report::write_svg(opt->out, {chart});
    std::size_t points = 0;
    for (const auto& s : chart.series) points += s.x.size();
    fmt::print("wrote {} ({} points)\n", opt->out.string(), points);
  });
}

}  // namespace cllm::cli
