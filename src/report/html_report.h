// A self-contained HTML report page (`apicv repro|bench --report DIR` writes DIR/index.html):
// inline CSS, inline SVG figures (svg_chart.h), no external resource of any kind. A
// Content-Security-Policy meta tag forbids every fetch (default-src 'none'), so a figure that
// referred to the network would not load rather than leak; the only script is inline and checks
// that each figure laid out: it sets data-rendered="yes|no" on every figure and series element
// from their bounding boxes, and data-render-check="done" on <body>; it also records on <body>
// the fetches the policy blocked (data-blocked-requests) and the resources the page loaded
// (data-resources), both 0 for a self-contained page (the browser test reads them,
// docs/report.md).
//
// Not supported: interactivity, pagination, external style sheets.
#pragma once

#include <string>
#include <vector>

namespace apicv::report {

struct Figure {
  std::string id;       // data-figure="..." (stable, the test looks for it)
  std::string caption;  // plain text
  std::string svg;      // svg_chart.h output
};

class HtmlReport {
 public:
  explicit HtmlReport(std::string title);
  void Heading(const std::string& text);
  void Paragraph(const std::string& text);  // plain text, escaped
  void Preformatted(const std::string& text);
  // Figures side by side (wrapping when the window is narrow).
  void FigureRow(const std::vector<Figure>& figures);
  // A table: the first row is the header; plain text cells.
  void Table(const std::vector<std::vector<std::string>>& rows);
  std::string Render() const;

 private:
  std::string title_;
  std::string body_;
  int figures_ = 0;
};

}  // namespace apicv::report
