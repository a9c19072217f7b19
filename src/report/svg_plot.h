// A small SVG 1.1 chart writer for benchmark and training plots: line charts
// (numeric or categorical x) and stacked bar charts, stacked vertically as
// panels of one figure, each with axes, ticks, labels and a legend. Output is
// self-contained (no scripts, no external fonts or styles), so any browser
// or image viewer shows it.
#pragma once

#include <filesystem>
#include <string>
#include <variant>
#include <vector>

namespace cllm::report {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite y values are skipped
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  // When not empty, x values are indices into these labels, drawn evenly
  // spaced (e.g. thread counts 1, 2, 4, ... 64).
  std::vector<std::string> x_categories;
  bool y_from_zero = true;  // false: the y axis spans the data (loss curves)
};

struct StackedBarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> categories;       // one bar each
  std::vector<std::string> layers;           // stacked segments, bottom first
  std::vector<std::vector<double>> values;   // [category][layer], >= 0
};

using Chart = std::variant<LineChart, StackedBarChart>;

// The figure as SVG text: charts top to bottom, each width x panel_height
// pixels. Throws std::invalid_argument for no charts, a series whose x and y
// differ in length, or bar values that do not match categories x layers.
std::string render_svg(const std::vector<Chart>& charts, int width = 760, int panel_height = 360);

// render_svg written to path (crash-safe: a temporary file renamed over it).
void write_svg(const std::filesystem::path& path, const std::vector<Chart>& charts);

// "Nice" tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target_count = 6);

}  // namespace cllm::report
