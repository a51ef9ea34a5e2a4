// The contract between an execution backend (KVM, synthetic) and apicv's virtualization layer.
// A backend owns vCPU threads and guest state; for every exit that touches interrupt hardware it
// calls into IrqChip, and before every guest entry it asks IrqChip what to inject, the way KVM's
// vcpu_enter_guest() calls kvm_check_and_inject_events(). All per-vCPU methods are called on that
// vCPU's own thread unless stated otherwise.
#pragma once

#include <cstdint>
#include <functional>

namespace apicv::virt {

enum class AccessResult : uint8_t {
  kHandled,  // apicv served the access
  kNotMine,  // not an interrupt-controller address; the backend handles it
  kGp,       // the access faults: inject #GP (MSRs)
};

// What the backend must do before the next guest entry.
struct Injection {
  bool nmi = false;             // inject an NMI (KVM_NMI)
  int vector = -1;              // inject this external interrupt (KVM_INTERRUPT), -1 none
  bool request_window = false;  // ask for an exit when the guest can take an interrupt
};

// Architectural run state changes from INIT / SIPI (SDM 8.4, 11.6.1).
struct MpEvent {
  enum Kind : uint8_t { kNone, kInit, kSipi } kind = kNone;
  uint8_t sipi_vector = 0;
};

class IrqChip {
 public:
  virtual ~IrqChip() = default;

  // Guest accesses. `data` is little-endian, `len` 1..8.
  virtual AccessResult mmio_read(int vcpu, uint64_t gpa, void* data, unsigned len) = 0;
  virtual AccessResult mmio_write(int vcpu, uint64_t gpa, const void* data, unsigned len) = 0;
  virtual AccessResult pio_in(int vcpu, uint16_t port, void* data, unsigned len) = 0;
  virtual AccessResult pio_out(int vcpu, uint16_t port, const void* data, unsigned len) = 0;
  virtual AccessResult rdmsr(int vcpu, uint32_t msr, uint64_t* value) = 0;
  virtual AccessResult wrmsr(int vcpu, uint32_t msr, uint64_t value) = 0;

  // CR8 <-> TPR (SDM 10.8.6.1). The backend reports the guest's CR8 after each exit and loads
  // get_cr8() before each entry.
  virtual void set_cr8(int vcpu, uint64_t cr8) = 0;
  virtual uint64_t get_cr8(int vcpu) = 0;

  // Called right before entering the guest. `ready` is KVM's ready_for_interrupt_injection
  // (IF=1 and no interrupt shadow), `if_set` is RFLAGS.IF.
  virtual Injection check_and_inject_events(int vcpu, bool ready, bool if_set) = 0;
  // The backend took the window exit it asked for (KVM_EXIT_IRQ_WINDOW_OPEN, or HLT with IF=1
  // after a window request): SVM's interrupt_window_interception().
  virtual void interrupt_window_exit(int vcpu) = 0;

  // Guest entry / exit bracket (AVIC IsRunning, posted-interrupt "in guest mode").
  virtual void vcpu_enter(int vcpu) = 0;
  virtual void vcpu_exit(int vcpu) = 0;

  // HLT: true when the vCPU has something to do (kvm_vcpu_has_events): a deliverable interrupt
  // with IF=1, an NMI, INIT/SIPI, a PMI request. Pure query.
  virtual bool has_events(int vcpu, bool if_set) = 0;
  // Earliest absolute time (ns, the IrqChip's clock) at which this vCPU's own timers need service;
  // UINT64_MAX when none. The backend sleeps no longer than this while halted.
  virtual uint64_t next_deadline_ns(int vcpu) = 0;
  // Fire this vCPU's expired timers (LAPIC timer). Called on the vCPU thread.
  virtual void run_timers(int vcpu) = 0;

  // VM-wide timers (the seam of virt/timer_service.h). The earliest absolute time (the
  // IrqChip's clock) at which service_timers() has work: PIT channel 0, the IOAPIC's deferred
  // re-delivery, and every vCPU's LAPIC timer / TSC deadline / vPMU cycle overflow not yet
  // serviced; UINT64_MAX when none. Any thread.
  virtual uint64_t next_deadline_ns() = 0;
  // Fires the device timers due at `now_ns` (PIT ticks, IOAPIC re-delivery) and makes each vCPU
  // whose own deadline passed request KVM_REQ_EVENT and kicks it, once per deadline (the vCPU
  // then fires its LAPIC timer in run_timers() on its own thread). Returns next_deadline_ns().
  // Called by the VM's TimerService thread, or by a virtual-time backend: one caller at a time.
  virtual uint64_t service_timers(uint64_t now_ns) = 0;

  // INIT / SIPI received by this vCPU since the last call (consumed).
  virtual MpEvent take_mp_event(int vcpu) = 0;

  // Rising edges of PIT channel 0's OUT the irqchip's PIT has generated since the VM was created
  // (every edge, whether its tick was delivered, coalesced or held for reinjection):
  // the upper bound on the ticks a guest can take. UINT64_MAX when this irqchip does not own the
  // PIT (KVM's in-kernel PIT). Any thread.
  virtual uint64_t pit_irq0_edges() { return UINT64_MAX; }

  // One retired instruction that apicv emulated on the guest's behalf (vPMU counting).
  virtual void instruction_emulated(int vcpu) = 0;
  // A backend that executes every guest instruction itself (-accel emu): `count` instructions
  // retired at privilege level `cpl` since its previous call, every one of them, not only those
  // that exit (it then never calls instruction_emulated). Returns true when a counter overflow
  // raised a PMI: the backend ends the vCPU's run so that its next entry delivers it.
  virtual bool instructions_retired(int vcpu, uint64_t count, uint8_t cpl) {
    (void)vcpu, (void)count, (void)cpl;
    return false;
  }
  // Such a backend's run-budget cap: instructions at `cpl` until the first PMI-enabled
  // "instructions retired" counter overflows; UINT64_MAX when none (or no vPMU).
  virtual uint64_t instructions_to_pmi(int vcpu, uint8_t cpl) {
    (void)vcpu, (void)cpl;
    return UINT64_MAX;
  }

  // System reset (0xCF9, keyboard controller): all devices back to RESET state. Called with every
  // vCPU out of the guest.
  virtual void reset() = 0;

  // The backend supplies how to kick a vCPU out of the guest or out of a halt wait. Thread-safe.
  virtual void set_kick(std::function<void(int vcpu)> kick) = 0;
};

}  // namespace apicv::virt
