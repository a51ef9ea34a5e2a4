// The synthetic backend: scripted vCPUs that drive the inhibit manager, the IRQ-window strategy and
// the vCPU request/kick protocol without /dev/kvm, shaped like KVM's vcpu_enter_guest() loop:
//
//   process requests (APICV_UPDATE under the read lock, EVENT -> inject or open a window)
//   -> mode := IN_GUEST, re-check requests -> "guest" runs (polls for a kick) -> exit
//   -> handle the exit (interrupt window -> interrupt_window_interception) -> maybe halt.
//
// Each scripted interrupt is one that cannot be injected at once (as an ExtINT arriving with the
// guest's IF=0), so it costs exactly one interrupt window: open, window exit, inject.
// Two drivers: run_threads() (one host thread per vCPU, for stress and benchmarks) and
// run_deterministic() (one thread, a seeded scheduler stepping vCPUs; identical output per seed).
//
// Not supported here: guest memory or instructions, LAPIC/IOAPIC/PIC device models (interrupts
// are abstract vectors), IPIs between vCPUs, NMIs, nested (L2) execution. IPIs, EOIs and halts
// through the real LAPIC/AVIC/posted-interrupt models are the IPI scripts' job (ipi_script.h,
// IpiScriptVm, which drives a whole virt::ApicvVm); docs/synthetic.md compares the two.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "devices/clock.h"
#include "virt/apicv_inhibits.h"
#include "virt/irq_window.h"
#include "virt/vcpu_request.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::synthetic {

struct SyntheticConfig {
  int nr_vcpus = 4;
  virt::Vendor vendor = virt::Vendor::kSvm;
  bool enable_apicv = true;  // KVM's avic= / enable_apicv module parameter
  virt::IrqWinStrategy irqwin = virt::IrqWinStrategy::kCounted;
  bool irqchip = true;         // KVM_CREATE_IRQCHIP: clears ABSENT
  bool pit_reinject = true;    // KVM_CREATE_PIT2 with reinjection (lost_tick_policy=delay)
  int base_pid = 10402;        // trace "pid" of vCPU 0's thread; vCPU n is base_pid + n
  std::vector<int> host_cpus;  // trace CPU column per vCPU (default: the vCPU index)
};

struct VcpuScript {
  uint32_t window_every = 1;  // raise an un-injectable interrupt every N iterations (0: never)
  uint32_t halt_every = 0;    // block in HLT every N iterations (0: never)
  uint32_t guest_spin = 0;    // busy-wait iterations per guest entry (a kick ends it early)
  uint8_t vector = 0x30;      // vector injected for each scripted interrupt
  // Time every call into the IRQ-window path (enable_irq_window, inject_irq,
  // interrupt_window_interception) with the steady clock: SyntheticRunStats::window_path_ns.
  bool time_window_path = false;
};

struct SyntheticRunStats {
  uint64_t iterations = 0;
  uint64_t windows = 0;  // interrupt-window exits taken
  uint64_t injections = 0;
  uint64_t wall_ns = 0;  // run_threads(): start barrier to last thread done
  uint64_t cpu_ns = 0;   // run_threads(): CPU time of all vCPU threads (CLOCK_THREAD_CPUTIME_ID)
  // Wall time vCPUs spent inside the IRQ-window path, summed over vCPUs (script.time_window_path):
  // the time a vCPU is kept from its guest by the window bookkeeping, lock waits included.
  uint64_t window_path_ns = 0;
  virt::ApicvInhibitStats inhibit;  // deltas over the run
};

class SyntheticVm {
 public:
  // Creates the VM as KVM + QEMU do: kvm_apicv_init(), then (config) clear ABSENT and set
  // PIT_REINJ. `trace` may be null and must outlive the VM.
  SyntheticVm(const SyntheticConfig& config, trace::TraceSink* trace);
  ~SyntheticVm();

  int nr_vcpus() const { return config_.nr_vcpus; }
  virt::VcpuRequestSet& requests() { return requests_; }
  virt::ApicvInhibits& inhibits() { return inhibits_; }
  virt::IrqWindow& irq_window() { return irq_window_; }

  // One run-loop iteration of `vcpu`, on the calling thread (which must be the only one stepping
  // that vCPU). Sets the thread's trace task to "CPU <vcpu>/KVM".
  void step(int vcpu, const VcpuScript& script);

  // Single-threaded: `steps` steps, each on a vCPU picked by a splitmix64 stream from `seed`.
  // When `clock` is given it advances by `step_ns` before every step (trace timestamps).
  SyntheticRunStats run_deterministic(uint64_t seed, uint64_t steps, const VcpuScript& script,
                                      FakeClock* clock = nullptr, uint64_t step_ns = 1000);

  // One host thread per vCPU, each doing `iterations` steps; all start together.
  SyntheticRunStats run_threads(uint64_t iterations, const VcpuScript& script);

  uint64_t pending_interrupts(int vcpu) const;

 private:
  struct alignas(64) VcpuState {
    uint64_t iteration = 0;
    bool irq_pending = false;                 // an interrupt waits for injection
    bool ready = false;                       // the guest is interruptible (a window opened)
    std::atomic<bool> pending_shadow{false};  // irq_pending, readable by other threads
    uint64_t window_path_ns = 0;              // owner thread only; summed after the run
  };
  void set_task(int vcpu) const;
  void check_and_inject_events(int vcpu, const VcpuScript& script);
  uint64_t take_window_path_ns();

  SyntheticConfig config_;
  trace::TraceSink* trace_;
  virt::VcpuRequestSet requests_;
  virt::ApicvInhibits inhibits_;
  virt::IrqWindow irq_window_;
  std::unique_ptr<VcpuState[]> state_;
};

}  // namespace apicv::synthetic
