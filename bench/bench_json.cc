// Google Benchmark driver behind `apicv bench <name>`.
#include "bench_json.h"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

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

std::vector<BenchRun> RunBenchmarks(const BenchOptions& options) {
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

bool CheckRatio(const std::vector<BenchRun>& runs, const char* what, const std::string& num,
                const std::string& den, double limit, bool at_most, bool judge) {
  const BenchRun* a = FindRun(runs, num);
  const BenchRun* b = FindRun(runs, den);
  if (a == nullptr || b == nullptr || b->cpu_ns <= 0) {
    std::printf("SKIP %s (needs %s and %s)\n", what, num.c_str(), den.c_str());
    return true;
  }
  const double ratio = a->cpu_ns / b->cpu_ns;
  const bool ok = at_most ? ratio <= limit : ratio >= limit;
  std::printf("%s %s: %.2f ns / %.2f ns = %.2fx (%s %.1fx)%s\n",
              judge ? (ok ? "PASS" : "FAIL") : "REPORTED", what, a->cpu_ns, b->cpu_ns, ratio,
              at_most ? "<=" : ">=", limit, judge ? "" : " [not judged: --no-timing-targets]");
  return ok || !judge;
}

bool CheckCounterPerArg(const std::vector<BenchRun>& runs, const char* what,
                        const std::string& prefix, const std::string& counter, double at_most,
                        double at_least_arg, double at_most_arg) {
  int matched = 0;
  const BenchRun* worst = nullptr;
  double worst_value = 0;
  for (const BenchRun& r : runs) {
    if (r.name.rfind(prefix, 0) != 0) continue;
    const auto it = r.counters.find(counter);
    const size_t slash = r.name.rfind('/');
    if (it == r.counters.end() || slash == std::string::npos) continue;
    const double arg = std::strtod(r.name.c_str() + slash + 1, nullptr);
    const double v = it->second;
    ++matched;
    const bool ok = v <= at_most && v >= at_least_arg * arg && v <= at_most_arg * arg;
    if (!ok && worst == nullptr) {
      worst = &r;
      worst_value = v;
    }
  }
  if (matched == 0) {
    std::printf("FAIL %s: no %s* run reported counter %s\n", what, prefix.c_str(), counter.c_str());
    return false;
  }
  if (worst != nullptr) {
    std::printf("FAIL %s: %s has %s = %.3f\n", what, worst->name.c_str(), counter.c_str(),
                worst_value);
    return false;
  }
  std::printf("PASS %s (%d runs)\n", what, matched);
  return true;
}

}  // namespace apicv::bench
