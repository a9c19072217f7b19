#include "report/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "data/file_io.h"

namespace cllm::report {
namespace {

// Colour-blind-safe palette (Okabe-Ito).
constexpr const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"};
constexpr int kNumColors = sizeof kColors / sizeof kColors[0];

// Plot area inside a panel.
struct Frame {
  double left, top, width, height;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string tick_label(double v) {
  const double a = std::abs(v);
  if (a >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", std::abs(v) < 1e-12 ? 0.0 : v);
}

std::string text(double x, double y, const std::string& s, const char* anchor = "middle", int size = 12,
                 const std::string& extra = "") {
  return fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"{}\"{}>{}</text>\n", x, y, size,
                     anchor, extra, escape(s));
}

// Title, axis labels, y ticks with grid lines; returns the y scale.
struct YScale {
  double lo, hi;
  Frame f;
  double operator()(double v) const { return f.bottom() - (v - lo) / (hi - lo) * f.height; }
};

YScale draw_axes(std::string& out, const Frame& f, const std::string& title, const std::string& x_label,
                 const std::string& y_label, double y_lo, double y_hi) {
  const std::vector<double> ticks = nice_ticks(y_lo, y_hi);
  YScale y{std::min(y_lo, ticks.front()), std::max(y_hi, ticks.back()), f};
  out += text(f.left + f.width / 2, f.top - 14, title, "middle", 14, " font-weight=\"bold\"");
  for (double t : ticks) {
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#dddddd\"/>\n", f.left,
                       y(t), f.right(), y(t));
    out += text(f.left - 6, y(t) + 4, tick_label(t), "end", 11);
  }
  out += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#333333\"/>\n",
                     f.left, f.top, f.width, f.height);
  out += text(f.left + f.width / 2, f.bottom() + 36, x_label);
  out += text(0, 0, y_label, "middle", 12,
              fmt::format(" transform=\"translate({:.1f},{:.1f}) rotate(-90)\"", f.left - 52, f.top + f.height / 2));
  return y;
}

void draw_x_tick(std::string& out, const Frame& f, double x, const std::string& label) {
  out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#333333\"/>\n", x, f.bottom(), x,
                     f.bottom() + 5);
  out += text(x, f.bottom() + 18, label, "middle", 11);
}

// Legend entries in a row above the plot area's right edge.
void draw_legend(std::string& out, const Frame& f, const std::vector<std::string>& names) {
  double x = f.right() - 8;
  for (std::size_t i = names.size(); i-- > 0;) {
    const double w = 22 + 6.5 * static_cast<double>(names[i].size());
    x -= w;
    out += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n", x, f.top + 8,
                       kColors[i % kNumColors]);
    out += text(x + 16, f.top + 18, names[i], "start", 11);
  }
}

void render_line(std::string& out, const LineChart& c, const Frame& f) {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const Series& s : c.series) {
    if (s.x.size() != s.y.size())
      throw std::invalid_argument(fmt::format("chart '{}': series '{}' has {} x values and {} y values", c.title, s.name,
                                              s.x.size(), s.y.size()));
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // no data: empty axes
  if (c.y_from_zero) y_lo = std::min(0.0, y_lo);
  if (y_hi <= y_lo) y_hi = y_lo + 1;
  if (!c.x_categories.empty()) x_lo = 0, x_hi = static_cast<double>(c.x_categories.size() - 1);
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  const YScale y = draw_axes(out, f, c.title, c.x_label, c.y_label, y_lo, y_hi);
  const double pad = c.x_categories.empty() ? 0.0 : 0.04 * f.width;  // keep end markers off the frame
  auto x = [&](double v) { return f.left + pad + (v - x_lo) / (x_hi - x_lo) * (f.width - 2 * pad); };
  if (c.x_categories.empty()) {
    for (double t : nice_ticks(x_lo, x_hi))
      if (t >= x_lo && t <= x_hi) draw_x_tick(out, f, x(t), tick_label(t));
  } else {
    for (std::size_t i = 0; i < c.x_categories.size(); ++i) draw_x_tick(out, f, x(static_cast<double>(i)), c.x_categories[i]);
  }
  std::vector<std::string> names;
  for (std::size_t k = 0; k < c.series.size(); ++k) {
    const Series& s = c.series[k];
    const char* color = kColors[k % kNumColors];
    std::string points;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      points += fmt::format("{:.1f},{:.1f} ", x(s.x[i]), y(s.y[i]));
      if (s.x.size() <= 40)
        out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", x(s.x[i]), y(s.y[i]), color);
    }
    if (!points.empty())
      out += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", points, color);
    names.push_back(s.name);
  }
  draw_legend(out, f, names);
}

void render_bars(std::string& out, const StackedBarChart& c, const Frame& f) {
  if (c.values.size() != c.categories.size())
    throw std::invalid_argument(fmt::format("chart '{}': {} bars of values for {} categories", c.title, c.values.size(),
                                            c.categories.size()));
  double y_hi = 0;
  for (const auto& bar : c.values) {
    if (bar.size() != c.layers.size())
      throw std::invalid_argument(fmt::format("chart '{}': a bar has {} segments, expected {} (one per layer)", c.title,
                                              bar.size(), c.layers.size()));
    double total = 0;
    for (double v : bar) total += std::isfinite(v) ? std::max(0.0, v) : 0.0;
    y_hi = std::max(y_hi, total);
  }
  const YScale y = draw_axes(out, f, c.title, c.x_label, c.y_label, 0.0, y_hi > 0 ? y_hi * 1.12 : 1.0);  // room for the legend
  const double slot = f.width / static_cast<double>(std::max<std::size_t>(1, c.categories.size()));
  for (std::size_t i = 0; i < c.categories.size(); ++i) {
    const double cx = f.left + slot * (static_cast<double>(i) + 0.5), w = slot * 0.6;
    double base = 0;
    for (std::size_t k = 0; k < c.layers.size(); ++k) {
      const double v = std::isfinite(c.values[i][k]) ? std::max(0.0, c.values[i][k]) : 0.0;
      out += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>\n", cx - w / 2,
                         y(base + v), w, y(base) - y(base + v), kColors[k % kNumColors]);
      base += v;
    }
    draw_x_tick(out, f, cx, c.categories[i]);
  }
  draw_legend(out, f, c.layers);
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target_count) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, target_count - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  // Ticks are k * step for integers k, so rounding does not accumulate.
  double first = std::floor(lo / step);
  if (first * step > lo) first -= 1;
  std::vector<double> ticks;
  for (double k = first;; k += 1) {
    ticks.push_back(k * step);
    if (k * step >= hi) break;
  }
  return ticks;
}

std::string render_svg(const std::vector<Chart>& charts, int width, int panel_height) {
  if (charts.empty()) throw std::invalid_argument("render_svg: no charts to draw");
  const int height = panel_height * static_cast<int>(charts.size());
  std::string out = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"Helvetica, Arial, sans-serif\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n",
      width, height);
  for (std::size_t i = 0; i < charts.size(); ++i) {
    const Frame f{78.0, static_cast<double>(panel_height) * static_cast<double>(i) + 44.0, width - 78.0 - 24.0,
                  panel_height - 44.0 - 56.0};
    out += "<g>\n";
    std::visit([&](const auto& c) {
      if constexpr (std::is_same_v<std::decay_t<decltype(c)>, LineChart>) render_line(out, c, f);
      else render_bars(out, c, f);
    }, charts[i]);
    out += "</g>\n";
  }
  out += "</svg>\n";
  return out;
}

void write_svg(const std::filesystem::path& path, const std::vector<Chart>& charts) {
  const std::string svg = render_svg(charts);
  data::AtomicFileWriter writer(path);
  writer.write(svg);
  writer.commit();
}

}  // namespace cllm::report
