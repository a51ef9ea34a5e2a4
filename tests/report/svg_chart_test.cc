// SVG figures and the report page (report/svg_chart.h, report/html_report.h): series markers,
// escaping, bounded output for a thrash of many intervals, no external reference.
#include "report/svg_chart.h"

#include <gtest/gtest.h>

#include "report/html_report.h"

namespace apicv::report {
namespace {

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(SvgChart, LaneChartMergesIntervalsPerPixel) {
  LaneChart c;
  c.title = "legacy <thrash>";
  c.series = "legacy";
  c.x_label = "guest time (ms)";
  c.y_label = "inhibit reason";
  c.x_max = 1000;
  Lane irqwin{"IRQWIN", {}};
  for (int i = 0; i < 100000; ++i) irqwin.on.emplace_back(i * 0.01, i * 0.01 + 0.001);
  Lane pit{"PIT_REINJ", {{0, 1000}}};
  Lane sparse{"DISABLED", {{100, 200}, {500, 600}}};
  c.lanes = {pit, irqwin, sparse};
  const std::string svg = LaneChartSvg(c);
  EXPECT_NE(svg.find("data-series=\"legacy\""), std::string::npos);
  EXPECT_NE(svg.find("data-lane=\"IRQWIN\""), std::string::npos);
  EXPECT_NE(svg.find("legacy &lt;thrash&gt;"), std::string::npos);
  EXPECT_NE(svg.find("guest time (ms)"), std::string::npos);
  EXPECT_NE(svg.find("inhibit reason"), std::string::npos);
  // 100,000 intervals in a 395-pixel plot: merged, a handful of rectangles at most.
  EXPECT_LT(svg.size(), 20000u);
  // The sparse lane keeps its two separate bars (plus the lane background).
  const size_t d = svg.find("data-lane=\"DISABLED\"");
  const std::string lane = svg.substr(d, svg.find("</g>", d) - d);
  EXPECT_EQ(Count(lane, "<rect"), 3u);
}

TEST(SvgChart, BarChartHasTargetsAndLabels) {
  BarChart b;
  b.title = "ratios";
  b.x_label = "target check";
  b.y_label = "ratio (x)";
  b.bars = {{"fast within 1.5x", 1.1, 1.5, true, "PASS"}, {"slow >= 50x", 80, 50, false, "PASS"}};
  const std::string svg = BarChartSvg(b);
  EXPECT_EQ(Count(svg, "class=\"target\""), 2u);
  EXPECT_EQ(Count(svg, "data-series="), 2u);
  EXPECT_NE(svg.find("ratio (x)"), std::string::npos);
  EXPECT_NE(svg.find("&gt;= 50"), std::string::npos);
}

TEST(SvgChart, HistogramBinsSamplesPerSeries) {
  Histogram h;
  h.title = "IPI round trip";
  h.x_label = "round trip (us)";
  h.series = {{"apicv", {1, 2, 2, 3}}, {"in-kernel", {1, 1}}};
  h.bins = 3;
  const std::string svg = HistogramSvg(h);
  EXPECT_EQ(Count(svg, "data-series="), 2u);
  EXPECT_NE(svg.find("apicv (n=4)"), std::string::npos);
  Histogram empty;
  empty.title = "none";
  EXPECT_NE(HistogramSvg(empty).find("no samples"), std::string::npos);
}

TEST(HtmlReport, SelfContainedWithACspAndTheRenderCheck) {
  HtmlReport page("title & <more>");
  page.Paragraph("text <b>");
  page.FigureRow({{"f1", "caption", "<svg></svg>"}, {"f2", "c2", "<svg></svg>"}});
  page.Table({{"a", "b"}, {"1", "<2>"}});
  const std::string html = page.Render();
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(html.find("data-figures=\"2\""), std::string::npos);
  EXPECT_NE(html.find("data-render-check"), std::string::npos);
  EXPECT_NE(html.find("title &amp; &lt;more&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;2&gt;"), std::string::npos);
  EXPECT_EQ(html.find("http://www"), std::string::npos);
  EXPECT_EQ(html.find("https:"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
}

TEST(SvgChart, ShortNumbersAndEscaping) {
  EXPECT_EQ(ShortNumber(250), "250");
  EXPECT_EQ(ShortNumber(1.5), "1.5");
  EXPECT_EQ(ShortNumber(0), "0");
  EXPECT_EQ(Escape("a\x01<\"'&"), "a &lt;&quot;&#39;&amp;");
}

}  // namespace
}  // namespace apicv::report
