// `apicv bench inhibit`: the seed-000 contention measured on the synthetic backend. N vCPU threads
// open interrupt windows as fast as they can while PIT_REINJ keeps AVIC inhibited, once with the
// 2025 IRQ-window code (legacy: IRQWIN set/cleared under the write lock per window) and once with
// the 2026 fix (counted: read lock + atomic counter). Reports ns per window and lock/broadcast/
// kick counts per window, checks the targets of issue 4 (counted: no write lock and no broadcast
// per window; >= 10x cheaper than legacy at 16 threads) and exits 1 if one fails.
//
// ns/window = wall-clock time of the whole run / interrupt windows taken by all vCPUs, i.e. the
// inverse of the VM's window throughput; the median of --repeat runs is reported. path-ns/w = the
// time vCPUs spend inside the window path (lock waits included) per window; wait-ns/w and cont/win
// come from ApicvInhibits' contention accounting. The 16-thread ratio is only judged on a host
// with at least 16 CPUs: on fewer, the threads take turns and the lock is rarely contended.
#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "backend/synthetic/synthetic_vm.h"
#include "cli/command.h"
#include "cli/scenario.h"
#include "devices/clock.h"
#include "trace/trace_sink.h"

namespace apicv::bench {
namespace {

struct InhibitRun {
  const char* strategy = "";
  int threads = 0;
  uint64_t iterations = 0;
  uint64_t windows = 0;
  uint64_t wall_ns = 0;
  double ns_per_window = 0;
  double cpu_ns_per_window = 0;
  double path_ns_per_window = 0;  // vCPU wall time inside the window path, lock waits included
  double lock_wait_ns_per_window = 0;
  double contended = 0;    // contended lock acquisitions per window
  double write_locks = 0;  // all per window
  double read_locks = 0;
  double broadcasts = 0;
  double kicks = 0;
};

// `trace`: no sink (nullptr), or a sink that is disabled / enabled (ring only).
InhibitRun RunOnce(virt::IrqWinStrategy s, int threads, uint64_t total_iterations,
                   trace::TraceSink* trace = nullptr) {
  synthetic::SyntheticConfig c;
  c.nr_vcpus = threads;
  c.irqwin = s;
  c.pit_reinject = true;
  synthetic::SyntheticVm vm(c, trace);
  synthetic::VcpuScript script;
  script.window_every = 1;
  script.time_window_path = true;
  const uint64_t per_vcpu =
      std::max<uint64_t>(1, total_iterations / static_cast<uint64_t>(threads));
  const auto st = vm.run_threads(per_vcpu, script);
  InhibitRun r;
  r.strategy = s == virt::IrqWinStrategy::kLegacy ? "legacy" : "counted";
  r.threads = threads;
  r.iterations = st.iterations;
  r.windows = st.windows;
  r.wall_ns = st.wall_ns;
  const double w = st.windows ? static_cast<double>(st.windows) : 1.0;
  r.ns_per_window = static_cast<double>(st.wall_ns) / w;
  r.cpu_ns_per_window = static_cast<double>(st.cpu_ns) / w;
  r.path_ns_per_window = static_cast<double>(st.window_path_ns) / w;
  r.lock_wait_ns_per_window = static_cast<double>(st.inhibit.lock_wait_ns) / w;
  r.contended = static_cast<double>(st.inhibit.write_contended + st.inhibit.read_contended) / w;
  r.write_locks = static_cast<double>(st.inhibit.write_locks) / w;
  r.read_locks = static_cast<double>(st.inhibit.read_locks) / w;
  r.broadcasts = static_cast<double>(st.inhibit.broadcasts) / w;
  r.kicks = static_cast<double>(st.inhibit.kicks) / w;
  return r;
}

InhibitRun RunMedian(virt::IrqWinStrategy s, int threads, uint64_t iterations, int repeat,
                     trace::TraceSink* trace = nullptr) {
  std::vector<InhibitRun> runs;
  for (int i = 0; i < repeat; ++i) runs.push_back(RunOnce(s, threads, iterations, trace));
  std::sort(runs.begin(), runs.end(), [](const InhibitRun& a, const InhibitRun& b) {
    return a.ns_per_window < b.ns_per_window;
  });
  return runs[runs.size() / 2];
}

struct Check {
  std::string name;
  double value;
  std::string target;
  bool pass;
  // Empty when evaluated; otherwise why the host cannot evaluate the target (pass is ignored).
  std::string not_evaluated;
};

void WriteJson(const std::string& path, const std::vector<InhibitRun>& runs,
               const std::vector<Check>& checks, const std::vector<double>& trace_info,
               uint64_t iterations, int repeat) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("bench inhibit: cannot write " + path);
  std::fprintf(f, "{\n  \"benchmark\": \"inhibit\",\n");
  std::fprintf(f, "  \"host_cpus\": %u,\n  \"iterations_per_run\": %llu,\n  \"repeat\": %d,\n",
               std::thread::hardware_concurrency(), static_cast<unsigned long long>(iterations),
               repeat);
  std::fprintf(f, "  \"ns_per_window\": \"wall-clock ns of the run / windows taken (median)\",\n");
  std::fprintf(f, "  \"cpu_ns_per_window\": \"CPU ns of all vCPU threads / windows taken\",\n");
  std::fprintf(f,
               "  \"path_ns_per_window\": \"vCPU wall ns inside the IRQ-window path (enable, "
               "window exit, inject), lock waits included, summed over vCPUs / windows\",\n");
  std::fprintf(f, "  \"runs\": [\n");
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    std::fprintf(f,
                 "    {\"strategy\": \"%s\", \"threads\": %d, \"iterations\": %llu, \"windows\": "
                 "%llu, \"wall_ns\": %llu, \"ns_per_window\": %.1f, \"cpu_ns_per_window\": %.1f, "
                 "\"path_ns_per_window\": %.1f, \"lock_wait_ns_per_window\": %.1f, "
                 "\"contended_per_window\": %.4f, \"write_locks_per_window\": "
                 "%.4f, \"read_locks_per_window\": %.4f, \"broadcasts_per_window\": %.4f, "
                 "\"kicks_per_window\": %.4f}%s\n",
                 r.strategy, r.threads, static_cast<unsigned long long>(r.iterations),
                 static_cast<unsigned long long>(r.windows),
                 static_cast<unsigned long long>(r.wall_ns), r.ns_per_window, r.cpu_ns_per_window,
                 r.path_ns_per_window, r.lock_wait_ns_per_window, r.contended, r.write_locks,
                 r.read_locks, r.broadcasts, r.kicks, i + 1 < runs.size() ? "," : "");
  }
  std::fprintf(f, "  ],\n");
  if (trace_info.size() == 3) {
    std::fprintf(
        f,
        "  \"trace_cost_legacy_2t_ns_per_window\": {\"no_sink\": %.1f, \"disabled\": %.1f, "
        "\"enabled_ring\": %.1f},\n",
        trace_info[0], trace_info[1], trace_info[2]);
  }
  std::fprintf(f, "  \"checks\": [\n");
  for (size_t i = 0; i < checks.size(); ++i) {
    const auto& c = checks[i];
    if (!c.not_evaluated.empty()) {
      std::fprintf(f,
                   "    {\"name\": \"%s\", \"value\": %.4f, \"target\": \"%s\", \"pass\": null, "
                   "\"not_evaluated\": \"%s\"}%s\n",
                   c.name.c_str(), c.value, c.target.c_str(), c.not_evaluated.c_str(),
                   i + 1 < checks.size() ? "," : "");
      continue;
    }
    std::fprintf(f, "    {\"name\": \"%s\", \"value\": %.4f, \"target\": \"%s\", \"pass\": %s}%s\n",
                 c.name.c_str(), c.value, c.target.c_str(), c.pass ? "true" : "false",
                 i + 1 < checks.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

struct Options {
  std::string json;
  uint64_t iterations = 200000;
  int repeat = 3;
  std::vector<int> threads = {2, 4, 16, 64};
  bool judge_timing = true;
};

void Run(const Options& o) {
  if (!o.json.empty()) cli::CheckWritable("--json", o.json);  // before any benchmark runs
  if (o.repeat < 1 || o.repeat > 100)
    throw cli::UsageError("bench inhibit: --repeat must be 1..100");
  if (o.iterations < 100 || o.iterations > 100000000)
    throw cli::UsageError("bench inhibit: --iterations must be 100..100000000");
  for (int t : o.threads) {
    if (t < 1 || t > 1024) throw cli::UsageError("bench inhibit: --threads values must be 1..1024");
  }
  std::vector<InhibitRun> runs;
  std::vector<double> trace_info;
  std::printf("%-8s %7s %9s %10s %10s %10s %10s %9s %9s %9s %9s %9s\n", "strategy", "threads",
              "windows", "ns/window", "cpu-ns/win", "path-ns/w", "wait-ns/w", "cont/win",
              "wlock/win", "rlock/win", "bcast/win", "kicks/win");
  for (auto s : {virt::IrqWinStrategy::kLegacy, virt::IrqWinStrategy::kCounted}) {
    for (int t : o.threads) {
      InhibitRun r = RunMedian(s, t, o.iterations, o.repeat);
      std::printf("%-8s %7d %9llu %10.1f %10.1f %10.1f %10.1f %9.4f %9.4f %9.4f %9.4f %9.4f\n",
                  r.strategy, r.threads, static_cast<unsigned long long>(r.windows),
                  r.ns_per_window, r.cpu_ns_per_window, r.path_ns_per_window,
                  r.lock_wait_ns_per_window, r.contended, r.write_locks, r.read_locks, r.broadcasts,
                  r.kicks);
      std::fflush(stdout);
      runs.push_back(r);
    }
  }

  std::vector<Check> checks;
  const InhibitRun* legacy16 = nullptr;
  const InhibitRun* counted16 = nullptr;
  for (const auto& r : runs) {
    if (std::string(r.strategy) == "counted") {
      checks.push_back({"counted_" + std::to_string(r.threads) + "t_write_locks_per_window",
                        r.write_locks, "== 0", r.write_locks == 0, ""});
      checks.push_back({"counted_" + std::to_string(r.threads) + "t_broadcasts_per_window",
                        r.broadcasts, "== 0", r.broadcasts == 0, ""});
      if (r.threads == 16) counted16 = &r;
    } else if (r.threads == 16) {
      legacy16 = &r;
    }
  }
  if (legacy16 && counted16) {
    const double ratio = legacy16->ns_per_window / std::max(counted16->ns_per_window, 1e-9);
    // The target is about 16 vCPUs contending in parallel; with fewer host CPUs most of the 16
    // threads are descheduled at any moment and the lock is rarely contended, so the wall-clock
    // ratio is bounded by the host, not by the strategy. Reported, but only judged on a host
    // that can run all 16 at once.
    const unsigned cpus = std::thread::hardware_concurrency();
    Check c{"legacy_over_counted_ns_per_window_16t", ratio, ">= 10", ratio >= 10.0, ""};
    if (cpus < 16) {
      c.not_evaluated = "needs >= 16 host CPUs to run 16 vCPU threads in parallel; this host has " +
                        std::to_string(cpus);
    } else if (!o.judge_timing) {
      c.not_evaluated = "--no-timing-targets";
    }
    checks.push_back(c);
    const double path_ratio =
        legacy16->path_ns_per_window / std::max(counted16->path_ns_per_window, 1e-9);
    checks.push_back(
        {"legacy_over_counted_vcpu_path_ns_per_window_16t", path_ratio, "reported", true, ""});
  } else {
    checks.push_back({"legacy_over_counted_ns_per_window_16t", 0, ">= 10", false,
                      "--threads does not include 16"});
  }
  // Tracepoint cost: legacy emits two kvm_apicv_inhibit_changed events per window. Informational
  // (this host is shared and noisy): a disabled sink should cost about the same as no sink.
  {
    MonotonicClock clock;
    trace::TraceSink sink(clock);
    sink.set_ring_capacity(64);
    sink.set_enabled(false);
    const InhibitRun none = RunMedian(virt::IrqWinStrategy::kLegacy, 2, o.iterations, o.repeat);
    const InhibitRun off =
        RunMedian(virt::IrqWinStrategy::kLegacy, 2, o.iterations, o.repeat, &sink);
    sink.set_enabled(true);
    const InhibitRun on =
        RunMedian(virt::IrqWinStrategy::kLegacy, 2, o.iterations, o.repeat, &sink);
    std::printf(
        "\ntrace cost, legacy 2 threads (2 events/window): no sink %.1f ns/window, "
        "disabled %.1f, enabled (ring) %.1f\n",
        none.ns_per_window, off.ns_per_window, on.ns_per_window);
    trace_info = {none.ns_per_window, off.ns_per_window, on.ns_per_window};
  }

  bool ok = true;
  std::printf("\n");
  for (const auto& c : checks) {
    if (c.target == "reported") {
      std::printf("%-48s %12.4f  (reported, not judged)\n", c.name.c_str(), c.value);
      continue;
    }
    if (!c.not_evaluated.empty()) {
      std::printf("%-48s %12.4f  target %-6s NOT EVALUATED (%s)\n", c.name.c_str(), c.value,
                  c.target.c_str(), c.not_evaluated.c_str());
      continue;
    }
    std::printf("%-48s %12.4f  target %-6s %s\n", c.name.c_str(), c.value, c.target.c_str(),
                c.pass ? "PASS" : "FAIL");
    ok = ok && c.pass;
  }
  if (!o.json.empty()) WriteJson(o.json, runs, checks, trace_info, o.iterations, o.repeat);
  int not_evaluated = 0;
  for (const auto& c : checks) not_evaluated += c.not_evaluated.empty() ? 0 : 1;
  if (!ok) {
    std::printf("inhibit: FAIL\n");
  } else if (not_evaluated > 0) {
    std::printf("inhibit: evaluated targets met; %d target(s) NOT EVALUATED on this host (above)\n",
                not_evaluated);
  } else {
    std::printf("inhibit: all targets met\n");
  }
  if (!ok) cli::SetExitStatus(1);
}

cli::CommandRegistration reg("bench", [](CLI::App& bench) {
  auto opts = std::make_shared<Options>();
  auto* cmd = bench.add_subcommand(
      "inhibit", "IRQ-window inhibit contention, legacy vs counted (synthetic vCPU threads)");
  cmd->add_option("--json", opts->json, "Write the results as JSON to FILE");
  cmd->add_option("--iterations", opts->iterations, "vCPU run-loop iterations per run (all vCPUs)");
  cmd->add_option("--repeat", opts->repeat, "Runs per configuration; the median is reported");
  cmd->add_option("--threads", opts->threads, "vCPU thread counts")->delimiter(',');
  cmd->add_flag("!--no-timing-targets", opts->judge_timing,
                "Print timing ratios without judging them; lock and broadcast counts still "
                "decide the exit status");
  cmd->callback([opts] { Run(*opts); });
});

}  // namespace
}  // namespace apicv::bench
