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

// Runs the matching benchmarks once per process (Google Benchmark keeps global flag state).
// Throws std::runtime_error when nothing matched or a benchmark reported an error.
std::vector<BenchRun> RunBenchmarks(const BenchOptions& options);

// The run named exactly `name`, or nullptr.
const BenchRun* FindRun(const std::vector<BenchRun>& runs, const std::string& name);

// Prints one target check "PASS|FAIL what: a / b = ratio" comparing the CPU time of run `num` to
// run `den` (ratio <= limit when at_most, else >= limit); returns false on FAIL. A run that was
// filtered out makes the check SKIP (true). With judge false the ratio is printed as REPORTED and
// the check returns true.
bool CheckRatio(const std::vector<BenchRun>& runs, const char* what, const std::string& num,
                const std::string& den, double limit, bool at_most, bool judge = true);

// Structural check on a counter every run whose name starts with `prefix` reports: value <= limit
// (or, when limit_is_arg, value <= the run's last "/N" argument times `limit`) and value >=
// `at_least_arg` times that argument. Prints PASS/FAIL with the worst run; false on FAIL or when
// no run matched.
bool CheckCounterPerArg(const std::vector<BenchRun>& runs, const char* what,
                        const std::string& prefix, const std::string& counter, double at_most,
                        double at_least_arg, double at_most_arg);

}  // namespace apicv::bench
