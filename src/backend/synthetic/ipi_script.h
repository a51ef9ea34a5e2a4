// Scripted IPI guests on the synthetic backend: vCPUs that send fixed IPIs, take interrupts, EOI
// them and halt, against a real virt::ApicvVm through exactly the IrqChip calls the KVM backend
// makes per exit (src/backend/kvm/run_guest.cc ApicvLoop/Halt): run_timers,
// check_and_inject_events (the vector it returns is what KVM_INTERRUPT would inject), vcpu_enter,
// the "guest" runs, vcpu_exit, set_cr8, the access (wrmsr / mmio_write), instruction_emulated;
// HLT blocks through has_events() (which clears AVIC IsRunning before its last check) and the
// backend's kick; an interrupt-window exit calls interrupt_window_exit().
// Intel SDM vol. 3A 11.6 (ICR, shorthands, logical destinations), 11.8.4-11.8.5 (IRR/ISR, EOI),
// 11.5.3 (ESR); AMD APM vol. 2 15.29.3.1 (AVIC IPI delivery), 15.29.5.1 (AVIC_INCOMPLETE_IPI);
// Intel SDM vol. 3C 30.6 (posted interrupts); spec §5, §7.
//
// The guest of one vCPU: enables its APIC (x2APIC: IA32_APIC_BASE.EXTD; xAPIC: SPIV, and a flat
// LDR 1 << vCPU for vCPUs 0..7), then runs its streams: each sends `count` fixed, edge-triggered
// IPIs with one vector, at most one every `every` guest actions, optionally limited to
// `max_in_flight` IPIs sent and not yet received per target. A guest action that is not due to
// exit (waiting for a stream's next due action or credit, or a handler working before its EOI)
// stays in guest mode for one scheduler turn. An interrupt taken runs a handler
// that EOIs after `eoi_delay` further actions (0: at once, with IF=0 until its IRET; otherwise
// the handler sets IF first, so higher priority classes nest). Every `cli_every`-th ICR write is
// made with IF=0 (cli; wrmsr; sti), so an interrupt arriving then needs an interrupt window. A
// vCPU with nothing left to send halts (HLT with IF=1) until the model has an event for it.
//
// Exits are those of the KVM backend: every LAPIC access goes through the model between
// vcpu_exit and the next vcpu_enter, and the model decides what the hardware would have
// accelerated; the figures count an ICR write or EOI as an exit only when the model did not
// accelerate it (AVIC IPI to running targets, AVIC edge EOI, APICv EOI outside the EOI-exit
// bitmap). A kick that arrives after the loop's check ends the entry without a guest action
// (KVM_RUN returning EINTR), as in the backend.
//
// Two drivers. run_deterministic(): one thread, a round-robin scheduler over the vCPUs, each turn
// one phase of one vCPU (entry, guest run + exit, or one halt check), so targets really are in
// guest mode (IsRunning, IN_GUEST_MODE) while others send; a kick is a sequence bump a halted
// vCPU waits for; the caller's FakeClock advances by step_ns per turn. Same scripts -> identical
// figures and trace text. run_threads(): one host thread per vCPU, halts block on a condition
// variable with bounded waits, a deadline ends the run; for stress and TSan.
//
// Conservation (checked after a completed run, result.problems): for every (target, vector >= 16)
// the messages addressed to it are >= the interrupts it took, and >= 1 taken when >= 1 was sent
// (the last IPI of a burst is never lost); the difference is coalescing (a vector already pending
// in IRR/PIR absorbs the next one, SDM 11.8.4), reported per flow. Streams with max_in_flight 1
// cannot coalesce (the next IPI waits until the previous one left IRR), so there the counts
// must be equal; validation requires such a stream to own its (target, vector) pairs. Vectors
// 0-15 must never be taken (AVIC: INVALID_IPI_VECTOR; otherwise illegal, SDM 11.5.2). At the end
// no vector >= 16 may remain in any IRR or ISR, and a halted vCPU found with events it was never
// woken for counts as a lost wake-up.
//
// Not supported: NMI/INIT/SIPI/lowest-priority/level IPIs (only fixed edge IPIs are scripted),
// mixed xAPIC/x2APIC guests, cluster-model xAPIC logical destinations, TPR/CR8 changes, LAPIC
// timers, guest memory and instructions (only the exiting instructions exist). Per-vCPU
// incomplete-IPI causes and the accelerated/exit split are attributed from the model's VM-wide
// counters around each access, so they are filled only by run_deterministic(); run_threads()
// leaves them zero and the VM totals are in IpiRunResult::vm.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "virt/apicv_vm.h"
#include "virt/vm_config.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::synthetic {

enum class IpiDest : uint8_t {
  kPhysical,    // one target (may be the sender itself)
  kAllButSelf,  // destination shorthand 11b: all excluding self
  kLogical,     // logical destination: x2APIC one cluster, xAPIC flat model (vCPUs 0..7)
};

struct IpiStream {
  IpiDest dest = IpiDest::kPhysical;
  std::vector<int> targets;  // kPhysical: exactly one; kLogical: 1..8 (xAPIC) or one cluster
  uint8_t vector = 0x40;
  uint64_t count = 1;          // IPIs (ICR writes) to send, <= kMaxIpisPerStream
  uint32_t every = 1;          // at most one ICR write every `every` guest actions (>= 1)
  uint32_t start = 0;          // the first ICR write no earlier than this guest action
  uint32_t max_in_flight = 0;  // per target, sent minus taken; 0: unlimited
};
inline constexpr uint64_t kMaxIpisPerStream = 100'000'000;

struct IpiVcpuScript {
  std::vector<IpiStream> streams;  // served in order, the first one due with credit wins
  uint32_t eoi_delay = 0;          // guest actions between taking an interrupt and its EOI
  uint32_t cli_every = 0;          // every N-th ICR write is made with IF=0 (0: never)
  uint32_t guest_spin = 0;         // run_threads(): spin this long in guest mode per entry
};

struct IpiScriptConfig {
  int nr_vcpus = 4;  // 1..1024 (xAPIC: 1..255)
  virt::VendorModel vendor = virt::VendorModel::kSvm;
  bool enable_apicv = true;
  bool x2apic = true;  // x2APIC (ICR MSR 0x830, EOI MSR 0x80B) or xAPIC (MMIO at 0xFEE00000)
  virt::IrqWindowMode irqwin = virt::IrqWindowMode::kCounted;
  virt::IrqchipPlacement placement = virt::IrqchipPlacement::kOn;
  // Discard by default: with `delay` the PIT_REINJ inhibit keeps AVIC off for the whole run.
  virt::PitPolicy pit_policy = virt::PitPolicy::kDiscard;
  virt::AvicKick avic_kick = virt::AvicKick::kFast;
  bool esr_sdm_mode = false;
  bool device_trace = true;  // kvm_apic_ipi / kvm_apic_accept_irq / kvm_eoi lines
  int base_pid = 10402;      // trace pid of vCPU 0's thread; vCPU n is base_pid + n
};

struct IpiVcpuFigures {
  uint64_t ipis_sent = 0;                // ICR writes
  uint64_t ipi_messages = 0;             // destination vCPUs addressed by them
  std::array<uint64_t, 256> received{};  // interrupts taken (injected into the guest), by vector
  uint64_t received_total = 0;
  uint64_t eois = 0;  // EOI writes
  uint64_t halts = 0;
  uint64_t wakeups = 0;          // halts that blocked and were ended by an event
  uint64_t lost_wakeups = 0;     // events found by the watchdog poll, never signalled by a kick
  uint64_t kicks = 0;            // kicks the model sent to this vCPU (the backend's kick callback)
  uint64_t kick_exits = 0;       // entries ended by a kick before the guest acted (EINTR)
  uint64_t window_requests = 0;  // entries made with request_interrupt_window set
  uint64_t window_exits = 0;     // interrupt-window exits taken (incl. HLT with a window)
  uint64_t work = 0;             // guest actions that did not exit (waiting for a due time)
  uint64_t credit_waits = 0;     // of those, spent polling for a due stream's credit
  uint64_t entries = 0;
  uint64_t nmis = 0;
  uint32_t esr = 0;  // ESR as the guest read it at the end (write 0, read; SDM 11.5.3)
  // run_deterministic() only (see the header comment).
  uint64_t exits = 0;  // exits the KVM backend would take (accelerated accesses excluded)
  uint64_t accelerated_icr_writes = 0;
  uint64_t accelerated_eois = 0;
  uint64_t incomplete_ipi = 0;
  std::array<uint64_t, 6> incomplete_ipi_by_cause{};  // AvicIpiFailureCause; last = other
  bool operator==(const IpiVcpuFigures&) const = default;
};

struct IpiFlow {
  int target = 0;
  uint8_t vector = 0;
  uint64_t sent = 0;      // messages addressed to target with vector
  uint64_t received = 0;  // interrupts the target took with vector
  uint64_t coalesced() const { return sent > received ? sent - received : 0; }
  bool operator==(const IpiFlow&) const = default;
};

struct IpiRunResult {
  std::vector<IpiVcpuFigures> vcpus;
  std::vector<IpiFlow> flows;         // by target, then vector; only those with traffic
  virt::VmStats vm;                   // the model's counters at the end of the run
  bool completed = false;             // every script finished and every vCPU drained
  uint64_t steps = 0;                 // run_deterministic(): scheduler turns
  uint64_t wall_ns = 0;               // run_threads()
  std::vector<std::string> problems;  // conservation violations (empty: conserved)
  bool conserved() const { return completed && problems.empty(); }
  uint64_t total_sent() const;
  uint64_t total_received() const;
  uint64_t total_coalesced() const;
};

// One VM and its scripts; run it once with either driver.
class IpiScriptVm {
 public:
  // Validates the scripts (std::invalid_argument with the reason) and builds the ApicvVm on
  // `clock`, which must outlive this object; `trace` may be null.
  IpiScriptVm(const IpiScriptConfig& config, std::vector<IpiVcpuScript> scripts, const Clock& clock,
              trace::TraceSink* trace);
  ~IpiScriptVm();
  IpiScriptVm(const IpiScriptVm&) = delete;
  IpiScriptVm& operator=(const IpiScriptVm&) = delete;

  // Single thread, round-robin; `clock` (null: none) is advanced by step_ns before every turn
  // (pass the VM's clock for meaningful trace timestamps). Stops after max_steps turns.
  IpiRunResult run_deterministic(FakeClock* clock, uint64_t step_ns, uint64_t max_steps);
  // One thread per vCPU; gives up (completed = false) after `timeout`.
  IpiRunResult run_threads(std::chrono::milliseconds timeout);

  virt::ApicvVm& vm() { return *vm_; }

 private:
  enum class Phase : uint8_t { kEnter, kRun, kHalt, kDone };
  enum class Action : uint8_t { kEoi, kIcr, kWork, kHlt };
  struct StreamState {
    uint64_t sent = 0;
    uint64_t next_due = 0;
  };
  struct alignas(64) Vcpu {
    // Shared.
    std::atomic<uint64_t> kicks{0};
    std::atomic<uint32_t> kick_seq{0};
    std::mutex mu;  // with cv: a halted vCPU's wait (run_threads); leaf lock
    std::condition_variable cv;
    std::array<std::atomic<uint64_t>, 256> received{};
    std::array<std::atomic<uint64_t>, 256> sent_to{};
    // ICR writes addressed to this vCPU (vector >= 16, from another vCPU): counted before the
    // write and after it returned (post and kick done). A blocked halt that finds no delivery in
    // flight, one started after its last check completed, and its kick sequence unmoved has
    // lost a wake-up.
    std::atomic<uint64_t> deliveries_started{0};
    std::atomic<uint64_t> deliveries_done{0};
    // Owner thread.
    Phase phase = Phase::kEnter;
    uint32_t loop_seq = 0;  // kick sequence at the top of the loop (BeginCheck)
    virt::Injection inj;
    bool took_interrupt = false;
    bool if_flag = true;
    bool sti_next = false;      // IRET / STI: IF is set at the start of the next guest run
    std::vector<uint64_t> isr;  // EOI due action, innermost last
    uint64_t actions = 0;
    uint64_t icr_writes = 0;
    std::vector<StreamState> streams;
    bool streams_done = false;
    bool halt_blocked = false;  // this halt has blocked at least once
    uint32_t halt_seq = 0;      // kick sequence the blocked halt waits to change
    uint64_t halt_kicks = 0;    // model kicks when the halt blocked
    size_t stream_cursor = 0;
    IpiVcpuFigures fig;
  };

  void validate() const;
  void setup_vcpu(int v);
  void set_task(int v) const;
  void kick(int v, bool from_model);
  // One phase of vCPU v; `threaded` selects blocking halts.
  void step(int v, bool threaded);
  void phase_enter(int v);
  void phase_run(int v, bool threaded);
  void phase_halt(int v, bool threaded);
  void finish_vcpu(int v);
  Action choose_action(Vcpu& c, size_t* stream, bool* starved);
  bool has_credit(const Vcpu& c, int v, size_t s) const;
  std::vector<int> stream_targets(int v, const IpiStream& s) const;
  void write_icr(int v, size_t s);
  void write_eoi(int v);
  IpiRunResult collect(bool completed);

  const IpiScriptConfig config_;
  const std::vector<IpiVcpuScript> scripts_;
  trace::TraceSink* trace_;
  std::unique_ptr<virt::ApicvVm> vm_;
  std::unique_ptr<Vcpu[]> vcpus_;
  std::vector<std::vector<std::vector<int>>> targets_;  // [vcpu][stream]
  std::atomic<int> senders_left_{0};
  std::atomic<bool> stop_{false};
  bool attribute_ = false;  // run_deterministic(): per-access attribution from VmStats deltas
  bool ran_ = false;
};

}  // namespace apicv::synthetic
