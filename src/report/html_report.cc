// Self-contained HTML page; see html_report.h.
#include "report/html_report.h"

#include "report/svg_chart.h"

namespace apicv::report {

namespace {

// Runs once the page has laid out: a figure rendered when its SVG and every series in it have a
// non-empty bounding box.
constexpr const char* kRenderCheck = R"JS(
// Every fetch the Content-Security-Policy blocked, and every resource the page loaded, counted
// (the browser test requires both to be 0).
var blocked = 0;
document.addEventListener('securitypolicyviolation', function () { blocked++; });
window.addEventListener('load', function () {
  document.body.setAttribute('data-blocked-requests', String(blocked));
  document.body.setAttribute('data-resources',
                             String(performance.getEntriesByType('resource').length));
  var figs = document.querySelectorAll('figure[data-figure]');
  var ok = 0;
  figs.forEach(function (f) {
    var svg = f.querySelector('svg');
    var good = !!svg;
    if (svg) {
      var r = svg.getBoundingClientRect();
      good = r.width > 0 && r.height > 0;
    }
    var series = f.querySelectorAll('[data-series]');
    if (series.length === 0) good = false;
    series.forEach(function (s) {
      var b = s.getBBox();
      var drawn = b.width > 0 && b.height > 0;
      s.setAttribute('data-rendered', drawn ? 'yes' : 'no');
      if (!drawn) good = false;
    });
    f.setAttribute('data-rendered', good ? 'yes' : 'no');
    if (good) ok++;
  });
  document.body.setAttribute('data-figures-rendered', String(ok));
  document.body.setAttribute('data-render-check', 'done');
});
)JS";

constexpr const char* kStyle = R"CSS(
body { font-family: sans-serif; margin: 16px 24px; color: #111; max-width: 1400px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ccc; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #ddd; padding: 6px; background: #fff; }
figcaption { font-size: 12px; color: #333; max-width: 560px; margin-top: 4px; }
table { border-collapse: collapse; font-size: 12px; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
)CSS";

}  // namespace

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

void HtmlReport::Heading(const std::string& text) {
  body_ += "<h2>" + Escape(text) + "</h2>\n";
}

void HtmlReport::Paragraph(const std::string& text) {
  body_ += "<p>" + Escape(text) + "</p>\n";
}

void HtmlReport::Preformatted(const std::string& text) {
  body_ += "<pre>" + Escape(text) + "</pre>\n";
}

void HtmlReport::FigureRow(const std::vector<Figure>& figures) {
  body_ += "<div class=\"row\">\n";
  for (const Figure& f : figures) {
    body_ += "<figure data-figure=\"" + Escape(f.id) + "\">" + f.svg + "<figcaption>" +
             Escape(f.caption) + "</figcaption></figure>\n";
    ++figures_;
  }
  body_ += "</div>\n";
}

void HtmlReport::Table(const std::vector<std::vector<std::string>>& rows) {
  body_ += "<table>\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    body_ += "<tr>";
    for (const std::string& c : rows[r]) {
      body_ += (r == 0 ? "<th>" : "<td>") + Escape(c) + (r == 0 ? "</th>" : "</td>");
    }
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
}

std::string HtmlReport::Render() const {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
         "<title>" +
         Escape(title_) + "</title>\n<style>" + kStyle + "</style></head>\n<body data-figures=\"" +
         std::to_string(figures_) + "\">\n<h1>" + Escape(title_) + "</h1>\n" + body_ + "<script>" +
         kRenderCheck + "</script>\n</body></html>\n";
}

}  // namespace apicv::report
