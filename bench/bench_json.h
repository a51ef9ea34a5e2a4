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
};

struct BenchRun {
  std::string name;
  double real_ns = 0;  // per iteration, nanoseconds
  double cpu_ns = 0;
  long long iterations = 0;
  std::map<std::string, double> counters;
};

// Adds `--json FILE` and `--min-time S` to a bench subcommand.
void AddBenchOptions(CLI::App* cmd, BenchOptions* options);

// Runs the matching benchmarks once per process (Google Benchmark keeps global flag state).
// Throws std::runtime_error when nothing matched or a benchmark reported an error.
std::vector<BenchRun> RunBenchmarks(const BenchOptions& options);

// The run named exactly `name`, or nullptr.
const BenchRun* FindRun(const std::vector<BenchRun>& runs, const std::string& name);

// Prints one target check "PASS|FAIL what: a / b = ratio" comparing the CPU time of run `num` to
// run `den` (ratio <= limit when at_most, else >= limit); returns false on FAIL. A run that was
// filtered out makes the check SKIP (true).
bool CheckRatio(const std::vector<BenchRun>& runs, const char* what, const std::string& num,
                const std::string& den, double limit, bool at_most);

}  // namespace apicv::bench
