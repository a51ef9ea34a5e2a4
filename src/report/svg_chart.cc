// SVG figures; see svg_chart.h.
#include "report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace apicv::report {

namespace {

const char* const kPalette[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
constexpr int kPaletteSize = 6;

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks over [0, max].
double NiceStep(double max, int n) {
  if (!(max > 0) || !std::isfinite(max)) return 1;
  const double raw = max / n;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

std::string Header(int w, int h, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(w) + "\" height=\"" +
         std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " + std::to_string(h) +
         "\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>" + Escape(title) +
         "</title><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><text x=\"" +
         std::to_string(w / 2) +
         "\" y=\"16\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" +
         Escape(title) + "</text>";
}

// The x axis at y = `y0` from x0 to x1 for values [0, max]: ticks, labels and the axis label.
std::string XAxis(double x0, double x1, double y0, double max, const std::string& label) {
  std::string s = "<g class=\"x-axis\"><line x1=\"" + Num(x0) + "\" y1=\"" + Num(y0) + "\" x2=\"" +
                  Num(x1) + "\" y2=\"" + Num(y0) + "\" stroke=\"#000\"/>";
  const double step = NiceStep(max, 5);
  for (int i = 0; i <= 50; ++i) {
    const double v = step * i;
    if (v > max * 1.0001 + 1e-12) break;
    const double x = x0 + (max > 0 ? v / max : 0) * (x1 - x0);
    s += "<line x1=\"" + Num(x) + "\" y1=\"" + Num(y0) + "\" x2=\"" + Num(x) + "\" y2=\"" +
         Num(y0 + 4) + "\" stroke=\"#000\"/><text x=\"" + Num(x) + "\" y=\"" + Num(y0 + 15) +
         "\" text-anchor=\"middle\">" + ShortNumber(v) + "</text>";
  }
  s += "<text class=\"axis-label\" x=\"" + Num((x0 + x1) / 2) + "\" y=\"" + Num(y0 + 31) +
       "\" text-anchor=\"middle\">" + Escape(label) + "</text></g>";
  return s;
}

std::string YLabel(double x, double y, const std::string& label) {
  return "<text class=\"axis-label\" x=\"" + Num(x) + "\" y=\"" + Num(y) +
         "\" text-anchor=\"middle\" transform=\"rotate(-90 " + Num(x) + " " + Num(y) + ")\">" +
         Escape(label) + "</text>";
}

}  // namespace

std::string Escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        // Control characters are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          o += ' ';
        } else {
          o.push_back(c);
        }
    }
  }
  return o;
}

std::string ShortNumber(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.2g", v);
  } else if (a >= 100 || v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

std::string LaneChartSvg(const LaneChart& c) {
  constexpr int kLeft = 150, kRight = 15, kTop = 28, kLaneH = 22, kBottom = 58;
  const int lanes = std::max<int>(1, static_cast<int>(c.lanes.size()));
  const int h = kTop + lanes * kLaneH + kBottom;
  const double x0 = kLeft, x1 = c.width - kRight, plot_w = x1 - x0;
  const double max = c.x_max > 0 ? c.x_max : 1;
  std::string s = Header(c.width, h, c.title);
  s += YLabel(12, kTop + lanes * kLaneH / 2.0, c.y_label);
  s += "<g class=\"series\" data-series=\"" + Escape(c.series) + "\">";
  for (size_t i = 0; i < c.lanes.size(); ++i) {
    const Lane& lane = c.lanes[i];
    const double y = kTop + static_cast<double>(i) * kLaneH;
    s += "<g data-lane=\"" + Escape(lane.name) + "\"><text x=\"" + Num(x0 - 6) + "\" y=\"" +
         Num(y + kLaneH * 0.65) + "\" text-anchor=\"end\">" + Escape(lane.name) +
         "</text><rect x=\"" + Num(x0) + "\" y=\"" + Num(y + 3) + "\" width=\"" + Num(plot_w) +
         "\" height=\"" + Num(kLaneH - 6) + "\" fill=\"#f2f2f2\"/>";
    // Intervals merged per pixel column: at most plot_w rectangles per lane.
    std::vector<std::pair<int, int>> px;
    px.reserve(lane.on.size());
    for (const auto& [a, b] : lane.on) {
      const int p0 = static_cast<int>(std::floor(std::clamp(a / max, 0.0, 1.0) * plot_w));
      int p1 = static_cast<int>(std::ceil(std::clamp(b / max, 0.0, 1.0) * plot_w));
      if (p1 <= p0) p1 = p0 + 1;
      px.emplace_back(p0, p1);
    }
    std::sort(px.begin(), px.end());
    std::vector<std::pair<int, int>> merged;
    for (const auto& p : px) {
      if (!merged.empty() && p.first <= merged.back().second) {
        merged.back().second = std::max(merged.back().second, p.second);
      } else {
        merged.push_back(p);
      }
    }
    const char* color =
        kPalette[(lane.color >= 0 ? static_cast<size_t>(lane.color) : i) % kPaletteSize];
    for (const auto& [p0, p1] : merged) {
      s += "<rect x=\"" + Num(x0 + p0) + "\" y=\"" + Num(y + 3) + "\" width=\"" +
           std::to_string(p1 - p0) + "\" height=\"" + Num(kLaneH - 6) + "\" fill=\"" + color +
           "\"/>";
    }
    s += "</g>";
  }
  if (c.lanes.empty()) {
    s += "<text x=\"" + Num((x0 + x1) / 2) + "\" y=\"" + Num(kTop + kLaneH * 0.65) +
         "\" text-anchor=\"middle\" fill=\"#555\">no inhibit reason set</text>";
  }
  s += "</g>";
  s += XAxis(x0, x1, kTop + lanes * kLaneH + 2, max, c.x_label);
  if (!c.note.empty()) {
    s += "<text x=\"" + Num(x0) + "\" y=\"" + std::to_string(h - 6) + "\" fill=\"#333\">" +
         Escape(c.note) + "</text>";
  }
  return s + "</svg>";
}

std::string BarChartSvg(const BarChart& c) {
  constexpr int kLeft = 250, kRight = 110, kTop = 28, kBarH = 24, kBottom = 44;
  const int n = std::max<int>(1, static_cast<int>(c.bars.size()));
  const int h = kTop + n * kBarH + kBottom;
  const double x0 = kLeft, x1 = c.width - kRight;
  double max = 0;
  for (const Bar& b : c.bars) {
    if (std::isfinite(b.value)) max = std::max(max, b.value);
    if (b.target) max = std::max(max, *b.target);
  }
  max = max > 0 ? max * 1.1 : 1;
  std::string s = Header(c.width, h, c.title);
  s += YLabel(12, kTop + n * kBarH / 2.0, c.x_label);
  for (size_t i = 0; i < c.bars.size(); ++i) {
    const Bar& b = c.bars[i];
    const double y = kTop + static_cast<double>(i) * kBarH;
    const double v = std::isfinite(b.value) ? std::clamp(b.value, 0.0, max) : 0;
    const double w = v / max * (x1 - x0);
    s += "<g class=\"series\" data-series=\"" + Escape(b.label) + "\"><text x=\"" + Num(x0 - 6) +
         "\" y=\"" + Num(y + kBarH * 0.65) + "\" text-anchor=\"end\">" + Escape(b.label) +
         "</text><rect x=\"" + Num(x0) + "\" y=\"" + Num(y + 4) + "\" width=\"" +
         Num(std::max(w, 1.0)) + "\" height=\"" + Num(kBarH - 8) + "\" fill=\"" +
         kPalette[(i + 1) % kPaletteSize] + "\"/><text x=\"" + Num(x0 + std::max(w, 1.0) + 4) +
         "\" y=\"" + Num(y + kBarH * 0.65) + "\">" + ShortNumber(b.value) +
         (b.verdict.empty() ? "" : " " + Escape(b.verdict)) + "</text>";
    if (b.target) {
      const double tx = x0 + std::clamp(*b.target / max, 0.0, 1.0) * (x1 - x0);
      s += "<line class=\"target\" x1=\"" + Num(tx) + "\" y1=\"" + Num(y + 1) + "\" x2=\"" +
           Num(tx) + "\" y2=\"" + Num(y + kBarH - 1) +
           "\" stroke=\"#000\" stroke-width=\"2\" stroke-dasharray=\"3,2\"><title>target " +
           std::string(b.at_most ? "<= " : ">= ") + ShortNumber(*b.target) + "</title></line>";
    }
    s += "</g>";
  }
  s += XAxis(x0, x1, kTop + n * kBarH + 2, max, c.y_label);
  return s + "</svg>";
}

std::string HistogramSvg(const Histogram& hg) {
  constexpr int kLeft = 60, kRight = 15, kTop = 28, kPlotH = 180, kBottom = 60;
  const int h = kTop + kPlotH + kBottom;
  const double x0 = kLeft, x1 = hg.width - kRight, y0 = kTop + kPlotH;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& ser : hg.series) {
    for (double v : ser.samples) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  std::string s = Header(hg.width, h, hg.title);
  s += YLabel(14, kTop + kPlotH / 2.0, hg.y_label);
  if (!(lo <= hi)) {
    s += "<text x=\"" + Num((x0 + x1) / 2) + "\" y=\"" + Num(kTop + kPlotH / 2.0) +
         "\" text-anchor=\"middle\">no samples</text>";
    return s + XAxis(x0, x1, y0, 1, hg.x_label) + "</svg>";
  }
  lo = 0;  // histograms of latencies start at 0
  const double span = hi > lo ? hi - lo : 1;
  const int bins = std::clamp(hg.bins, 1, 200);
  std::vector<std::vector<uint64_t>> counts(hg.series.size(), std::vector<uint64_t>(bins, 0));
  uint64_t top = 1;
  for (size_t k = 0; k < hg.series.size(); ++k) {
    for (double v : hg.series[k].samples) {
      if (!std::isfinite(v)) continue;
      const int b = std::clamp(static_cast<int>((v - lo) / span * bins), 0, bins - 1);
      top = std::max(top, ++counts[k][b]);
    }
  }
  const double bw = (x1 - x0) / bins;
  for (size_t k = 0; k < hg.series.size(); ++k) {
    const char* color = kPalette[k % kPaletteSize];
    s += "<g class=\"series\" data-series=\"" + Escape(hg.series[k].name) + "\">";
    for (int b = 0; b < bins; ++b) {
      if (counts[k][b] == 0) continue;
      const double bh = static_cast<double>(counts[k][b]) / static_cast<double>(top) * kPlotH;
      s += "<rect x=\"" + Num(x0 + b * bw) + "\" y=\"" + Num(y0 - bh) + "\" width=\"" +
           Num(std::max(bw - 1, 1.0)) + "\" height=\"" + Num(bh) + "\" fill=\"" + color +
           "\" fill-opacity=\"0.55\"/>";
    }
    // Legend entry.
    const double ly = kTop + 4 + static_cast<double>(k) * 14;
    s += "<rect x=\"" + Num(x1 - 150) + "\" y=\"" + Num(ly) +
         "\" width=\"10\" height=\"10\" fill=\"" + color + "\"/><text x=\"" + Num(x1 - 136) +
         "\" y=\"" + Num(ly + 9) + "\">" + Escape(hg.series[k].name) +
         " (n=" + std::to_string(hg.series[k].samples.size()) + ")</text></g>";
  }
  // The y axis: 0 and the top count.
  s += "<line x1=\"" + Num(x0) + "\" y1=\"" + Num(kTop) + "\" x2=\"" + Num(x0) + "\" y2=\"" +
       Num(y0) + "\" stroke=\"#000\"/><text x=\"" + Num(x0 - 4) + "\" y=\"" + Num(kTop + 8) +
       "\" text-anchor=\"end\">" + std::to_string(top) + "</text><text x=\"" + Num(x0 - 4) +
       "\" y=\"" + Num(y0) + "\" text-anchor=\"end\">0</text>";
  return s + XAxis(x0, x1, y0, lo + span, hg.x_label) + "</svg>";
}

}  // namespace apicv::report
