// One configured run of a built-in guest on /dev/kvm with apicv's irqchip, keeping what a repro
// or benchmark needs afterwards: the run result, the virtualization layer's counters and the
// kvm_apicv_inhibit_changed trace lines.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backend/kvm/run_guest.h"
#include "virt/apicv_vm.h"

namespace apicv::cli {

// One kvm_apicv_inhibit_changed body: "<set|cleared> reason=N, inhibits=0x...".
struct InhibitLine {
  bool set = false;
  unsigned reason = 0;
  unsigned long inhibits = 0;
};

// Every kvm_apicv_inhibit_changed line of a run, summarised while the trace streams out of the
// sink, so no check depends on how many lines are kept in memory (kvm_inj_virq and the other
// events are never stored). Memory is bounded: fixed counters plus at most kMaxForms distinct
// (set, reason, inhibits) forms.
struct InhibitSummary {
  static constexpr unsigned kMaxPhases = 4;  // phases beyond the last count as the last
  static constexpr size_t kMaxForms = 1024;

  uint64_t lines = 0;     // every kvm_apicv_inhibit_changed line
  uint64_t unparsed = 0;  // of those, bodies that did not parse
  bool any_parsed = false;
  InhibitLine last;  // the last parsed line (when any_parsed)
  std::string first_body;
  unsigned long or_mask = 0;        // OR of every line's inhibits
  unsigned long or_mask_vcpus = 0;  // OR over lines printed by vCPU threads ("CPU n/KVM")
  bool pit_reinj_set = false;       // a 'set reason=9' line was seen
  // How often each (set, reason, inhibits) form was printed; `forms_overflow` counts lines whose
  // form did not fit.
  struct Form {
    bool set;
    unsigned reason;
    unsigned long inhibits;
    uint64_t count;
  };
  std::vector<Form> forms;
  uint64_t forms_overflow = 0;
  uint64_t Count(bool set, unsigned reason, unsigned long inhibits) const;

  // Phases: Scenario::phase_marker lines on the serial port advance `phase`.
  unsigned phase = 0;
  uint64_t phase_lines[kMaxPhases] = {};
  uint64_t phase_irqwin_set[kMaxPhases] = {};      // 'set reason=8' lines
  uint64_t phase_irqwin_cleared[kMaxPhases] = {};  // 'cleared reason=8' lines

  // CountIrqWin() inputs (see IrqWinCounts).
  uint64_t other_updates = 0;
  uint64_t irqwin_updates_after_pit_reinj = 0;
  uint64_t irqwin_broadcasts_after_pit_reinj = 0;

  // Seed 000's legacy pattern once PIT_REINJ is set (reason 8 lines only): 'set ... 0x300' then
  // 'cleared ... 0x200' per window; a set while the window is already open is a re-arm; the
  // clear printed with PIT_REINJ's own update (IRQWIN re-derived) is skipped once.
  uint64_t alt_pairs = 0, alt_sets = 0, alt_repeats = 0;
  bool alt_well_formed = true;

  // Streaming state.
  bool rederives = false;  // counted strategy: every other update re-derives IRQWIN
  bool after_other = false, alt_first = true, alt_last_set = false;
  unsigned long mask = 0;

  // Folds one trace line in (lines of other events are ignored). Returns whether it was a
  // kvm_apicv_inhibit_changed line, and its parse in *out when it parsed.
  bool Add(const std::string& line, InhibitLine* out);
};

struct Scenario {
  std::string label;  // e.g. "legacy, avic=on, irqchip=on, delay"
  std::string guest;
  int smp = 1;
  std::string append;
  virt::VmConfig config;
  double timeout_s = 300;
  // Full kvm_apicv_inhibit_changed lines kept for display, from the first (bounded memory; the
  // checks use `inhibits`, which sees every line).
  size_t inhibit_keep = 200000;
  // A serial-port line containing this text starts the next InhibitSummary phase (empty: none).
  std::string phase_marker;
  // Lines (up to excerpt_max) for which this returns true are copied to `excerpt` as they stream
  // by; it sees the summary as it was before the line.
  std::function<bool(const InhibitLine&, const InhibitSummary&)> excerpt_filter;
  size_t excerpt_max = 8;
  // Non-empty: every trace line of the run is also written to this file (apicv repro
  // --trace-dir), for `apicv trace summary|diff` against a host's trace.
  std::string trace_path;

  // Results.
  kvm::RunResult result;
  virt::VmStats stats;
  std::vector<std::string> inhibit_lines;  // the first inhibit_keep kvm_apicv_inhibit_changed lines
  InhibitSummary inhibits;                 // all of them
  std::vector<std::string> excerpt;        // see excerpt_filter
  uint64_t trace_lines_total = 0;
  uint64_t trace_first_ns = 0, trace_last_ns = 0;  // timestamps of the first and last trace event
  std::string serial;
  bool passed = false;  // the guest printed PASS and exited through isa-debug-exit
};

// The accelerator scenarios run on (apicv repro, the guest benchmarks): -accel kvm|emu.
enum class Accel : uint8_t { kKvm, kEmu };
// kvm when /dev/kvm opens, else emu (QEMU's order).
Accel DefaultAccel();
void SetScenarioAccel(Accel accel);
Accel ScenarioAccel();
const char* AccelName(Accel accel);
// Parses "kvm" / "emu" for option `opt` (UsageError otherwise).
Accel ParseAccel(const std::string& opt, const std::string& value);

// Runs the scenario on ScenarioAccel(). Throws kvm::KvmUnavailable when that is kvm and /dev/kvm
// is missing.
void RunScenario(Scenario& s);

// The body after "kvm_apicv_inhibit_changed: " of a full trace line.
std::string InhibitBody(const std::string& line);

bool ParseInhibitBody(const std::string& body, InhibitLine* out);
// The scenario's kept inhibit lines (Scenario::inhibit_lines) that parse, in order.
std::vector<InhibitLine> ParsedInhibitLines(const Scenario& s);
// The lines after the first one that sets `reason` (empty if it is never set).
std::vector<InhibitLine> LinesAfterSet(const std::vector<InhibitLine>& v, unsigned reason);

// The last "<N> <unit>/s" figure the guest printed on its serial port (nullopt if none).
std::optional<double> FindGuestRate(const std::string& serial, const char* unit);
// The same, 0 if none.
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
