// `apicv bench route`: cost of one APIC routing decision (spec §6.6) with the ApicMap fast path
// and with the slow matcher, for 1-1024 vCPUs in physical, xAPIC flat/cluster and x2APIC logical
// modes; a 256-bit highest-IRR search; ApicMap rebuild at 1024 vCPUs.
// The highest-IRR search is a local 8x32-bit bitmap scan, the shape the LAPIC's IRR has; the
// LAPIC's own implementation is measured by its own benchmark.
#include <benchmark/benchmark.h>

#include <bit>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "apic_topology.h"
#include "bench_json.h"
#include "cli/command.h"
#include "irq/apic_bus.h"

namespace apicv::bench {
namespace {

using irq::ApicMap;
using irq::ApicView;
using irq::TargetList;
using x86::InterruptRequest;

using Mode = ApicTopology;

// One single-target request per vCPU, so the benchmark walks every destination.
std::vector<InterruptRequest> MakeRequests(Mode mode, const std::vector<ApicView>& v) {
  std::vector<InterruptRequest> reqs;
  for (const ApicView& a : v) {
    InterruptRequest r;
    r.vector = 0x40;
    r.from_ipi = true;
    r.source_vcpu = 0;
    r.source_x2apic = v[0].x2apic;
    r.dest_logical = mode != Mode::kPhysical;
    switch (mode) {
      case Mode::kPhysical:
        r.dest_id = a.vcpu_id;
        break;
      case Mode::kFlat:
      case Mode::kCluster:
        r.dest_id = a.ldr >> 24;
        break;
      case Mode::kX2ApicLogical:
        r.dest_id = a.effective_ldr();
        break;
    }
    reqs.push_back(r);
  }
  return reqs;
}

void RouteBench(benchmark::State& state, Mode mode, bool fast) {
  const int n = static_cast<int>(state.range(0));
  const std::vector<ApicView> v = MakeApicViews(mode, n);
  const std::vector<InterruptRequest> reqs = MakeRequests(mode, v);
  const ApicMap map(v);
  TargetList out;
  out.reserve(v.size());
  size_t i = 0;
  long long delivered = 0, examined = 0;
  for (auto _ : state) {
    irq::Route(reqs[i], fast ? &map : nullptr, v, {}, out);
    delivered += static_cast<long long>(out.size());
    examined += out.examined;
    benchmark::DoNotOptimize(out.targets().data());
    if (++i == reqs.size()) i = 0;
  }
  if (delivered != static_cast<long long>(state.iterations())) {
    state.SkipWithError("routing did not find exactly one target per request");
    return;
  }
  // What the routing code reports it looked at (TargetList::examined), for the structural check.
  state.counters["examined_per_delivery"] =
      static_cast<double>(examined) / static_cast<double>(state.iterations());
}

// Highest set bit of a 256-bit IRR laid out as eight 32-bit registers (SDM 11.8.4).
int HighestIrr(const uint32_t (&irr)[8]) {
  for (int w = 7; w >= 0; --w) {
    if (irr[w] != 0) return w * 32 + 31 - std::countl_zero(irr[w]);
  }
  return -1;
}

void HighestIrrBench(benchmark::State& state) {
  std::mt19937 rng(1);
  std::vector<std::array<uint32_t, 8>> bitmaps(256);
  for (auto& b : bitmaps) {
    b.fill(0);
    const int bits = 1 + static_cast<int>(rng() % 3);  // a few pending vectors, anywhere
    for (int k = 0; k < bits; ++k) {
      const uint32_t vec = 16 + rng() % 240;
      b[vec / 32] |= 1u << (vec % 32);
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    uint32_t irr[8];
    for (int w = 0; w < 8; ++w) irr[w] = bitmaps[i][static_cast<size_t>(w)];
    benchmark::DoNotOptimize(HighestIrr(irr));
    i = (i + 1) & 255;
  }
}

void RebuildBench(benchmark::State& state, Mode mode) {
  const std::vector<ApicView> v = MakeApicViews(mode, static_cast<int>(state.range(0)));
  ApicMap map(v);
  for (auto _ : state) {
    map.Rebuild(v);
    benchmark::DoNotOptimize(map.valid());
  }
}

// Route runs registered per path (fast or slow): one per topology and size.
int g_runs_per_path = 0;

const int kRegistered = [] {
  struct Case {
    const char* name;
    Mode mode;
    std::vector<int> sizes;
  };
  const Case cases[] = {{"physical", Mode::kPhysical, {1, 16, 256, 1024}},
                        {"xapic_flat", Mode::kFlat, {1, 8}},
                        {"xapic_cluster", Mode::kCluster, {1, 16, 60}},
                        {"x2apic_logical", Mode::kX2ApicLogical, {1, 16, 256, 1024}}};
  for (const Case& c : cases) {
    for (bool fast : {true, false}) {
      const std::string name = std::string("route/") + (fast ? "fast/" : "slow/") + c.name;
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [mode = c.mode, fast](benchmark::State& s) { RouteBench(s, mode, fast); });
      for (int n : c.sizes) b->Arg(n);
    }
    g_runs_per_path += static_cast<int>(c.sizes.size());
  }
  benchmark::RegisterBenchmark("route/highest_irr", HighestIrrBench);
  benchmark::RegisterBenchmark("route/map_rebuild/x2apic", [](benchmark::State& s) {
    RebuildBench(s, Mode::kPhysical);
  })->Arg(1024);
  benchmark::RegisterBenchmark("route/map_rebuild/xapic_cluster", [](benchmark::State& s) {
    RebuildBench(s, Mode::kCluster);
  })->Arg(60);
  return 0;
}();

constexpr const char* kRouteFilter = "^route/";

cli::CommandRegistration reg("bench", [](CLI::App& bench) {
  static BenchOptions storage;  // outlives the CLI tree
  BenchOptions* options = &storage;
  options->filter = kRouteFilter;
  auto* cmd = bench.add_subcommand(
      "route", "APIC routing cost per delivery: fast path vs slow matcher, 1-1024 vCPUs");
  AddBenchOptions(cmd, options);
  AddReportOption(cmd, options);
  cmd->callback([options] {
    const std::vector<BenchRun> runs = RunBenchmarks(*options);
    TargetChecks checks("route", runs, *options, kRouteFilter);
    // Time-independent: the fast path answers from one ApicMap slot at every size (a single
    // destination bit), the slow matcher looks at every vCPU.
    checks.CounterPerArg("fast path examines 1 APIC entry per delivery at every size",
                         "route/fast/", "examined_per_delivery", 1.0, 0.0, 1e9, g_runs_per_path);
    checks.CounterPerArg("slow matcher examines every vCPU per delivery", "route/slow/",
                         "examined_per_delivery", 1e9, 1.0, 1.0, g_runs_per_path);
    checks.Ratio("fast path 1024 vCPUs within 1.5x of 1 vCPU", "route/fast/physical/1024",
                 "route/fast/physical/1", 1.5, true);
    checks.Ratio("slow matcher >= 50x fast path at 1024 vCPUs", "route/slow/physical/1024",
                 "route/fast/physical/1024", 50.0, false);
    if (!checks.Finish()) cli::SetExitStatus(1);
  });
});

}  // namespace
}  // namespace apicv::bench
