// Google Benchmark driver behind `apicv bench <name>`.
#include "bench_json.h"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "cli/atomic_output.h"
#include "cli/scenario.h"
#include "report/html_report.h"
#include "report/svg_chart.h"

namespace apicv::bench {
namespace {

// Console table as usual, plus a copy of every per-iteration run in nanoseconds.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  explicit CollectingReporter(std::vector<BenchRun>* out)
      : benchmark::ConsoleReporter(OO_Tabular), out_(out) {}

  void ReportRuns(const std::vector<Run>& reports) override {
    for (const Run& r : reports) {
      if (r.error_occurred) errors_ += r.benchmark_name() + ": " + r.error_message + "\n";
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      BenchRun b;
      b.name = r.benchmark_name();
      const double to_ns = 1e9 / benchmark::GetTimeUnitMultiplier(r.time_unit);
      b.real_ns = r.GetAdjustedRealTime() * to_ns;
      b.cpu_ns = r.GetAdjustedCPUTime() * to_ns;
      b.iterations = static_cast<long long>(r.iterations);
      for (const auto& [k, c] : r.counters) b.counters[k] = c.value;
      out_->push_back(std::move(b));
    }
    benchmark::ConsoleReporter::ReportRuns(reports);
  }

  const std::string& errors() const { return errors_; }

 private:
  std::vector<BenchRun>* out_;
  std::string errors_;
};

}  // namespace

void AddBenchOptions(CLI::App* cmd, BenchOptions* options) {
  cmd->add_option("--json", options->json_path, "Write Google Benchmark JSON to FILE");
  cmd->add_option("--min-time", options->min_time_s, "Minimum seconds per benchmark")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--filter", options->filter, "Regex selecting benchmarks");
  cmd->add_flag("!--no-timing-targets", options->judge_timing,
                "Print timing ratios without judging them; only time-independent checks decide "
                "the exit status (for CI on shared machines)");
}

void AddReportOption(CLI::App* cmd, BenchOptions* options) {
  cmd->add_option("--report", options->report_dir,
                  "Write DIR/index.html: the ratios against their targets and the time per run as "
                  "SVG figures (docs/report.md)");
}

std::vector<BenchRun> RunBenchmarks(const BenchOptions& options) {
  // A bad output path is bad input: refused before any benchmark runs (exit 2).
  if (!options.json_path.empty()) cli::CheckWritable("--json", options.json_path);
  if (!options.report_dir.empty())
    cli::CheckWritable("--report", cli::ReportIndexPath("--report", options.report_dir));
  std::vector<std::string> args = {"apicv", "--benchmark_filter=" + options.filter,
                                   "--benchmark_min_time=" + std::to_string(options.min_time_s)};
  if (!options.json_path.empty()) {
    args.push_back("--benchmark_out=" + options.json_path);
    args.push_back("--benchmark_out_format=json");
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  benchmark::Initialize(&argc, argv.data());

  std::vector<BenchRun> runs;
  CollectingReporter display(&runs);
  size_t ran;
  if (options.json_path.empty()) {
    ran = benchmark::RunSpecifiedBenchmarks(&display);
  } else {
    benchmark::JSONReporter file;
    ran = benchmark::RunSpecifiedBenchmarks(&display, &file);
  }
  if (!display.errors().empty()) throw std::runtime_error("benchmark failed:\n" + display.errors());
  if (ran == 0) throw std::runtime_error("no benchmark matches filter '" + options.filter + "'");
  return runs;
}

const BenchRun* FindRun(const std::vector<BenchRun>& runs, const std::string& name) {
  for (const BenchRun& r : runs) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

TargetChecks::TargetChecks(const char* command, const std::vector<BenchRun>& runs,
                           const BenchOptions& options, std::string default_filter)
    : command_(command),
      runs_(runs),
      options_(options),
      default_filter_(std::move(default_filter)) {}

Verdict TargetChecks::Count(Verdict v) {
  switch (v) {
    case Verdict::kPass:
      ++pass_;
      break;
    case Verdict::kFail:
      ++fail_;
      break;
    case Verdict::kReported:
      ++reported_;
      break;
    case Verdict::kNotEvaluated:
      ++not_evaluated_;
      break;
  }
  return v;
}

// A run the command needs is absent: the user's --filter left it out (not evaluated), or the
// command's own benchmark set did not produce it (a failure of the benchmark).
Verdict TargetChecks::Missing(const char* what, const std::string& missing) {
  if (NarrowedByUser()) {
    std::printf("NOT EVALUATED %s: %s not run (excluded by --filter '%s')\n", what, missing.c_str(),
                options_.filter.c_str());
    return Count(Verdict::kNotEvaluated);
  }
  std::printf("FAIL %s: %s not run\n", what, missing.c_str());
  return Count(Verdict::kFail);
}

Verdict TargetChecks::Ratio(const char* what, const std::string& num, const std::string& den,
                            double limit, bool at_most) {
  const BenchRun* a = FindRun(runs_, num);
  const BenchRun* b = FindRun(runs_, den);
  if (a == nullptr) return Missing(what, num);
  if (b == nullptr) return Missing(what, den);
  if (!(b->cpu_ns > 0)) {
    std::printf("FAIL %s: %s measured %.3f ns\n", what, den.c_str(), b->cpu_ns);
    return Count(Verdict::kFail);
  }
  const double ratio = a->cpu_ns / b->cpu_ns;
  const bool ok = at_most ? ratio <= limit : ratio >= limit;
  const bool judge = options_.judge_timing;
  const Verdict v = !judge ? Verdict::kReported : ok ? Verdict::kPass : Verdict::kFail;
  ratios_.push_back({what, ratio, limit, at_most, v});
  std::printf("%s %s: %.2f ns / %.2f ns = %.2fx (%s %.1fx)%s\n",
              judge ? (ok ? "PASS" : "FAIL") : "REPORTED", what, a->cpu_ns, b->cpu_ns, ratio,
              at_most ? "<=" : ">=", limit, judge ? "" : " [not judged: --no-timing-targets]");
  return Count(v);
}

Verdict TargetChecks::CounterPerArg(const char* what, const std::string& prefix,
                                    const std::string& counter, double at_most, double at_least_arg,
                                    double at_most_arg, int expected_runs) {
  int matched = 0;
  const BenchRun* worst = nullptr;
  double worst_value = 0;
  for (const BenchRun& r : runs_) {
    if (r.name.rfind(prefix, 0) != 0) continue;
    const auto it = r.counters.find(counter);
    const size_t slash = r.name.rfind('/');
    if (it == r.counters.end() || slash == std::string::npos) {
      std::printf("FAIL %s: %s reports no counter %s\n", what, r.name.c_str(), counter.c_str());
      return Count(Verdict::kFail);
    }
    const double arg = std::strtod(r.name.c_str() + slash + 1, nullptr);
    const double v = it->second;
    ++matched;
    const bool ok = v <= at_most && v >= at_least_arg * arg && v <= at_most_arg * arg;
    if (!ok && worst == nullptr) {
      worst = &r;
      worst_value = v;
    }
  }
  if (matched == 0) return Missing(what, prefix + "*");
  if (worst != nullptr) {
    std::printf("FAIL %s: %s has %s = %.3f\n", what, worst->name.c_str(), counter.c_str(),
                worst_value);
    return Count(Verdict::kFail);
  }
  if (matched != expected_runs && !NarrowedByUser()) {
    std::printf("FAIL %s: %d %s* runs, expected %d\n", what, matched, prefix.c_str(),
                expected_runs);
    return Count(Verdict::kFail);
  }
  std::printf("PASS %s (%d runs)\n", what, matched);
  return Count(Verdict::kPass);
}

bool TargetChecks::Finish() const {
  const char* verdict = fail_ > 0                         ? "FAIL"
                        : reported_ + not_evaluated_ == 0 ? "all targets met"
                                                          : "evaluated targets met";
  std::printf("%s: %s (%d passed, %d failed, %d reported, %d not evaluated)\n", command_, verdict,
              pass_, fail_, reported_, not_evaluated_);
  if (!options_.report_dir.empty()) {
    report::HtmlReport page(std::string("apicv bench ") + command_ + " report");
    page.Paragraph(std::string("Result: ") + verdict + " (" + std::to_string(pass_) + " passed, " +
                   std::to_string(fail_) + " failed, " + std::to_string(reported_) + " reported, " +
                   std::to_string(not_evaluated_) + " not evaluated). " +
                   (options_.judge_timing ? "Timing ratios were judged."
                                          : "Timing ratios were REPORTED, not judged "
                                            "(--no-timing-targets)."));
    report::BarChart r;
    r.title = std::string(command_) + ": CPU-time ratios against their targets";
    r.x_label = "target check";
    r.y_label = "ratio of CPU times (x); dashed line: the target";
    r.width = 760;
    for (const RatioRecord& rec : ratios_) {
      const char* vs = rec.verdict == Verdict::kPass       ? "PASS"
                       : rec.verdict == Verdict::kFail     ? "FAIL"
                       : rec.verdict == Verdict::kReported ? "REPORTED"
                                                           : "NOT EVALUATED";
      r.bars.push_back({rec.what, rec.ratio, rec.limit, rec.at_most, vs});
    }
    report::BarChart t;
    t.title = std::string(command_) + ": CPU time per iteration";
    t.x_label = "benchmark";
    t.y_label = "CPU time per iteration (ns)";
    t.width = 760;
    for (const BenchRun& run : runs_)
      t.bars.push_back({run.name, run.cpu_ns, std::nullopt, true, ""});
    page.Heading("Ratios against targets");
    if (ratios_.empty()) {
      page.Paragraph("NOT EVALUATED: no ratio target was measured (--filter excluded its runs).");
    } else {
      page.FigureRow({{"ratios",
                       "Each bar is one target check's ratio; the dashed line is its "
                       "target (a ceiling for \"within\", a floor for \">=\").",
                       report::BarChartSvg(r)}});
    }
    page.Heading("Runs");
    page.FigureRow({{"times", "CPU time per iteration of every run (Google Benchmark).",
                     report::BarChartSvg(t)}});
    page.Heading("IPI round trips");
    page.Paragraph(
        "NOT MEASURED by this benchmark (it times the host-side kick and routing "
        "code, not guest IPIs); `apicv bench ipi --report DIR` draws them.");
    cli::WriteFileAtomically("--report", cli::ReportIndexPath("--report", options_.report_dir),
                             page.Render());
    std::printf("wrote the report %s/index.html\n", options_.report_dir.c_str());
  }
  return fail_ == 0;
}

}  // namespace apicv::bench
