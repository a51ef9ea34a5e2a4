// The Trace Event Format (Chrome's "JSON Object Format", read by ui.perfetto.dev and
// chrome://tracing) built from KVM trace events (trace_event.h), behind `apicv run --trace-json`
// and `apicv trace export`. Works on any event stream: apicv's own runs (nanosecond virtual
// time, fed from the TraceSink observer) and a host's ftrace / trace-cmd text (microseconds).
//
// Layout (docs/timeline.md has the picture):
//  - one process, the VM (pid 1); one thread track per traced thread (tid = the thread's pid,
//    named by its comm); vCPU threads ("CPU n/KVM", or any thread printing kvm_entry "vcpu n")
//    sorted by vCPU id;
//  - vCPU tracks: "guest" spans from kvm_entry to kvm_exit, "exit <reason>" spans from kvm_exit
//    to the next kvm_entry ("halt" for a HLT exit), zero-length "IPI sent" / "IPI received"
//    slices joined by a flow arrow (kvm_apic_ipi, then the kvm_apic_accept_irq lines that follow
//    it on the sender's thread name the targets; the target receives at its kvm_inj_virq of that
//    vector, or at once for kvm_apicv_accept_irq: posted / AVIC delivery needs no injection),
//    instants for injections, EOIs and every other event (its body in args), and an async
//    "IRQ window" span from the vCPU's "set reason=8" inhibit line to its IRQ-window exit (vintr /
//    INTERRUPT_WINDOW) or its "cleared reason=8" line;
//  - the VM track (tid kVmTid): the inhibit mask as a counter ("APICv inhibit mask") and one async
//    span per inhibit reason while its bit is set.
//
// Clocks: ts is microseconds with three decimals (the nanoseconds). A host's per-CPU trace clocks
// may disagree, so (1) a thread's spans never go backwards: an event older than its thread's last
// one is moved to that time (counted as clamped_events); (2) a flow's end is never earlier than
// its start: a receive stamped before its send keeps its slice where it was, but the arrow ends at
// the send time (counted as clamped_flows, with the skew in the slice's args).
//
// Bounded memory whatever the input: at most kMaxThreads threads (later ones' events are dropped
// and counted), at most kMaxPendingIpis unreceived IPIs per vCPU (the oldest is dropped).
//
// Not supported: kvm_exit's VMX reason flags (printed in args only), nested-guest events, the
// pre-4.x "kvm_entry: vcpu %u" without rip (accepted: the rip is optional), per-process grouping
// of several VMs in one host trace (every thread goes to one process).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <ostream>
#include <string>

#include "trace/trace_event.h"

namespace apicv::trace {

inline constexpr size_t kMaxThreads = 4096;
inline constexpr size_t kMaxPendingIpis = 256;
inline constexpr int kVmPid = 1;
// The VM track: a tid no thread has (pid_max is at most 2^22), so pid 0 ("<idle>") keeps its own.
inline constexpr int kVmTid = 0x7fffffff;

struct TimelineStats {
  uint64_t events = 0;
  uint64_t undecoded = 0;  // known event names whose body did not parse (shown as instants)
  uint64_t clamped_events = 0;
  uint64_t flows = 0;
  uint64_t clamped_flows = 0;
  uint64_t unreceived_ipis = 0;  // sent, never received before the end (or dropped)
  uint64_t dropped_events = 0;   // threads beyond kMaxThreads
  uint64_t threads = 0;
  uint64_t vcpu_threads = 0;
  int ts_digits = 9;  // the coarsest input resolution seen (6: microseconds)
};

class ChromeTraceWriter {
 public:
  // `source` names the input in the process name and otherData.
  ChromeTraceWriter(std::ostream& out, std::string source);
  void Add(const TraceEvent& ev);
  // Closes open spans at their thread's last time, writes the metadata and ends the JSON.
  void Finish();
  const TimelineStats& stats() const { return stats_; }

 private:
  struct Pending {
    uint64_t flow = 0;
    unsigned vec = 0;
    uint64_t send_ts = 0;
  };
  struct Thread {
    int tid = 0;
    std::string comm;
    int vcpu = -1;
    uint64_t last_ts = 0;
    bool seen = false;
    enum class Span : uint8_t { kNone, kGuest, kExit } span = Span::kNone;
    uint64_t span_start = 0;
    std::string span_name, span_cat, span_args;
    // The IPI being sent: kvm_apic_ipi opens it, the accept lines that follow name its targets.
    bool ipi_open = false;
    uint64_t ipi_ts = 0;
    unsigned ipi_vec = 0;
    int last_target = -1;  // the accept just seen (a kvm_apicv_accept_irq may follow it)
    uint64_t last_flow = 0;
    bool irqwin_open = false;
  };

  Thread* ThreadFor(const TraceEvent& ev);
  void SetVcpu(Thread& t, int vcpu);
  void CloseSpan(Thread& t, uint64_t ts);
  void OpenSpan(Thread& t, uint64_t ts, Thread::Span kind, std::string name, std::string cat,
                std::string args);
  void Instant(const Thread& t, uint64_t ts, const std::string& name, const std::string& cat,
               const std::string& args);
  void ZeroSlice(int tid, uint64_t ts, const std::string& name, const std::string& cat,
                 const std::string& args);
  void Receive(int target_vcpu, const Pending& p, uint64_t ts, bool posted);
  void IrqWindow(Thread& t, uint64_t ts, bool open);
  void Inhibits(const Thread& t, uint64_t ts, unsigned long mask);
  void Write(const std::string& event_json);

  std::ostream& out_;
  std::string source_;
  bool first_ = true;
  bool finished_ = false;
  std::map<int, Thread> threads_;               // by tid
  std::map<int, int> vcpu_tid_;                 // vCPU id -> tid
  std::map<int, std::deque<Pending>> pending_;  // by target vCPU
  uint64_t next_flow_ = 1;
  uint64_t max_ts_ = 0;
  bool have_mask_ = false;
  unsigned long mask_ = 0;
  uint64_t mask_ts_ = 0;
  TimelineStats stats_;
};

// "1234.567": nanoseconds as microseconds with three decimals.
std::string FormatMicros(uint64_t ns);
// A JSON string literal; bytes outside printable ASCII are escaped (\u00XX), so hostile input
// always yields valid JSON.
std::string JsonString(std::string_view s);

}  // namespace apicv::trace
