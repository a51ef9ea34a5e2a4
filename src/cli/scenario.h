// One configured run of a built-in guest on /dev/kvm with apicv's irqchip, keeping what a repro
// or benchmark needs afterwards: the run result, the virtualization layer's counters and the
// kvm_apicv_inhibit_changed trace lines.
#pragma once

#include <string>
#include <vector>

#include "backend/kvm/run_guest.h"
#include "virt/apicv_vm.h"

namespace apicv::cli {

struct Scenario {
  std::string label;  // e.g. "legacy, avic=on, irqchip=on, delay"
  std::string guest;
  int smp = 1;
  std::string append;
  virt::VmConfig config;
  double timeout_s = 300;
  size_t trace_ring = 200000;  // lines kept (bounded memory)

  // Results.
  kvm::RunResult result;
  virt::VmStats stats;
  std::vector<std::string> inhibit_lines;  // full ftrace lines of kvm_apicv_inhibit_changed
  uint64_t trace_lines_total = 0;
  std::string serial;
  bool passed = false;  // the guest printed PASS and exited through isa-debug-exit
};

// Runs the scenario. Throws kvm::KvmUnavailable when /dev/kvm is missing.
void RunScenario(Scenario& s);

// The body after "kvm_apicv_inhibit_changed: " of a full trace line.
std::string InhibitBody(const std::string& line);

// One kvm_apicv_inhibit_changed body: "<set|cleared> reason=N, inhibits=0x...".
struct InhibitLine {
  bool set = false;
  unsigned reason = 0;
  unsigned long inhibits = 0;
};
bool ParseInhibitBody(const std::string& body, InhibitLine* out);
// The scenario's inhibit lines that parse, in order.
std::vector<InhibitLine> ParsedInhibitLines(const Scenario& s);
// The lines after the first one that sets `reason` (empty if it is never set).
std::vector<InhibitLine> LinesAfterSet(const std::vector<InhibitLine>& v, unsigned reason);

// The last "<N> <unit>/s" figure the guest printed on its serial port (0 if none).
double GuestRate(const std::string& serial, const char* unit);

// Lock and broadcast counts of one run, with the part caused by IRQ windows separated out.
struct IrqWinCounts {
  uint64_t write_locks = 0;         // apicv_update_lock write acquisitions during the run
  uint64_t irqwin_write_locks = 0;  // of those, taken for IRQWIN alone
  uint64_t broadcasts = 0;          // APICV_UPDATE broadcasts, all causes
  // Broadcasts made by an IRQWIN-only update once PIT_REINJ is set (from the trace's masks).
  uint64_t irqwin_broadcasts_after_pit_reinj = 0;
  // IRQWIN updates of their own (not the re-derivation that follows another reason's update)
  // once PIT_REINJ is set: the toggles seed 000 shows.
  uint64_t irqwin_updates_after_pit_reinj = 0;
  uint64_t windows = 0;       // model IRQ windows opened
  uint64_t window_exits = 0;  // model IRQ-window exits
};
IrqWinCounts CountIrqWin(const Scenario& s);

struct ScenarioCheck {
  std::string what;
  bool ok;
};
// Seed 000's structural expectations for the scenario's IRQ-window strategy, with PIT_REINJ set:
// legacy takes the write lock for every window (>= 1 per window); counted makes no IRQWIN update
// of its own, takes no write lock and sends no broadcast for any window once PIT_REINJ is set.
std::vector<ScenarioCheck> IrqWinStructureChecks(const Scenario& s, const IrqWinCounts& c);

// Seed 000 as reported: pit-extint guest, one vCPU, svm, AVIC on, kernel-irqchip=on,
// kvm-pit.lost_tick_policy=delay, with the given IRQ-window strategy and PIT ticks.
Scenario Seed000Scenario(virt::IrqWindowMode irqwin, int ticks);

// Command-line checks shared by run, repro and the benchmarks. Each throws UsageError with one
// line naming the option, before anything runs.
long ParseIntOption(const std::string& opt, const std::string& value, long lo, long hi);
// The file can be created or overwritten (a file this creates is removed again).
void CheckWritable(const std::string& opt, const std::string& path);
// Options a CLI11 subcommand with allow_extras() did not recognise.
// `hint` (may be empty) follows the message, e.g. where such options are accepted.
void RejectExtras(const std::string& command, const std::vector<std::string>& extras,
                  const std::string& hint);

}  // namespace apicv::cli
