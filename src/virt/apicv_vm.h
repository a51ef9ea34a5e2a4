// ApicvVm: apicv's whole interrupt subsystem for one VM, behind the IrqChip contract: the thin
// owner that creates the VM's components and wires them, the way KVM's struct kvm / kvm_vcpu tie
// lapic.c, ioapic.c, irq.c, x86.c and the vendor files together. It implements no mechanism:
// each lives in a component named after its KVM file (docs/architecture.md):
//   vcpu_devices.h       each vCPU's Lapic and Pmu (vcpu->arch.apic, vcpu->arch.pmu)
//   apic_delivery.*      the APIC map, IPI and IOAPIC message routing and acceptance (lapic.c
//                        delivery, irq_comm.c)
//   irqchip_glue.*       IOAPIC, PIC, PIT, GSI lines, EOI broadcast, ack / mask notifiers, ExtINT,
//                        the IOAPIC scan (ioapic.c glue, irq.c, i8254.c reinjection)
//   event_injection.*    kvm_check_and_inject_events, kvm_vcpu_has_events, IRQ windows
//   svm_avic.*           AVIC tables, IsRunning, ICR writes, unaccelerated accesses (svm/avic.c)
//   vmx_posted_intr.*    posted interrupts and EOI-exit bitmaps (vmx/posted_intr.c)
//   vm_pmu.*             PMU MSRs, PMIs, cycle counting (pmu.c)
//   vm_timers.*          per-vCPU deadlines behind the timer seam (virt/timer_service.h)
//   apicv_inhibits.*, irq_window.*, vcpu_request.*: the inhibit machinery, IRQ-window
//                        strategies, requests and kicks.
// What stays here: construction (the inhibits KVM sets when it creates the irqchip, the PIT, the
// AVIC and the vCPUs), dispatch of guest accesses to the component that owns the address, the
// LAPIC's side effects routed to their owners, the vCPU request processing before entry, INIT
// and RESET across every component, and the statistics they report.
//
// Placement (-machine kernel-irqchip=on|split|off) only changes which layer a device is modelled
// in: who may inhibit, how ExtINT reaches the LAPIC, and where EOIs go. Intel SDM vol. 3A ch. 11;
// AMD APM vol. 2 15.29; spec §2-§9.
//
// Threading: per-vCPU methods run on the vCPU's thread and touch only that vCPU's Lapic/Pmu;
// cross-vCPU delivery posts into the target's PIR (Lapic::post, or the PiDesc with APICv on
// vmx) and kicks. Time comes only from the backend's Clock; the VM's timers are serviced through
// the backend's TimerService (a HostTimerService thread by default; none with a caller-supplied
// service). ApicvVm holds no lock of its own: every lock belongs to a component, and
// docs/locking.md lists them with their order.
//
// Not supported: Hyper-V SynIC, Xen upcalls, nested (L2) guests, SMI, the x2APIC "hotplug hack"
// ID format, IOMMU posted interrupts; per component, see its header.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "devices/clock.h"
#include "devices/lapic.h"
#include "devices/pmu/pmu.h"
#include "virt/apic_delivery.h"
#include "virt/apicv_inhibits.h"
#include "virt/backend_kick.h"
#include "virt/device_trace.h"
#include "virt/event_injection.h"
#include "virt/host_timer_service.h"
#include "virt/irqchip.h"
#include "virt/irqchip_glue.h"
#include "virt/posted_interrupt.h"
#include "virt/svm_avic.h"
#include "virt/timer_service.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"
#include "virt/vm_pmu.h"
#include "virt/vm_timers.h"
#include "virt/vmx_posted_intr.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

// Counters a repro or benchmark reads after a run.
struct VmStats {
  uint64_t ipis = 0;               // ICR / SELF_IPI messages sent
  uint64_t ipi_kicks = 0;          // kicks caused by interrupt delivery
  uint64_t injections = 0;         // vectors handed to the backend (KVM_INTERRUPT)
  uint64_t hw_deliveries = 0;      // LAPIC vectors "delivered by hardware" while APICv was active
  uint64_t nmis = 0;               // NMIs handed to the backend
  uint64_t windows_requested = 0;  // model IRQ windows opened (enable_irq_window)
  uint64_t window_exits = 0;       // model IRQ-window exits (interrupt_window_interception)
  uint64_t pit_ticks = 0;          // IRQ0 pulses raised by the PIT
  uint64_t pit_acks = 0;           // PIT ack-notifier calls
  uint64_t eois = 0;               // EOIs that reached the hypervisor layer
  uint64_t eois_accelerated = 0;   // EOIs completed without an exit (AVIC edge, APICv bitmap)
  uint64_t map_rebuilds = 0;
  uint64_t pmis = 0;  // PMIs delivered through LVTPC
  // AVIC (vendor svm, APICv active on the sender): guest ICR writes run through the Avic model.
  uint64_t avic_accelerated_ipis = 0;  // ICR writes completed without an exit
  uint64_t avic_incomplete_ipi = 0;    // AVIC_INCOMPLETE_IPI exits, all causes
  // By enum AvicIpiFailureCause (0 INVALID_INT_TYPE .. 4 INVALID_IPI_VECTOR); last = other.
  std::array<uint64_t, 6> avic_incomplete_ipi_by_cause{};
  uint64_t avic_doorbells = 0;       // doorbells rung (hardware and avic_kick_vcpu)
  uint64_t avic_fast_hits = 0;       // TARGET_NOT_RUNNING exits handled by the fast kick
  uint64_t avic_slow_fallbacks = 0;  // the fast kick declined (--avic-kick fast)
  uint64_t avic_slow_kicks = 0;      // kvm_for_each_vcpu walks
  uint64_t avic_vcpus_examined = 0;  // candidate vCPUs examined by fast + slow kicks
  uint64_t avic_kicks = 0;           // avic_kick_vcpu calls
  uint64_t vmm_exits = 0;            // accesses served by the VMM layer (split/off placement)
  // split placement: LAPIC EOIs of vectors the VMM-layer IOAPIC handles (level-triggered RTEs
  // for this vCPU): KVM_EXIT_IOAPIC_EOI. Also counted in vmm_exits.
  uint64_t split_ioapic_eoi_exits = 0;
  // AVIC active, xAPIC MMIO (APM 15.29.3.1 backing-page access table): accesses the "hardware"
  // completed, and AVIC_UNACCELERATED_ACCESS exits (trap: after the store; fault: before it).
  uint64_t avic_accelerated_accesses = 0;
  uint64_t avic_unaccelerated_traps = 0;
  uint64_t avic_unaccelerated_faults = 0;
  // APICv (vendor vmx, APICv active on the target): posted interrupts and EOI virtualization.
  // Splitting the no-notification cases (coalesced vs ON) is exact single-threaded and
  // approximate under concurrent senders of the same vector; their sum is exact.
  uint64_t pi_deliveries = 0;         // fixed interrupts delivered through a target's PiDesc
  uint64_t pi_notifications = 0;      // target in guest mode: notification (a kick here)
  uint64_t pi_wakeups = 0;            // target outside the guest: kvm_vcpu_wake_up
  uint64_t pi_suppressed_on = 0;      // no notification: ON was already set
  uint64_t pi_coalesced = 0;          // the vector was already pending in PIR
  uint64_t pi_harvests = 0;           // sync_pir_to_irr found ON and moved PIR into IRR
  uint64_t vmx_eois_virtualized = 0;  // EOIs outside the EOI-exit bitmap: no exit
  uint64_t vmx_eoi_exits = 0;         // EOIs inside the bitmap: EOI-induced exits
  uint64_t vmx_ioapic_scans = 0;      // KVM_REQ_SCAN_IOAPIC handled (bitmap recomputed)
  ApicvInhibitStats inhibits;
};

class ApicvVm final : public IrqChip {
 public:
  // `clock` (and `timers`, when given) must outlive the VM. `timers` null: the VM services its
  // timers from a HostTimerService thread on `clock`; otherwise the caller drives
  // service_timers() and the VM starts no thread (virt/timer_service.h).
  ApicvVm(const VmConfig& config, const Clock& clock, trace::TraceSink* trace,
          TimerService* timers = nullptr);
  ~ApicvVm() override;
  ApicvVm(const ApicvVm&) = delete;
  ApicvVm& operator=(const ApicvVm&) = delete;

  // IrqChip.
  AccessResult mmio_read(int vcpu, uint64_t gpa, void* data, unsigned len) override;
  AccessResult mmio_write(int vcpu, uint64_t gpa, const void* data, unsigned len) override;
  AccessResult pio_in(int vcpu, uint16_t port, void* data, unsigned len) override;
  AccessResult pio_out(int vcpu, uint16_t port, const void* data, unsigned len) override;
  AccessResult rdmsr(int vcpu, uint32_t msr, uint64_t* value) override;
  AccessResult wrmsr(int vcpu, uint32_t msr, uint64_t value) override;
  void set_cr8(int vcpu, uint64_t cr8) override;
  uint64_t get_cr8(int vcpu) override;
  Injection check_and_inject_events(int vcpu, bool ready, bool if_set) override;
  void interrupt_window_exit(int vcpu) override;
  void vcpu_enter(int vcpu) override;
  void vcpu_exit(int vcpu) override;
  bool has_events(int vcpu, bool if_set) override;
  uint64_t next_deadline_ns(int vcpu) override;
  void run_timers(int vcpu) override;
  uint64_t next_deadline_ns() override;
  uint64_t service_timers(uint64_t now_ns) override;
  MpEvent take_mp_event(int vcpu) override;
  void instruction_emulated(int vcpu) override;
  uint64_t pit_irq0_edges() override { return glue_.pit_irq0_edges(); }
  bool instructions_retired(int vcpu, uint64_t count, uint8_t cpl) override;
  uint64_t instructions_to_pmi(int vcpu, uint8_t cpl) override;
  void reset() override;
  void set_kick(std::function<void(int vcpu)> kick) override;

  // Raise or lower an ISA IRQ line (test device, PIT): PIC input n and IOAPIC pin n, except that
  // ISA IRQ 0 is wired to IOAPIC pin 2 (the MADT interrupt source override QEMU describes).
  void set_isa_irq(unsigned irq, bool level);

  VmStats stats() const;
  // Device-level tracepoints (kvm_apic_ipi, kvm_apic_accept_irq, kvm_apicv_accept_irq, kvm_eoi,
  // kvm_avic_doorbell, kvm_pic_set_irq, kvm_ioapic_set_irq, kvm_set_irq, kvm_msi_set_irq,
  // kvm_ack_irq) on or off; inhibit, injection and AVIC exit events always go to the sink. Set
  // before the run starts. Each device event is emitted only in the placements where KVM owns
  // the device (docs/trace-format.md): LAPIC events with kernel-irqchip=on|split, PIC / IOAPIC /
  // PIT events with kernel-irqchip=on.
  void set_device_trace(bool on);
  const VmConfig& config() const { return config_; }
  unsigned long inhibit_reasons() const { return inhibits_.reasons(); }
  int nr_vcpus() const { return config_.nr_vcpus; }
  // AVIC IsRunning of a vCPU (false when there is no AVIC model: vendor vmx).
  bool avic_is_running(int vcpu) const;
  Lapic& lapic(int vcpu);  // owner thread / tests only
  // Vendor vmx: the vCPU's posted-interrupt descriptor (any thread may read it) and its EOI-exit
  // bitmap (owner thread / tests only; recomputed on the vCPU's next entry after a scan request).
  const PiDesc& pi_desc(int vcpu) const;
  const EoiExitBitmap& eoi_exit_bitmap(int vcpu) const;
  Pmu& pmu(int vcpu);

 private:
  static LapicConfig LapicConfigFor(const VmConfig& config, const Clock& clock);
  bool owns_lapic_mmio(int vcpu, uint64_t gpa) const;
  // The LAPIC's side effects, each handed to the component that owns it.
  void handle_lapic_output(int vcpu, const LapicOutput& out);
  void eoi(int vcpu, const LapicEoi& eoi);
  // KVM_REQ_APICV_UPDATE: __kvm_vcpu_update_apicv().
  void update_apicv(int vcpu);
  // Harvest vectors posted by other vCPUs (the Lapic's PIR; the PiDesc on vmx).
  void sync_posted(int vcpu);
  // Republishes the vCPU's earliest own deadline (LAPIC timer, vPMU overflow).
  void note_timer(int vcpu);
  uint64_t now() const { return clock_.now_ns(); }

  const VmConfig config_;
  const Clock& clock_;
  DeviceTrace trace_;
  BackendKick kick_;
  VcpuRequestSet reqs_;
  ApicvInhibits inhibits_;
  VcpuDevices vcpus_;
  VmTimers timers_;
  std::unique_ptr<VmxPostedIntr> vmx_;  // vendor vmx only
  std::unique_ptr<SvmAvic> avic_;       // vendor svm only
  ApicDelivery delivery_;
  IrqchipGlue glue_;
  VmPmu pmu_;
  EventInjection inj_;
  // Declared last, so destroyed first: its thread calls service_timers() until it is joined.
  std::unique_ptr<HostTimerService> host_timer_;
};

}  // namespace apicv::virt
