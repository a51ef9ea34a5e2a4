// Hand-written SVG figures for `apicv repro|bench --report` (docs/report.md says why no library):
// lane charts (which inhibit reasons are set over time), bar charts (rates, ratios against a
// target) and histograms (IPI round trips). Every figure has a title, axis labels with units and
// one <g data-series="NAME"> element per series, which the browser test looks for.
//
// Output size is bounded whatever the input: a lane's intervals are merged per pixel column
// (a 100,000-toggle thrash draws at most `width` rectangles), bars and histogram bins are few.
// Text is XML-escaped. Not supported: log axes, interactive zoom, legends outside the plot.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace apicv::report {

// A lane: intervals [start, end) in x units where the lane is "on".
struct Lane {
  std::string name;
  std::vector<std::pair<double, double>> on;
  int color = -1;  // palette index, so one reason has one color in every panel; -1: by position
};

struct LaneChart {
  std::string title;
  std::string x_label;  // with its unit, e.g. "guest time (ms)"
  std::string y_label;
  double x_max = 0;
  std::vector<Lane> lanes;
  std::string series;  // the data-series name of the whole panel (e.g. the configuration)
  std::string note;    // one line under the plot (counts)
  int width = 560;
};
std::string LaneChartSvg(const LaneChart& c);

struct Bar {
  std::string label;
  double value = 0;
  std::optional<double> target;  // a marker line at this value
  bool at_most = true;           // the target is a ceiling (else a floor)
  std::string verdict;           // shown after the value ("PASS", "REPORTED", ...)
};
struct BarChart {
  std::string title;
  std::string x_label;  // what the bars are
  std::string y_label;  // with its unit
  std::vector<Bar> bars;
  int width = 560;
};
std::string BarChartSvg(const BarChart& c);

struct HistogramSeries {
  std::string name;
  std::vector<double> samples;
};
struct Histogram {
  std::string title;
  std::string x_label;  // with its unit
  std::string y_label = "count";
  std::vector<HistogramSeries> series;
  int bins = 30;
  int width = 560;
};
std::string HistogramSvg(const Histogram& h);

// XML/HTML text escaping.
std::string Escape(const std::string& s);
// "1.5", "250", "0.0042", "1.2e+06": short numbers for tick labels.
std::string ShortNumber(double v);

}  // namespace apicv::report
