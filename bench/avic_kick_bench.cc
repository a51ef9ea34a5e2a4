// `apicv bench avic-kick`: cost of KVM's AVIC incomplete-IPI handling (cause TARGET_NOT_RUNNING,
// spec §7.2/§7.3, seed 003) with the current avic_kick_target_vcpus_fast and with the
// kvm_for_each_vcpu + kvm_apic_match_dest walk (--avic-kick slow), for 1-1024 vCPUs with physical
// (x2APIC IDs) and x2APIC logical destinations, plus xAPIC cluster up to its 60-vCPU limit.
// Each iteration handles one exit for a single not-running target; the target rotates over all
// vCPUs. The Vm side (AvicVcpuOps) is a counter: this measures the handler, not the host wakeup.
// Topologies above 512 vCPUs use the x2AVIC 4K table size (AvicTableMode::kX2AvicExt).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "apic_topology.h"
#include "bench_json.h"
#include "cli/command.h"
#include "virt/avic.h"

namespace apicv::bench {
namespace {

using irq::ApicView;
using virt::Avic;
using virt::AvicKickMode;
using virt::AvicTableMode;

using Mode = ApicTopology;  // physical, x2APIC logical and xAPIC cluster are measured

// Kicks only count: no allocation, no locks, so the handler dominates.
struct CountingOps final : virt::AvicVcpuOps {
  explicit CountingOps(std::vector<ApicView> v) : views(std::move(v)) {}
  void set_irr(int, uint8_t) override { ++irr; }
  void ring_doorbell(int) override { ++doorbells; }
  void wake(int) override { ++wakes; }
  void request_event_and_kick(int) override { ++events; }
  bool in_guest_mode(int) override { return false; }
  bool apicv_active(int) override { return true; }
  const ApicView& view(int vcpu) override { return views[static_cast<size_t>(vcpu)]; }
  std::vector<ApicView> views;
  long long irr = 0, doorbells = 0, wakes = 0, events = 0;
};

struct Exit {
  uint32_t icrl, icrh, index;
};

void KickBench(benchmark::State& state, Mode mode, AvicKickMode kick) {
  const int n = static_cast<int>(state.range(0));
  CountingOps ops(MakeApicViews(mode, n));
  const AvicTableMode table = n > 512 ? AvicTableMode::kX2AvicExt : AvicTableMode::kX2Avic;
  Avic avic({.table = table, .kick = kick}, n);
  for (int i = 0; i < n; ++i) avic.init_vcpu(i, static_cast<uint32_t>(i));
  avic.rebuild_logical_table(ops.views);
  // The exits the hardware produces for a fixed IPI from vCPU 0 to each (not running) vCPU.
  std::vector<Exit> exits;
  for (int t = 0; t < n; ++t) {
    const uint32_t id = static_cast<uint32_t>(t);
    uint32_t icrl = 0x40, icrh = 0;
    switch (mode) {
      case Mode::kPhysical:
        icrh = id;
        break;
      case Mode::kX2ApicLogical:
        icrl |= x86::kIcrDestLogical;
        icrh = x86::X2ApicLdr(id);
        break;
      case Mode::kFlat:
      case Mode::kCluster:
        icrl |= x86::kIcrDestLogical;
        icrh = ops.views[static_cast<size_t>(t)].ldr;  // LDR[31:24] sits where ICR2 dest does
        break;
    }
    const bool x2apic = mode == Mode::kPhysical || mode == Mode::kX2ApicLogical;
    const auto r = avic.handle_icr_write(0, icrl, icrh, x2apic, ops);
    // vCPU 0 is the sender and sees no exit for its own IPI; its exit is synthesised with the
    // index the hardware would report, so a 1-vCPU VM still has one exit to handle.
    if (!r.exit && t != 0) {
      state.SkipWithError("expected a TARGET_NOT_RUNNING exit");
      return;
    }
    exits.push_back({icrl, icrh, r.exit ? r.index : id});
  }
  avic.reset_stats();
  const long long kicks_before = ops.wakes;
  size_t i = 0;
  for (auto _ : state) {
    const Exit& e = exits[i];
    avic.avic_incomplete_ipi_interception(0, e.icrl, e.icrh, 1, e.index, ops);
    if (++i == exits.size()) i = 0;
  }
  const long long kicked = ops.wakes - kicks_before;
  if (kicked != static_cast<long long>(state.iterations())) {
    state.SkipWithError("each exit must kick exactly one vCPU");
    return;
  }
  const virt::AvicStats s = avic.stats();
  state.counters["examined_per_exit"] =
      static_cast<double>(s.vcpus_examined) / static_cast<double>(state.iterations());
  state.counters["fast_hits"] = static_cast<double>(s.fast_hits);
}

// Kick runs registered per path (fast or slow): one per topology and size.
int g_runs_per_path = 0;

const int kRegistered = [] {
  struct Case {
    const char* name;
    Mode mode;
    std::vector<int> sizes;
  };
  const Case cases[] = {
      {"physical", Mode::kPhysical, {1, 2, 4, 16, 64, 256, 288, 1024}},
      {"x2apic_logical", Mode::kX2ApicLogical, {1, 2, 4, 16, 64, 256, 288, 1024}},
      {"xapic_cluster", Mode::kCluster, {1, 2, 4, 16, 60}},
  };
  for (const Case& c : cases) {
    for (AvicKickMode kick : {AvicKickMode::kFast, AvicKickMode::kSlow}) {
      const std::string name =
          std::string("avic_kick/") + (kick == AvicKickMode::kFast ? "fast/" : "slow/") + c.name;
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [mode = c.mode, kick](benchmark::State& s) { KickBench(s, mode, kick); });
      for (int n : c.sizes) b->Arg(n);
    }
    g_runs_per_path += static_cast<int>(c.sizes.size());
  }
  return 0;
}();

constexpr const char* kKickFilter = "^avic_kick/";

cli::CommandRegistration reg("bench", [](CLI::App& bench) {
  static BenchOptions storage;  // outlives the CLI tree
  storage.filter = kKickFilter;
  BenchOptions* options = &storage;
  auto* cmd = bench.add_subcommand(
      "avic-kick",
      "AVIC incomplete-IPI (TARGET_NOT_RUNNING) handling: fast vs slow kick, 1-1024 vCPUs");
  AddBenchOptions(cmd, options);
  AddReportOption(cmd, options);
  cmd->callback([options] {
    const std::vector<BenchRun> runs = RunBenchmarks(*options);
    TargetChecks checks("avic-kick", runs, *options, kKickFilter);
    // Time-independent: the fast path looks at the one vCPU the exit's table index names; the
    // slow path matches the destination against every vCPU of the VM.
    checks.CounterPerArg("fast kick examines 1 vCPU per exit at every size", "avic_kick/fast/",
                         "examined_per_exit", 1.0, 0.0, 1e9, g_runs_per_path);
    checks.CounterPerArg("slow kick examines every vCPU per exit", "avic_kick/slow/",
                         "examined_per_exit", 1e9, 1.0, 1.0, g_runs_per_path);
    checks.Ratio("fast physical 1024 vCPUs within 1.5x of 1 vCPU", "avic_kick/fast/physical/1024",
                 "avic_kick/fast/physical/1", 1.5, true);
    checks.Ratio("fast x2APIC logical 1024 vCPUs within 1.5x of 1 vCPU",
                 "avic_kick/fast/x2apic_logical/1024", "avic_kick/fast/x2apic_logical/1", 1.5,
                 true);
    checks.Ratio("slow >= 50x fast at 1024 vCPUs (physical)", "avic_kick/slow/physical/1024",
                 "avic_kick/fast/physical/1024", 50.0, false);
    checks.Ratio("slow >= 50x fast at 1024 vCPUs (x2APIC logical)",
                 "avic_kick/slow/x2apic_logical/1024", "avic_kick/fast/x2apic_logical/1024", 50.0,
                 false);
    if (!checks.Finish()) cli::SetExitStatus(1);
  });
});

}  // namespace
}  // namespace apicv::bench
