// `apicv repro seed-000|seed-002|seed-003|seed-004|all`: the seed scenarios on real guests with
// apicv's irqchip, each configuration checked against what the seeds and the spec say KVM prints.
// Exit status 0 when every expectation holds, 1 otherwise, 77 for --accel kvm without /dev/kvm,
// 2 bad options. Real guests run on --accel kvm|emu (default: kvm when /dev/kvm opens, else emu,
// apicv's software CPU, docs/emu.md). --backend synthetic runs seed-002 on a scripted guest
// instead (backend/synthetic/pmu_script.h, the pmu guest's exits scripted against the same
// ApicvVm).
// Every check reads the InhibitSummary folded while the trace streamed (scenario.h), never a
// bounded ring; --keep-lines only limits the full lines kept for display. --seed003-budget S lets
// seed-003 skip sizes above 16 vCPUs after a slow pair (each skip a row in the table and --json);
// by default every size runs and that is an expectation.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "backend/synthetic/pmu_script.h"
#include "cli/atomic_output.h"
#include "cli/command.h"
#include "cli/scenario.h"
#include "report/html_report.h"
#include "report/svg_chart.h"
#include "trace/inhibit_trace_parser.h"
#include "x86/inhibit_reason.h"

namespace apicv::cli {
namespace {

using virt::InhibitReason;

using Check = ScenarioCheck;

struct Figures {
  double inhibit_lines_per_s = 0;
  uint64_t write_locks = 0;         // during the run (after VM creation)
  uint64_t irqwin_write_locks = 0;  // of those, taken for IRQWIN alone
  uint64_t broadcasts = 0;
  uint64_t irqwin_broadcasts = 0;  // by IRQWIN-only updates once PIT_REINJ is set
  uint64_t irqwin_updates = 0;     // IRQWIN updates of their own once PIT_REINJ is set
  uint64_t kicks = 0;
  uint64_t windows = 0;
  uint64_t window_exits = 0;
  double progress_per_s = 0;    // guest-reported ticks/s, IPIs/s, cpus/s
  bool progress_known = false;  // the guest reported a rate (else the table says "n/a")
  std::string progress_unit;
  // seed 003 (AVIC): incomplete-IPI exits and the kicks that handle them.
  uint64_t ipis = 0;
  uint64_t avic_accelerated = 0;
  uint64_t avic_incomplete = 0;
  uint64_t avic_not_running = 0;  // cause TARGET_NOT_RUNNING
  uint64_t avic_fast_hits = 0;
  uint64_t avic_slow_kicks = 0;
  uint64_t avic_examined = 0;
  double examined_per_fast_kick = 0;  // vCPUs looked at by the fast path per exit it handled
  double examined_per_kick = 0;       // all vCPUs looked at per TARGET_NOT_RUNNING exit
};

struct Outcome {
  Scenario s;
  Figures f;
  std::vector<Check> checks;
  std::vector<std::string> excerpt;
  // A configuration that did not run (seed-003 over its --seed003-budget), and why.
  bool skipped = false;
  std::string skip_reason;
  // seed-002 on the synthetic backend: the scripted guest's result.
  bool synthetic = false;
  synthetic::PmuScriptResult pmu;
};

Outcome RunOne(Scenario s, const char* unit) {
  Outcome o;
  RunScenario(s);
  o.s = s;
  Figures& f = o.f;
  const IrqWinCounts c = CountIrqWin(s);
  f.write_locks = c.write_locks;
  f.irqwin_write_locks = c.irqwin_write_locks;
  f.broadcasts = c.broadcasts;
  f.irqwin_broadcasts = c.irqwin_broadcasts_after_pit_reinj;
  f.irqwin_updates = c.irqwin_updates_after_pit_reinj;
  f.kicks = s.stats.inhibits.kicks + s.stats.ipi_kicks;
  f.windows = c.windows;
  f.window_exits = c.window_exits;
  const double wall = s.result.wall_s > 0 ? s.result.wall_s : 1;
  // Every kvm_apicv_inhibit_changed line of the run (the summary sees them all).
  f.inhibit_lines_per_s = static_cast<double>(s.inhibits.lines) / wall;
  f.progress_unit = unit;
  if (const auto rate = FindGuestRate(s.serial, unit)) {
    f.progress_per_s = *rate;
    f.progress_known = true;
  }
  if (s.excerpt_filter) {
    o.excerpt = s.excerpt;
  } else {
    for (size_t i = 0; i < s.inhibit_lines.size() && o.excerpt.size() < 8; ++i)
      o.excerpt.push_back(s.inhibit_lines[i]);
  }
  o.checks.push_back({"guest passed (" + s.guest + ")", s.passed});
  return o;
}

Scenario Base(const std::string& label, const std::string& guest, int smp,
              const std::string& append) {
  Scenario s;
  s.label = label;
  s.guest = guest;
  s.smp = smp;
  s.append = append;
  return s;
}

// What every configuration shares: the lines kept for display (--keep-lines).
struct RunLimits {
  size_t keep_lines = 200000;
  std::string trace_dir;  // --trace-dir: one trace file per configuration
  mutable int trace_files = 0;
  double min_timeout_s = 0;  // long --ticks runs need more than a scenario's default
};

// "legacy avic=on irqchip=on delay" -> "legacy-avic-on-irqchip-on-delay"
std::string Slug(const std::string& label) {
  std::string out;
  for (char c : label) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) != 0;
    if (keep) out.push_back(c);
    if (!keep && !out.empty() && out.back() != '-') out.push_back('-');
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

Scenario Limited(Scenario s, const RunLimits& lim) {
  s.inhibit_keep = lim.keep_lines;
  s.timeout_s = std::max(s.timeout_s, lim.min_timeout_s);
  if (!lim.trace_dir.empty()) {
    char seq[16];
    std::snprintf(seq, sizeof seq, "%02d-", ++lim.trace_files);
    s.trace_path = lim.trace_dir + "/" + seq + Slug(s.label) + ".txt";
  }
  return s;
}

std::vector<Outcome> Seed000(int ticks, const RunLimits& limits) {
  // The split run takes `ticks` twice (ExtINT, then IOAPIC pin 2); allow 50 ticks/s at least, so
  // a long --ticks run is not cut by the default timeout on a slow host.
  RunLimits lim = limits;
  lim.min_timeout_s = 60 + 2 * 0.02 * ticks;
  std::vector<Outcome> out;
  const std::string app = "ticks=" + std::to_string(ticks);
  // 1. The report: AVIC on, kernel-irqchip=on, lost_tick_policy=delay, 2025 IRQ-window code.
  {
    Scenario s = Limited(Seed000Scenario(virt::IrqWindowMode::kLegacy, ticks), lim);
    // Show the toggling part of the trace, as in the seed.
    s.excerpt_filter = [](const InhibitLine& p, const InhibitSummary& before) {
      return before.pit_reinj_set && p.reason == 8;
    };
    s.excerpt_max = 6;
    Outcome o = RunOne(s, "ticks");
    // The IRQWIN lines once PIT_REINJ is set, as in the seed: 'set ... 0x300' then 'cleared ...
    // 0x200' per window. A new KVM_REQ_EVENT while a window is open re-arms it and repeats the
    // set line, as KVM does; a clear without a set before it, or any other form, is a failure.
    // Counted over every line while the trace streamed (InhibitSummary), however long the run.
    const InhibitSummary& sum = o.s.inhibits;
    o.checks.push_back(
        {"alternating 'set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ' / "
         "'cleared reason=8, inhibits=0x200 PIT_REINJ' (" +
             std::to_string(sum.alt_pairs) + " pairs, " + std::to_string(sum.alt_repeats) +
             " re-armed sets, " + std::to_string(sum.lines) + " lines)",
         sum.alt_well_formed && sum.alt_pairs > 0});
    for (auto& c : IrqWinStructureChecks(o.s, CountIrqWin(o.s))) o.checks.push_back(c);
    out.push_back(std::move(o));
  }
  // 2. The 2026 fix on the same configuration.
  {
    Outcome o =
        RunOne(Limited(Seed000Scenario(virt::IrqWindowMode::kCounted, ticks), lim), "ticks");
    for (auto& c : IrqWinStructureChecks(o.s, CountIrqWin(o.s))) o.checks.push_back(c);
    out.push_back(std::move(o));
  }
  // 3. avic=N: one DISABLED line, nothing after.
  {
    Scenario s = Base("legacy avic=off irqchip=on delay", "pit-extint", 1, app);
    s.config.irqwin = virt::IrqWindowMode::kLegacy;
    s.config.enable_apicv = false;
    Outcome o = RunOne(Limited(s, lim), "ticks");
    const InhibitSummary& sum = o.s.inhibits;
    o.checks.push_back({"exactly one line: 'set reason=0, inhibits=0x1 DISABLED' (" +
                            std::to_string(sum.lines) + " lines)",
                        sum.lines == 1 && sum.first_body == "set reason=0, inhibits=0x1 DISABLED"});
    out.push_back(std::move(o));
  }
  // 4. kernel-irqchip=split: no PIT_REINJ; IRQWIN toggles only while ExtINT is used. The guest
  // takes `ticks` PIT ticks as ExtINT through the PIC, then masks IRQ0 at the PIC and takes as
  // many through IOAPIC pin 2 (ISA IRQ0 -> GSI 2): with AVIC active those need no window.
  {
    Scenario s = Base("legacy avic=on irqchip=split", "pit-extint", 1,
                      app + " ioapic=" + std::to_string(ticks));
    s.config.irqwin = virt::IrqWindowMode::kLegacy;
    s.config.placement = virt::IrqchipPlacement::kSplit;
    s.phase_marker = "IRQ0 moves to IOAPIC pin";
    s.excerpt_filter = [](const InhibitLine& p, const InhibitSummary&) { return p.reason == 8; };
    s.excerpt_max = 4;
    Outcome o = RunOne(Limited(s, lim), "ticks");
    const InhibitSummary& sum = o.s.inhibits;
    o.checks.push_back({"no PIT_REINJ", !(sum.or_mask & (1ul << 9))});
    const uint64_t set0 = sum.phase_irqwin_set[0], clr0 = sum.phase_irqwin_cleared[0];
    o.checks.push_back(
        {"ExtINT phase: IRQWIN set with 'inhibits=0x100 IRQWIN' and cleared with "
         "'inhibits=0x0' (" +
             std::to_string(sum.Count(true, 8, 0x100)) + " set, " +
             std::to_string(sum.Count(false, 8, 0)) + " cleared)",
         set0 > 0 && clr0 > 0 && sum.Count(true, 8, 0x100) == set0 &&
             sum.Count(false, 8, 0) == clr0});
    o.checks.push_back({"guest switched IRQ0 to IOAPIC pin 2 (phase marker seen)", sum.phase == 1});
    const uint64_t after = sum.phase_irqwin_set[1] + sum.phase_irqwin_cleared[1];
    o.checks.push_back(
        {"IOAPIC phase: no IRQWIN line after ExtINT stopped (" + std::to_string(after) + ")",
         sum.phase == 1 && after == 0});
    out.push_back(std::move(o));
  }
  // 5. lost_tick_policy=discard: no PIT_REINJ, AVIC active, windows only for ExtINT.
  {
    Scenario s = Base("legacy avic=on irqchip=on discard", "pit-extint", 1, app);
    s.config.irqwin = virt::IrqWindowMode::kLegacy;
    s.config.pit_policy = virt::PitPolicy::kDiscard;
    Outcome o = RunOne(Limited(s, lim), "ticks");
    // kvm_create_pit() sets PIT_REINJ and QEMU's KVM_REINJECT_CONTROL clears it at once; from
    // then on (every line a vCPU thread prints) it must stay clear.
    o.checks.push_back(
        {"no PIT_REINJ once the VM runs", !(o.s.inhibits.or_mask_vcpus & (1ul << 9))});
    out.push_back(std::move(o));
  }
  limits.trace_files = lim.trace_files;  // the copy numbered the trace files
  return out;
}

// Seed 003: AVIC incomplete-IPI exits on real guests. PIT reinjection off (discard) so AVIC is
// active; the smp guest's IPIs (physical, logical, broadcast, ping-pong) to halted vCPUs exit with
// TARGET_NOT_RUNNING and are kicked by the fast path or, with --avic-kick slow, by the walk.
// `budget_s` > 0: sizes above 16 vCPUs are skipped once a fast+slow pair took longer than that
// (a slow host stays under a few minutes); each skip is a row of its own, in the table and in
// --json. 0 (the default): every size runs, and "all sizes ran" is an expectation.
std::vector<Outcome> Seed003(double budget_s, const RunLimits& lim) {
  std::vector<Outcome> out;
  double last_pair_s = 0;
  int last_smp = 0;
  std::vector<int> skipped;
  for (int smp : {2, 4, 16, 64, 288}) {
    // 288 > 255 vCPUs: x2APIC-only guest and the x2AVIC table (max index 0x1FF).
    if (budget_s > 0 && smp > 16 && (last_pair_s > budget_s || !skipped.empty())) {
      char why[160];
      std::snprintf(why, sizeof why,
                    "-smp %d took %.1f s for fast+slow, over --seed003-budget %.1f s", last_smp,
                    last_pair_s, budget_s);
      std::printf("seed-003: -smp %d SKIPPED: %s\n", smp, why);
      for (const char* kick : {"fast", "slow"}) {
        Outcome o;
        o.s = Base(std::string("avic-kick=") + kick + ", discard, smp=" + std::to_string(smp),
                   "smp", smp, "");
        o.skipped = true;
        o.skip_reason = why;
        o.f.progress_unit = "ipis";
        out.push_back(std::move(o));
      }
      skipped.push_back(smp);
      continue;
    }
    Outcome pair[2];
    for (int i = 0; i < 2; ++i) {
      const bool fast = i == 0;
      Scenario s = Base(std::string("avic-kick=") + (fast ? "fast" : "slow") +
                            ", discard, smp=" + std::to_string(smp),
                        "smp", smp, "");
      s.config.pit_policy = virt::PitPolicy::kDiscard;
      s.config.avic_kick = fast ? virt::AvicKick::kFast : virt::AvicKick::kSlow;
      s.timeout_s = 60;
      Outcome o = RunOne(Limited(s, lim), "ipis");
      Figures& f = o.f;
      const auto& st = o.s.stats;
      f.ipis = st.ipis;
      f.avic_accelerated = st.avic_accelerated_ipis;
      f.avic_incomplete = st.avic_incomplete_ipi;
      f.avic_not_running = st.avic_incomplete_ipi_by_cause[1];
      f.avic_fast_hits = st.avic_fast_hits;
      f.avic_slow_kicks = st.avic_slow_kicks;
      f.avic_examined = st.avic_vcpus_examined;
      // Each slow walk examines every vCPU; the rest was examined by the fast path.
      const uint64_t slow_examined = st.avic_slow_kicks * static_cast<uint64_t>(smp);
      const uint64_t fast_examined =
          st.avic_vcpus_examined > slow_examined ? st.avic_vcpus_examined - slow_examined : 0;
      f.examined_per_fast_kick =
          st.avic_fast_hits ? static_cast<double>(fast_examined) / st.avic_fast_hits : 0;
      f.examined_per_kick = f.avic_not_running ? static_cast<double>(st.avic_vcpus_examined) /
                                                     static_cast<double>(f.avic_not_running)
                                               : 0;
      const double wall = o.s.result.wall_s > 0 ? o.s.result.wall_s : 1;
      f.progress_per_s = static_cast<double>(st.ipis) / wall;
      f.progress_known = true;
      o.excerpt.clear();
      const InhibitSummary& sum = o.s.inhibits;
      const bool active_at_end = !sum.any_parsed || sum.last.inhibits == 0;
      o.checks.push_back({"AVIC active: no inhibit at the end", active_at_end});
      o.checks.push_back(
          {"AVIC_INCOMPLETE_IPI exits with TARGET_NOT_RUNNING seen", f.avic_not_running > 0});
      if (fast) {
        // O(1): one look-up per destination (bit), whatever the VM size; at most 16 for an
        // x2APIC cluster, 8 for xAPIC flat.
        o.checks.push_back({"fast kick examines O(1) vCPUs per exit it handles (" +
                                std::to_string(f.examined_per_fast_kick) + ")",
                            f.avic_fast_hits > 0 && f.examined_per_fast_kick <= 16.0});
      } else {
        o.checks.push_back({"slow kick walks every vCPU, no fast hit",
                            f.avic_fast_hits == 0 && f.avic_slow_kicks == f.avic_not_running});
      }
      pair[i] = std::move(o);
    }
    const bool same = pair[0].s.passed && pair[1].s.passed;
    pair[1].checks.push_back({"fast and slow reach the same guest result (PASS)", same});
    last_pair_s = pair[0].s.result.wall_s + pair[1].s.result.wall_s;
    last_smp = smp;
    if (budget_s <= 0 && smp == 288)
      pair[1].checks.push_back(
          {"every size ran (2, 4, 16, 64, 288 vCPUs; no --seed003-budget)", skipped.empty()});
    out.push_back(std::move(pair[0]));
    out.push_back(std::move(pair[1]));
  }
  return out;
}

void PrintAvic(const std::vector<Outcome>& v) {
  std::printf("\n%-34s %8s %9s %9s %9s %8s %8s %9s %9s %11s\n", "configuration", "ipis", "accel",
              "incompl", "not-run", "fast", "slow", "ex/kick", "ex/fast", "ipis/s");
  for (const auto& o : v) {
    const Figures& f = o.f;
    if (o.skipped) {
      std::printf("%-34s SKIPPED: %s\n", o.s.label.c_str(), o.skip_reason.c_str());
      continue;
    }
    std::printf("%-34s %8llu %9llu %9llu %9llu %8llu %8llu %9.2f %9.2f %11.1f\n", o.s.label.c_str(),
                (unsigned long long)f.ipis, (unsigned long long)f.avic_accelerated,
                (unsigned long long)f.avic_incomplete, (unsigned long long)f.avic_not_running,
                (unsigned long long)f.avic_fast_hits, (unsigned long long)f.avic_slow_kicks,
                f.examined_per_kick, f.examined_per_fast_kick, f.progress_per_s);
  }
}

// The smp guest's census line: "xAPIC IDs: N CPUs, H with x2APIC ID >= 256, B with ...".
bool ParseCensus(const std::string& serial, unsigned* cpus, unsigned* high, unsigned* bad) {
  static const std::regex re(
      R"(xAPIC IDs: ([0-9]+) CPUs, ([0-9]+) with x2APIC ID >= 256, ([0-9]+) with)");
  std::smatch m;
  if (!std::regex_search(serial, m, re)) return false;
  *cpus = static_cast<unsigned>(std::stoul(m[1]));
  *high = static_cast<unsigned>(std::stoul(m[2]));
  *bad = static_cast<unsigned>(std::stoul(m[3]));
  return true;
}

std::vector<Outcome> Seed004(const RunLimits& lim) {
  constexpr unsigned long kApicIdModified = 1ul << 5;
  std::vector<Outcome> out;
  for (auto rule : {virt::ApicIdCheck::k2022, virt::ApicIdCheck::kCurrent}) {
    const bool old = rule == virt::ApicIdCheck::k2022;
    Scenario s =
        Base(std::string("reboot x2APIC->xAPIC, apic-id-check=") + (old ? "2022" : "current"),
             "reboot", 2, "");
    s.config.apic_id_check = rule;
    s.config.irqwin = virt::IrqWindowMode::kLegacy;
    s.config.pit_policy = virt::PitPolicy::kDiscard;  // the 2022 report had no PIT_REINJ
    s.excerpt_filter = [](const InhibitLine& p, const InhibitSummary&) {
      return p.reason == 5 || p.inhibits == 0x120;
    };
    s.excerpt_max = 6;
    // Progress: the LAPIC timer ticks per second the guest takes after the reboot.
    Outcome o = RunOne(Limited(s, lim), "ticks");
    const InhibitSummary& sum = o.s.inhibits;
    const bool modified_at_end = sum.any_parsed && (sum.last.inhibits & kApicIdModified);
    const uint64_t on_top = sum.Count(true, 8, 0x120);
    o.checks.push_back({"rebooted once", o.s.result.reboots == 1});
    if (old) {
      o.checks.push_back({"APIC_ID_MODIFIED stays set after reboot", modified_at_end});
      o.checks.push_back(
          {"IRQWIN toggles on top: 'set reason=8, inhibits=0x120' (" + std::to_string(on_top) + ")",
           on_top > 0});
    } else {
      o.checks.push_back({"APIC_ID_MODIFIED clear after reboot", !modified_at_end});
      o.checks.push_back({"no 'inhibits=0x120' lines", on_top == 0});
    }
    o.checks.push_back({"guest reported its tick rate after the reboot", o.f.progress_known});
    out.push_back(std::move(o));
  }
  // A >255-vCPU guest that stays in xAPIC mode: vCPU n >= 256 reads xAPIC ID n & 0xff, which
  // differs from its vCPU id only above bit 7. Every CPU writes its ID register back unchanged.
  // The current rule (map rebuild, compared with (u8)vcpu_id) never flags it; the aliases are
  // the physical map's business (PHYSICAL_ID_ALIASED), not APIC_ID_MODIFIED (spec 6.3, 6.7).
  for (auto rule : {virt::ApicIdCheck::kCurrent, virt::ApicIdCheck::k2022}) {
    const bool old = rule == virt::ApicIdCheck::k2022;
    Scenario s = Base(std::string("288 vCPUs xAPIC, apic-id-check=") + (old ? "2022" : "current"),
                      "smp", 288, "xapic_ids");
    s.config.apic_id_check = rule;
    s.config.irqwin = virt::IrqWindowMode::kLegacy;
    s.config.pit_policy = virt::PitPolicy::kDiscard;
    s.timeout_s = 120;
    s.excerpt_max = 6;
    s.excerpt_filter = [](const InhibitLine& p, const InhibitSummary&) {
      return p.set || (p.inhibits & (1ul << 5));
    };
    Outcome o = RunOne(Limited(s, lim), "cpus");
    const InhibitSummary& sum = o.s.inhibits;
    unsigned cpus = 0, high = 0, bad = 0;
    const bool census = ParseCensus(o.s.serial, &cpus, &high, &bad);
    o.checks.push_back({"every vCPU reports xAPIC ID = vCPU id & 0xff (" + std::to_string(cpus) +
                            " CPUs, " + std::to_string(high) + " with id >= 256)",
                        census && cpus == 288 && high == 32 && bad == 0});
    const bool flagged = sum.or_mask & kApicIdModified;
    if (!old) {
      o.checks.push_back(
          {"APIC_ID_MODIFIED never set (ids differ from vCPU ids only above bit 7)", !flagged});
      // Without the x2APIC "hotplug hack" ID format, vCPU n and n + 256 share a physical map
      // slot: the strict map is disabled (spec 6.3).
      o.checks.push_back(
          {"the aliases are PHYSICAL_ID_ALIASED's instead", (sum.or_mask & (1ul << 4)) != 0});
    } else {
      // The first 2022 hook (3743c2f02517) compared every written ID with the untruncated
      // vcpu_id, so the unchanged rewrite of vCPUs >= 256 was a false positive; f651a0089548
      // added the u8 truncation that the current rule keeps (spec 6.7, seed 005).
      o.checks.push_back(
          {"APIC_ID_MODIFIED set by the unchanged ID rewrite of vCPUs >= 256 (untruncated compare)",
           flagged});
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<Outcome> Seed002() {
  std::vector<Outcome> out;
  for (auto mode : {virt::PmiDelivery::kLegacy, virt::PmiDelivery::kCurrent}) {
    const bool legacy = mode == virt::PmiDelivery::kLegacy;
    Scenario s = Base(std::string("pmi-delivery=") + (legacy ? "legacy" : "current"), "pmu", 1, "");
    s.config.pmi_delivery = mode;
    Outcome o = RunOne(s, "pmis");
    std::smatch m;
    static const std::regex re(R"(PMIs per overflow: ([0-9]+))");
    const bool found = std::regex_search(o.s.serial, m, re);
    const int per = found ? std::stoi(m[1]) : -1;
    o.checks.push_back({std::string("guest saw ") + (legacy ? "2" : "exactly 1") +
                            " PMI(s) for one overflow (saw " + std::to_string(per) + ")",
                        per == (legacy ? 2 : 1)});
    if (!legacy) {
      o.checks.push_back({"LVTPC masked after delivery",
                          o.s.serial.find("LVTPC masked after PMI: yes") != std::string::npos});
    }
    out.push_back(std::move(o));
  }
  return out;
}

// Seed 002 on the synthetic backend: the pmu guest's exits replayed against ApicvVm, with the
// expectations of Seed002() (the guest's serial lines are rebuilt from the script's result).
std::vector<Outcome> Seed002Synthetic() {
  std::vector<Outcome> out;
  for (auto mode : {virt::PmiDelivery::kLegacy, virt::PmiDelivery::kCurrent}) {
    const bool legacy = mode == virt::PmiDelivery::kLegacy;
    synthetic::PmuScriptConfig cfg;
    cfg.delivery = mode;
    Outcome o;
    o.synthetic = true;
    o.pmu = synthetic::RunPmuScript(cfg);
    const synthetic::PmuScriptResult& r = o.pmu;
    o.s = Base(std::string("pmi-delivery=") + (legacy ? "legacy" : "current"), "pmu (scripted)", 1,
               "");
    o.s.config.pmi_delivery = mode;
    o.s.passed = r.passed();
    o.f.progress_unit = "pmis";
    o.excerpt.push_back("first PMI after " + std::to_string(r.outs_at_first_pmi) +
                        " port writes (counter armed at -" + std::to_string(cfg.period) + ")");
    o.excerpt.push_back("PMIs per overflow: " + std::to_string(r.pmis));
    o.excerpt.push_back(std::string("LVTPC masked after PMI: ") +
                        (r.lvtpc_masked_after_pmi ? "yes" : "no"));
    o.excerpt.push_back(std::string("GLOBAL_STATUS bit 0 seen: ") +
                        (r.global_status_seen ? "yes" : "no"));
    for (const auto& l : o.excerpt) o.s.serial += l + "\n";
    for (const auto& f : r.failures) o.s.serial += "FAIL: " + f + "\n";
    o.checks.push_back({"guest passed (" + o.s.guest + ")", o.s.passed});
    o.checks.push_back({"one PMC0 overflow (host Pmu counted " + std::to_string(r.overflows) + ")",
                        r.overflows == 1});
    o.checks.push_back({std::string("guest saw ") + (legacy ? "2" : "exactly 1") +
                            " PMI(s) for one overflow (saw " + std::to_string(r.pmis) + ")",
                        r.pmis == (legacy ? 2u : 1u)});
    if (!legacy) o.checks.push_back({"LVTPC masked after delivery", r.lvtpc_masked_after_pmi});
    out.push_back(std::move(o));
  }
  return out;
}

void PrintPmuScript(const std::vector<Outcome>& v) {
  std::printf("\n%-40s %9s %8s %8s %10s %13s %7s\n", "configuration", "overflows", "PMIs", "NMIs",
              "LVTPC-dlv", "LVTPC masked", "exits");
  for (const auto& o : v) {
    const synthetic::PmuScriptResult& r = o.pmu;
    std::printf("%-40s %9llu %8llu %8llu %10llu %13s %7llu\n", o.s.label.c_str(),
                (unsigned long long)r.overflows, (unsigned long long)r.pmis,
                (unsigned long long)r.nmis_injected, (unsigned long long)r.lvtpc_deliveries,
                r.lvtpc_masked_after_pmi ? "yes" : "no", (unsigned long long)r.exits);
  }
}

void PrintOutcomes(const std::string& title, const std::vector<Outcome>& v, bool* all_ok) {
  std::printf("\n=== %s ===\n", title.c_str());
  for (const auto& o : v) {
    if (o.skipped) {
      std::printf("\n-- %s (guest %s, -smp %d) -- SKIPPED: %s\n", o.s.label.c_str(),
                  o.s.guest.c_str(), o.s.smp, o.skip_reason.c_str());
      continue;
    }
    std::printf("\n-- %s (guest %s, -smp %d) --\n", o.s.label.c_str(), o.s.guest.c_str(), o.s.smp);
    for (const auto& l : o.excerpt) std::printf("  %s\n", l.c_str());
    if (!o.s.passed) {
      // Show why the guest failed (its FAIL lines, or the run's error / timeout).
      size_t pos = 0;
      while ((pos = o.s.serial.find("FAIL", pos)) != std::string::npos) {
        const size_t end = o.s.serial.find('\n', pos);
        std::printf("  guest: %s\n", o.s.serial.substr(pos, end - pos).c_str());
        pos = end == std::string::npos ? end : end + 1;
        if (pos == std::string::npos) break;
      }
      if (!o.s.result.error.empty()) std::printf("  run: %s\n", o.s.result.error.c_str());
      if (o.s.result.timed_out) std::printf("  run: timed out\n");
    }
    for (const auto& c : o.checks) {
      std::printf("  [%s] %s\n", c.ok ? "PASS" : "FAIL", c.what.c_str());
      if (!c.ok) *all_ok = false;
    }
  }
  std::printf("\n%-40s %10s %8s %10s %8s %8s %8s %10s\n", "configuration", "inh.lines/s", "wlocks",
              "irqwin-wl", "bcasts", "kicks", "windows", "progress/s");
  for (const auto& o : v) {
    if (o.skipped) {
      std::printf("%-40s SKIPPED: %s\n", o.s.label.c_str(), o.skip_reason.c_str());
      continue;
    }
    char progress[32];
    if (o.f.progress_known) {
      std::snprintf(progress, sizeof progress, "%10.1f", o.f.progress_per_s);
    } else {
      std::snprintf(progress, sizeof progress, "%10s", "n/a");  // the guest printed no rate
    }
    std::printf("%-40s %10.1f %8llu %10llu %8llu %8llu %8llu %s %s\n", o.s.label.c_str(),
                o.f.inhibit_lines_per_s, (unsigned long long)o.f.write_locks,
                (unsigned long long)o.f.irqwin_write_locks, (unsigned long long)o.f.broadcasts,
                (unsigned long long)o.f.kicks, (unsigned long long)o.f.windows, progress,
                o.f.progress_unit.c_str());
  }
}

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

void WriteJson(const std::string& path, const std::map<std::string, std::vector<Outcome>>& all) {
  std::ofstream f(path);
  if (!f) throw UsageError("--json: cannot write '" + path + "'");
  f << "{\n";
  bool first_seed = true;
  for (const auto& [seed, v] : all) {
    f << (first_seed ? "" : ",\n") << "  \"" << seed << "\": [\n";
    first_seed = false;
    for (size_t i = 0; i < v.size(); ++i) {
      const auto& o = v[i];
      bool ok = true;
      for (const auto& c : o.checks) ok = ok && c.ok;
      f << "    {\"configuration\": \"" << JsonEscape(o.s.label) << "\", \"guest\": \"" << o.s.guest
        << "\", \"smp\": " << o.s.smp;
      if (o.skipped) {
        f << ", \"skipped\": true, \"skip_reason\": \"" << JsonEscape(o.skip_reason) << "\"}"
          << (i + 1 < v.size() ? ",\n" : "\n");
        continue;
      }
      f << ", \"skipped\": false, \"passed\": " << (ok ? "true" : "false")
        << ", \"wall_s\": " << o.s.result.wall_s << ", \"inhibit_lines\": " << o.s.inhibits.lines
        << ", \"inhibit_lines_kept\": " << o.s.inhibit_lines.size()
        << ", \"inhibit_lines_per_s\": " << o.f.inhibit_lines_per_s
        << ", \"write_locks\": " << o.f.write_locks
        << ", \"irqwin_write_locks\": " << o.f.irqwin_write_locks
        << ", \"broadcasts\": " << o.f.broadcasts
        << ", \"irqwin_broadcasts_after_pit_reinj\": " << o.f.irqwin_broadcasts
        << ", \"irqwin_updates_after_pit_reinj\": " << o.f.irqwin_updates
        << ", \"kicks\": " << o.f.kicks << ", \"windows\": " << o.f.windows
        << ", \"window_exits\": " << o.f.window_exits << ", \"progress_per_s\": ";
      if (o.f.progress_known) {
        f << o.f.progress_per_s;
      } else {
        f << "null";  // the guest printed no rate
      }
      f << ", \"progress_unit\": \"" << o.f.progress_unit << "\"";
      if (o.synthetic) {
        f << ", \"backend\": \"synthetic\", \"overflows\": " << o.pmu.overflows
          << ", \"pmis\": " << o.pmu.pmis << ", \"nmis_injected\": " << o.pmu.nmis_injected
          << ", \"lvtpc_masked_after_pmi\": " << (o.pmu.lvtpc_masked_after_pmi ? "true" : "false")
          << ", \"exits\": " << o.pmu.exits;
      }
      if (seed == "seed-003") {
        f << ", \"ipis\": " << o.f.ipis << ", \"avic_accelerated_ipis\": " << o.f.avic_accelerated
          << ", \"avic_incomplete_ipi\": " << o.f.avic_incomplete
          << ", \"avic_target_not_running\": " << o.f.avic_not_running
          << ", \"avic_fast_hits\": " << o.f.avic_fast_hits
          << ", \"avic_slow_kicks\": " << o.f.avic_slow_kicks
          << ", \"avic_vcpus_examined\": " << o.f.avic_examined
          << ", \"examined_per_kick\": " << o.f.examined_per_kick
          << ", \"examined_per_fast_kick\": " << o.f.examined_per_fast_kick;
      }
      f << "}" << (i + 1 < v.size() ? ",\n" : "\n");
    }
    f << "  ]";
  }
  f << "\n}\n";
}

// --report: the inhibit reasons over guest time of one configuration, a lane per reason ever set,
// from the kept kvm_apicv_inhibit_changed lines (their microsecond timestamps).
report::LaneChart InhibitLanes(const Outcome& o) {
  report::LaneChart c;
  c.title = o.s.label;
  c.series = o.s.label;
  c.x_label = "guest time since VM creation (ms)";
  c.y_label = "inhibit reason";
  std::vector<std::pair<uint64_t, unsigned long>> pts;
  for (const std::string& line : o.s.inhibit_lines) {
    const trace::ParseResult p = trace::ParseInhibitChangedLine(line);
    if (p.ok) pts.emplace_back(p.record.ts_ns, p.record.inhibits);
  }
  const uint64_t origin = pts.empty() ? 0 : pts.front().first;
  double end_ms = pts.empty() ? 0 : static_cast<double>(pts.back().first - origin) / 1e6;
  // The last trace event (a PIT injection, an exit...) marks the end of the run.
  if (o.s.trace_last_ns > origin)
    end_ms = std::max(end_ms, static_cast<double>(o.s.trace_last_ns - origin) / 1e6);
  c.x_max = end_ms > 0 ? end_ms : 1;
  std::map<int, report::Lane> lanes;
  std::map<int, double> since;
  unsigned long mask = 0;
  uint64_t irqwin_sets = 0;
  for (const auto& [ts, m] : pts) {
    const double t = static_cast<double>(ts - origin) / 1e6;
    for (int b = 0; b < 64; ++b) {
      const unsigned long bit = 1ul << b;
      if ((m & bit) && !(mask & bit)) {
        since[b] = t;
        if (b == 8) ++irqwin_sets;
      }
      if (!(m & bit) && (mask & bit)) lanes[b].on.emplace_back(since[b], t);
    }
    mask = m;
  }
  for (int b = 0; b < 64; ++b) {
    if (mask & (1ul << b)) lanes[b].on.emplace_back(since[b], c.x_max);
  }
  for (auto& [b, lane] : lanes) {
    lane.name = b < x86::kNrApicvInhibitReasons ? std::string(x86::kInhibitReasonNames[b])
                                                : "reason " + std::to_string(b);
    lane.color = b;  // one reason, one color, in every panel
    c.lanes.push_back(std::move(lane));
  }
  c.note = std::to_string(o.s.inhibits.lines) + " inhibit lines, " + std::to_string(irqwin_sets) +
           " IRQWIN sets" +
           (o.s.inhibits.lines > o.s.inhibit_lines.size()
                ? " (first " + std::to_string(o.s.inhibit_lines.size()) + " drawn, --keep-lines)"
                : "");
  return c;
}

double GuestSeconds(const Outcome& o) {
  // The time the run's trace covers: virtual time under -accel emu, wall time on kvm.
  if (o.s.trace_last_ns > o.s.trace_first_ns)
    return static_cast<double>(o.s.trace_last_ns - o.s.trace_first_ns) / 1e9;
  return o.s.result.wall_s;
}

void WriteReport(AtomicOutput& out, const std::map<std::string, std::vector<Outcome>>& all,
                 Accel accel, int ticks, bool ok) {
  report::HtmlReport page("apicv repro report");
  page.Paragraph(std::string("Accelerator: ") + AccelName(accel) +
                 (accel == Accel::kEmu ? " (apicv's software CPU; times are virtual guest time)"
                                       : " (/dev/kvm; times are wall-clock time)") +
                 ". seed-000 PIT ticks per run: " + std::to_string(ticks) +
                 ". Result: " + (ok ? "all expectations hold" : "SOME EXPECTATIONS FAILED") + ".");
  std::vector<std::vector<std::string>> rows = {{"seed", "configuration", "guest", "-smp", "result",
                                                 "inhibit lines", "IRQ windows", "kicks",
                                                 "guest time (s)"}};
  for (const auto& [seed, v] : all) {
    for (const Outcome& o : v) {
      bool pass = true;
      for (const auto& c : o.checks) pass = pass && c.ok;
      char gs[32];
      std::snprintf(gs, sizeof gs, "%.3f", GuestSeconds(o));
      rows.push_back({seed, o.s.label, o.s.guest, std::to_string(o.s.smp),
                      o.skipped ? "SKIPPED: " + o.skip_reason
                      : pass    ? "PASS"
                                : "FAIL",
                      std::to_string(o.s.inhibits.lines), std::to_string(o.f.windows),
                      std::to_string(o.f.kicks), o.skipped ? "" : gs});
    }
  }
  page.Heading("Configurations");
  page.Table(rows);
  for (const auto& [seed, v] : all) {
    page.Heading(seed);
    std::vector<report::Figure> lanes;
    report::BarChart windows;
    windows.title = seed + ": IRQ windows per second";
    windows.x_label = "configuration";
    windows.y_label = accel == Accel::kEmu ? "IRQ windows opened per second of guest (virtual) time"
                                           : "IRQ windows opened per second (wall clock)";
    for (const Outcome& o : v) {
      if (o.skipped || o.synthetic) continue;
      lanes.push_back({"inhibits:" + seed + ":" + o.s.label,
                       "APICv inhibit reasons set over guest time, " + o.s.label +
                           " (a bar per interval a reason is set; IRQWIN toggling once per "
                           "window is the seed-000 thrash)",
                       report::LaneChartSvg(InhibitLanes(o))});
      const double secs = GuestSeconds(o);
      windows.bars.push_back({o.s.label, secs > 0 ? static_cast<double>(o.f.windows) / secs : 0,
                              std::nullopt, true, ""});
    }
    if (lanes.empty()) {
      page.Paragraph("No real-guest configuration ran (synthetic backend): nothing to plot.");
      continue;
    }
    page.FigureRow(lanes);
    page.FigureRow({{"irq-windows:" + seed,
                     "Model IRQ windows opened per second, per configuration (VmStats windows "
                     "over the run's guest time)",
                     report::BarChartSvg(windows)}});
    if (seed == "seed-003") {
      report::BarChart ex;
      ex.title = "seed-003: vCPUs examined per TARGET_NOT_RUNNING exit";
      ex.x_label = "configuration";
      ex.y_label = "vCPUs examined per kick (count)";
      for (const Outcome& o : v) {
        if (!o.skipped)
          ex.bars.push_back({o.s.label, o.f.examined_per_kick, std::nullopt, true, ""});
      }
      page.FigureRow({{"kick-cost:seed-003", "AVIC kick cost: fast path vs the slow walk",
                       report::BarChartSvg(ex)}});
    }
  }
  page.Heading("IPI round trips");
  page.Paragraph(
      "NOT MEASURED: the repro scenarios keep no per-IPI timestamps (device tracing is off in "
      "them); `apicv bench ipi --report DIR` draws IPI round-trip histograms, and `apicv run "
      "--trace-json` shows each IPI's send-to-receive latency.");
  out.stream() << page.Render();
}

struct ReproOptions {
  std::string seed;
  std::string json;
  std::string ticks = "300";
  std::string backend;               // "", "kvm" or "synthetic"
  std::string accel;                 // "", "kvm" or "emu"
  std::string seed003_budget = "0";  // seconds per fast+slow pair before larger sizes skip
  std::string keep_lines = "200000";
  std::string trace_dir;
  std::string report_dir;
  std::vector<std::string> extras;  // arguments CLI11 did not recognise
};

int ReproMain(const ReproOptions& opt) {
  // Every check on the command line before the first guest runs (a run takes minutes).
  static const std::vector<std::string> kSeeds = {"seed-000", "seed-002", "seed-003", "seed-004"};
  RejectExtras("repro", opt.extras,
               "each seed sets its own VM options; apicv run takes them for one configuration");
  std::vector<std::string> seeds;
  if (opt.seed.empty()) {
    throw UsageError("repro: missing scenario (seed-000, seed-002, seed-003, seed-004, all)");
  } else if (opt.seed == "all") {
    seeds = kSeeds;
  } else if (std::find(kSeeds.begin(), kSeeds.end(), opt.seed) != kSeeds.end()) {
    seeds = {opt.seed};
  } else {
    throw UsageError("repro: unknown scenario '" + opt.seed +
                     "' (seed-000, seed-002, seed-003, seed-004, all)");
  }
  const int ticks = static_cast<int>(ParseIntOption("--ticks", opt.ticks, 20, 100000));
  const double budget_s =
      static_cast<double>(ParseIntOption("--seed003-budget", opt.seed003_budget, 0, 86400));
  RunLimits lim;
  lim.keep_lines = static_cast<size_t>(ParseIntOption("--keep-lines", opt.keep_lines, 0, 1000000));
  if (!opt.backend.empty() && opt.backend != "kvm" && opt.backend != "synthetic")
    throw UsageError("repro: --backend: expected kvm|synthetic, got '" + opt.backend + "'");
  if (opt.backend == "synthetic") {
    for (const auto& seed : seeds) {
      if (seed != "seed-002")
        throw UsageError("repro: " + seed +
                         " needs /dev/kvm; --backend synthetic supports seed-002 only");
    }
  }
  const Accel accel = opt.accel.empty() ? DefaultAccel() : ParseAccel("--accel", opt.accel);
  if (opt.backend == "synthetic" && !opt.accel.empty())
    throw UsageError("repro: --accel selects where real guests run; --backend synthetic has none");
  SetScenarioAccel(accel);
  if (!opt.json.empty()) CheckWritable("--json", opt.json);
  std::unique_ptr<AtomicOutput> report_out;
  if (!opt.report_dir.empty()) {
    // Made now, so a bad DIR is reported before anything runs; renamed over index.html at the end.
    report_out =
        std::make_unique<AtomicOutput>("--report", ReportIndexPath("--report", opt.report_dir));
  }
  if (!opt.trace_dir.empty()) {
    struct stat st {};
    if (stat(opt.trace_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw UsageError("repro: --trace-dir: '" + opt.trace_dir + "' is not a directory");
    CheckWritable("--trace-dir", opt.trace_dir + "/.apicv-write-test");
    lim.trace_dir = opt.trace_dir;
  }
  // Without --backend, seed-002 falls back to the synthetic backend when /dev/kvm cannot be
  // opened; the other seeds keep the skip status (77).
  std::string synthetic_why;
  if (opt.backend == "synthetic") {
    synthetic_why = "--backend synthetic";
  }
  std::printf("repro: accelerator %s%s\n", AccelName(accel),
              opt.accel.empty() && accel == Accel::kEmu ? " (/dev/kvm is not available)" : "");
  std::map<std::string, std::vector<Outcome>> all;
  bool ok = true;
  try {
    for (const auto& seed : seeds) {
      std::vector<Outcome> v;
      const bool synth = seed == "seed-002" && !synthetic_why.empty();
      if (seed == "seed-000") v = Seed000(ticks, lim);
      if (seed == "seed-002") v = synth ? Seed002Synthetic() : Seed002();
      if (seed == "seed-003") v = Seed003(budget_s, lim);
      if (seed == "seed-004") v = Seed004(lim);
      PrintOutcomes(synth ? seed + " (synthetic backend: " + synthetic_why + ")" : seed, v, &ok);
      if (synth) PrintPmuScript(v);
      if (seed == "seed-003") PrintAvic(v);
      all[seed] = std::move(v);
    }
  } catch (const kvm::KvmUnavailable& e) {
    std::fprintf(stderr, "apicv: %s\n", e.what());
    return 77;
  }
  if (!opt.json.empty()) WriteJson(opt.json, all);
  if (report_out) {
    WriteReport(*report_out, all, accel, ticks, ok);
    report_out->commit();
    std::printf("\nwrote the report %s\n", report_out->path().c_str());
  }
  if (lim.trace_files > 0)
    std::printf("\nwrote %d trace files to %s (apicv trace summary|diff)\n", lim.trace_files,
                lim.trace_dir.c_str());
  std::printf("\nrepro: %s\n", ok ? "all expectations hold" : "SOME EXPECTATIONS FAILED");
  return ok ? 0 : 1;
}

CommandRegistration reg("", [](CLI::App& app) {
  auto opt = std::make_shared<ReproOptions>();
  auto* cmd = app.add_subcommand("repro", "Reproduce the seed scenarios on real guests");
  cmd->add_option("scenario", opt->seed, "seed-000 | seed-002 | seed-003 | seed-004 | all");
  cmd->add_option("--json", opt->json, "Write the figures as JSON to this file");
  cmd->add_option("--ticks", opt->ticks, "PIT ticks per seed-000 run, 20..100000 (default 300)");
  cmd->add_option("--seed003-budget", opt->seed003_budget,
                  "Seconds a seed-003 fast+slow pair may take before the larger sizes (64, 288) "
                  "are skipped, each skip reported; 0 = never skip (default)");
  cmd->add_option("--trace-dir", opt->trace_dir,
                  "Also write each configuration's trace to DIR/NN-<configuration>.txt");
  cmd->add_option("--report", opt->report_dir,
                  "Write DIR/index.html: a self-contained page with SVG figures (inhibit "
                  "reasons over time per configuration, IRQ windows per second; docs/report.md)");
  cmd->add_option("--keep-lines", opt->keep_lines,
                  "kvm_apicv_inhibit_changed lines kept per run for display, 0..1000000 (default "
                  "200000); the checks see every line whatever this is");
  cmd->add_option("--backend", opt->backend,
                  "kvm | synthetic (default: real guests; synthetic runs seed-002 only, on a "
                  "scripted guest)");
  cmd->add_option("--accel", opt->accel,
                  "kvm | emu: where the real guests run (default: kvm when /dev/kvm opens, else "
                  "emu, apicv's software CPU)");
  // Unknown options and surplus arguments are reported by ReproMain in one line, like `run`.
  cmd->allow_extras();
  cmd->callback([opt, cmd] {
    opt->extras = cmd->remaining();
    SetExitStatus(ReproMain(*opt));
  });
});

}  // namespace
}  // namespace apicv::cli
