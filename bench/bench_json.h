// Shared runner for `apicv bench <name>`: runs the Google Benchmark cases registered in this
// binary that match a filter, prints the console table, optionally writes Google Benchmark's JSON
// to a file, and hands the measured runs back so a command can check its targets.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

namespace apicv::bench {

struct BenchOptions {
  std::string filter = ".";  // regex over benchmark names (--benchmark_filter)
  double min_time_s = 0.2;   // per-benchmark minimum run time (--benchmark_min_time)
  std::string json_path;     // empty: no JSON file
  // Timing ratios decide the exit status only when true. CTest runs the benchmarks with
  // --no-timing-targets on shared, noisy machines: the structural checks (counters that do not
  // depend on time) still decide, the ratios are printed as REPORTED.
  bool judge_timing = true;
  // --report DIR (benchmarks with ratio targets): DIR/index.html with the ratios against their
  // targets and the time per run (docs/report.md).
  std::string report_dir;
};

struct BenchRun {
  std::string name;
  double real_ns = 0;  // per iteration, nanoseconds
  double cpu_ns = 0;
  long long iterations = 0;
  std::map<std::string, double> counters;
};

// Adds `--json FILE`, `--min-time S`, `--filter RE` and `--no-timing-targets` to a bench
// subcommand.
void AddBenchOptions(CLI::App* cmd, BenchOptions* options);

// Adds `--report DIR` (for commands that check ratio targets with TargetChecks).
void AddReportOption(CLI::App* cmd, BenchOptions* options);

// Runs the matching benchmarks once per process (Google Benchmark keeps global flag state).
// Throws std::runtime_error when nothing matched or a benchmark reported an error.
std::vector<BenchRun> RunBenchmarks(const BenchOptions& options);

// The run named exactly `name`, or nullptr.
const BenchRun* FindRun(const std::vector<BenchRun>& runs, const std::string& name);

// The verdict of one target check. A target that was not measured is NOT EVALUATED with its
// reason, never a pass; a timing ratio measured under --no-timing-targets is REPORTED.
enum class Verdict { kPass, kFail, kReported, kNotEvaluated };

// The checks of one bench command, counted for its last line.
class TargetChecks {
 public:
  // `options` tells a run the user's --filter excluded (NOT EVALUATED) from one the command's own
  // filter should have produced (FAIL).
  TargetChecks(const char* command, const std::vector<BenchRun>& runs, const BenchOptions& options,
               std::string default_filter);

  // "PASS|FAIL|REPORTED what: a / b = ratio" comparing the CPU time of run `num` to run `den`
  // (ratio <= limit when at_most, else >= limit); REPORTED when timing is not judged.
  Verdict Ratio(const char* what, const std::string& num, const std::string& den, double limit,
                bool at_most);

  // Structural check on a counter every run whose name starts with `prefix` reports: value <=
  // at_most, >= at_least_arg * N and <= at_most_arg * N where N is the run's last "/N" argument.
  // Prints PASS/FAIL with the worst run and the number of runs checked, which must be
  // `expected_runs` (every size registered) unless the user's --filter narrowed them.
  Verdict CounterPerArg(const char* what, const std::string& prefix, const std::string& counter,
                        double at_most, double at_least_arg, double at_most_arg, int expected_runs);

  // Prints "<command>: all targets met|evaluated targets met|FAIL (P passed, F failed, R reported,
  // N not evaluated)" and returns true when no check failed.
  // With --report, also writes the report page.
  bool Finish() const;

 private:
  bool NarrowedByUser() const { return options_.filter != default_filter_; }
  Verdict Count(Verdict v);
  Verdict Missing(const char* what, const std::string& missing);

  const char* command_;
  const std::vector<BenchRun>& runs_;
  const BenchOptions& options_;
  std::string default_filter_;
  int pass_ = 0, fail_ = 0, reported_ = 0, not_evaluated_ = 0;
  struct RatioRecord {
    std::string what;
    double ratio;
    double limit;
    bool at_most;
    Verdict verdict;
  };
  std::vector<RatioRecord> ratios_;
};

}  // namespace apicv::bench
