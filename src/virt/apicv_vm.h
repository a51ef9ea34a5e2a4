// ApicvVm: apicv's whole interrupt subsystem for one VM, behind the IrqChip contract.
//
// It plays the part of KVM's x86 irqchip code around the devices: LAPIC register exits
// (lapic.c), the APIC map and its inhibits, IPI delivery through the routing layer, EOI
// broadcast to the IOAPIC and ack notifiers, PIT reinjection (i8254.c), the inhibit machinery and
// IRQ-window strategies (x86.c / svm.c), the AVIC and posted-interrupt models, PMI delivery
// (pmu.c), and kvm_check_and_inject_events(). Placement (-machine kernel-irqchip=on|split|off)
// only changes which layer a device is modelled in: who may inhibit, how ExtINT reaches the
// LAPIC, and where EOIs go. Intel SDM vol. 3A ch. 11; AMD APM vol. 2 15.29; spec §2-§9.
//
// Files, one per KVM mechanism: apicv_vm.cc (the owner: construction, guest register accesses,
// APIC map, reset, statistics), apic_delivery.cc (IPI and IOAPIC message delivery: lapic.c
// kvm_apic_send_ipi/__apic_accept_irq, irq_comm.c kvm_irq_delivery_to_apic, AVIC incomplete IPIs,
// VMX posted interrupts), irqchip_glue.cc (IOAPIC/PIC/PIT glue: EOI broadcast, ack and mask
// notifiers, kvm_set_irq, the IOAPIC scan), event_injection.cc (kvm_check_and_inject_events,
// kvm_vcpu_has_events, INIT/SIPI, PMI delivery), vm_timers.cc (timer seam, LAPIC timer, vPMU
// cycles); apicv_vm_internal.h holds the per-vCPU context and constants they share.
//
// Threading: per-vCPU methods run on the vCPU's thread and touch only that vCPU's Lapic/Pmu;
// cross-vCPU delivery posts into the target's PIR (Lapic::post, or the PiDesc with APICv on
// vmx) and kicks. IOAPIC, PIC and PIT
// each have one mutex; the APIC map is rebuilt under map_mu_ and published as an immutable
// snapshot. Time comes only from the backend's Clock (now_ns, the guest TSC); the VM's timers are
// serviced through the backend's TimerService (virt/timer_service.h): service_timers() runs the
// PIT and IOAPIC timers and kicks vCPUs whose LAPIC timer or vPMU deadline passed. By default a
// HostTimerService thread calls it; with a caller-supplied service the VM starts no thread.
// Locks (docs/locking.md): each device mutex is held only around one call into its device, and
// the device's output (deliveries, acks, kicks, traces) is acted on after it is released, so
// ioapic_mu_, pic_mu_, pit_mu_ and kick_mu_ are never held together or with map_mu_,
// and apicv_update_lock is never taken under any of them. Nestings: map_mu_ -> snap_mu_
// (publishing the snapshot) and map_mu_ -> apicv_update_lock (the map inhibits, as KVM updates
// them under apic_map_lock); snap_mu_ and the trace sink's mutex are leaves.
//
// AVIC (--vendor svm): a guest ICR write from a vCPU whose APICv is active goes through the Avic
// model (APM 15.29.3.1): IRR + doorbell for running targets, AVIC_INCOMPLETE_IPI otherwise and
// KVM's handling of it (fast or slow kick, or full emulation). IsRunning is set by vcpu_enter,
// cleared by vcpu_exit and, before the vCPU blocks, by has_events() (avic_vcpu_blocking).
//
// APICv (--vendor vmx, Intel SDM vol. 3C 30.1.3, 30.6): a fixed interrupt for a vCPU other than
// the sender, whose APICv is active, is posted into that vCPU's PiDesc (PIR bit, then ON); the
// notification is a kick when the target is in guest mode and a wake-up when it is blocked, and
// nothing when ON was already set. Each entry (and the halt check) harvests PIR into the Lapic's
// IRR. With APICv inhibited on the target, delivery falls back to Lapic::post + KVM_REQ_EVENT +
// kick (kvm_lapic_set_irr). Each vCPU keeps an EOI-exit bitmap (vcpu_load_eoi_exitmap), rebuilt
// on KVM_REQ_SCAN_IOAPIC (RTE writes, APIC map rebuilds) from the level-triggered RTEs that
// target it and the PIT's pin while reinjection has an ack notifier: with APICv active, an EOI
// of a vector outside the bitmap completes in the virtual APIC (no IOAPIC EOI, no ack notifier),
// one inside it exits as before. That is why VMX needs no PIT_REINJ inhibit.
//
// Not supported: Hyper-V SynIC, Xen upcalls, nested (L2) guests, SMI, the x2APIC
// "hotplug hack" ID format, IOMMU posted interrupts. VMX: SN is never set (vCPUs are not
// preempted in the model), the notification vector is not delivered inside the guest (the kick
// makes the target exit and harvest on re-entry), the RTC GSI 8 EOI tracking of the IOAPIC scan,
// per-vCPU scan masks (every vCPU rescans on any RTE write), IPI virtualization (IPIv). vPMU:
// the guest's CPL at an exit is unknown without an ioctl per exit, so emulated instructions and
// cycles always count as CPL 0 (OS); cycles count from entry to exit at the TSC rate.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/clock.h"
#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic.h"
#include "devices/pit.h"
#include "devices/pmu/pmu.h"
#include "irq/apic_bus.h"
#include "irq/apic_map.h"
#include "virt/apicv_inhibits.h"
#include "virt/host_timer_service.h"
#include "virt/irq_window.h"
#include "virt/irqchip.h"
#include "virt/posted_interrupt.h"
#include "virt/timer_service.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

class Avic;

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
  struct VcpuCtx;
  class AvicOps;
  struct MapSnapshot {
    irq::ApicMap map;
    std::vector<irq::ApicView> views;
  };

  bool owns_lapic_mmio(VcpuCtx& c, uint64_t gpa) const;
  void handle_lapic_output(int vcpu, const LapicOutput& out);
  void rebuild_apic_map(int changed_vcpu, bool xapic_id_written = false);
  void send_ipi(int src, const x86::InterruptRequest& req);
  void kvm_apic_send_ipi(int src, const x86::InterruptRequest& req);
  void deliver(int src, const x86::InterruptRequest& req, int target);
  void deliver_fixed(int src, int target, const x86::InterruptRequest& req);
  void route_and_deliver(int src, const x86::InterruptRequest& req);
  // kvm_irq_delivery_to_apic()'s return value for an IOAPIC message, without delivering it: -1
  // when the slow path finds no destination, else how many targets __apic_accept_irq() would
  // accept it on. The IOAPIC sets remote IRR from it (called under ioapic_mu_; snap_mu_ is a leaf).
  int ioapic_delivery_result(const x86::InterruptRequest& req) const;
  void avic_send_ipi(int src, const x86::InterruptRequest& req);
  void vmx_deliver_posted_interrupt(int target, uint8_t vector, bool level);
  void vmx_sync_pir_to_irr(VcpuCtx& c);
  static void vmx_clear_pi(VcpuCtx& c);
  void request_scan_ioapic();
  void vcpu_scan_ioapic(int vcpu);
  void eoi_broadcast(int vcpu, const LapicEoi& eoi);
  EoiExitBitmap ioapic_handled_vectors(VcpuCtx& c, int vcpu, bool with_ack_notifier);
  void avic_lapic_mmio_access(int vcpu, VcpuCtx& c, uint32_t offset, unsigned len, bool write);
  void ack_notify_isa_irq(unsigned irq);
  void ioapic_output(const IoApicOutput& out);
  void pic_output(const PicOutput& out);
  void kick_extint_vcpu();
  void publish_accept_pic_intr(int vcpu);  // owner thread (or with every vCPU stopped)
  void pit_output(const PitOutput& out);
  // kvm_set_irq(): one GSI line from userspace (KVM_IRQ_LINE, source 0) or the in-kernel PIT
  // (source 2), through the PIC and IOAPIC routes.
  void set_irq_line(unsigned irq, bool level, int irq_source_id);
  // Trace sinks for the layers KVM owns in this placement (null when it does not own them).
  trace::TraceSink* lapic_trace() const {
    return config_.placement == IrqchipPlacement::kOff ? nullptr
                                                       : dev_trace_.load(std::memory_order_acquire);
  }
  trace::TraceSink* kernel_irqchip_trace() const {
    return config_.placement == IrqchipPlacement::kOn ? dev_trace_.load(std::memory_order_acquire)
                                                      : nullptr;
  }
  void trace_split_ioapic_msi(unsigned pin, bool assert_only);
  void trace_pic_acks(uint16_t acked_irqs);
  void update_apicv(int vcpu);
  bool has_events_locked(int vcpu, bool if_set);
  bool has_extint(VcpuCtx& c);
  int take_extint(VcpuCtx& c);
  void deliver_pmi(int vcpu);
  void note_timer(int vcpu);
  void pmu_cycles_enter(int vcpu);
  void pmu_cycles_exit(int vcpu);
  // Tells the timer service that next_deadline_ns() may have moved.
  void timer_deadline_changed() {
    if (timer_) timer_->deadline_changed();
  }
  uint64_t now() const { return clock_.now_ns(); }
  uint64_t read_tsc() const { return clock_.tsc(); }
  uint64_t tsc_khz_ = 0;  // guest TSC rate (the clock's unless configured)

  const VmConfig config_;
  const Clock& clock_;
  trace::TraceSink* trace_;
  // Device-level tracing on/off: set_device_trace() may run while the timer service (another
  // thread) is tracing, so the pointer is published atomically. The sink itself outlives the VM.
  std::atomic<trace::TraceSink*> dev_trace_;
  // The backend's kick, swapped atomically: the timer service may kick while set_kick runs.
  // Replaced holders are kept until destruction (set_kick is called a handful of times per run).
  std::atomic<const std::function<void(int)>*> kick_{nullptr};
  std::vector<std::unique_ptr<std::function<void(int)>>> kick_holders_;
  std::mutex kick_mu_;
  void kick(int vcpu) const {
    if (auto* k = kick_.load(std::memory_order_acquire); k && *k) (*k)(vcpu);
  }
  VcpuRequestSet reqs_;
  ApicvInhibits inhibits_;
  IrqWindow irqwin_;
  irq::RouteOptions route_options_;
  std::vector<std::unique_ptr<VcpuCtx>> vcpus_;
  // vendor svm only; the physical table is filled at construction, the logical table under map_mu_.
  std::unique_ptr<Avic> avic_;

  std::mutex map_mu_;
  std::vector<irq::ApicView> views_;  // guarded by map_mu_
  // The published map: IPI senders copy the pointer under a leaf lock and route without it.
  mutable std::mutex snap_mu_;
  std::shared_ptr<const MapSnapshot> map_snapshot_;
  std::shared_ptr<const MapSnapshot> load_map() const {
    std::lock_guard<std::mutex> g(snap_mu_);
    return map_snapshot_;
  }

  std::mutex ioapic_mu_;
  IoApic ioapic_;
  std::mutex pic_mu_;
  Pic pic_;
  std::atomic<bool> pic_output_{false};
  std::mutex pit_mu_;
  Pit pit_;
  bool pit_reinject_ = false;

  // The timer service: the caller's, or host_timer_ (declared last, so destroyed first: its
  // thread calls service_timers() until it is joined).
  TimerService* timer_ = nullptr;

  std::atomic<uint64_t> st_ipis_{0}, st_ipi_kicks_{0}, st_injections_{0}, st_hw_deliveries_{0},
      st_nmis_{0}, st_windows_{0}, st_window_exits_{0}, st_pit_ticks_{0}, st_pit_acks_{0},
      st_eois_{0}, st_eois_accel_{0}, st_map_rebuilds_{0}, st_pmis_{0}, st_vmm_exits_{0},
      st_pi_deliveries_{0}, st_pi_notifications_{0}, st_pi_wakeups_{0}, st_pi_suppressed_on_{0},
      st_pi_coalesced_{0}, st_pi_harvests_{0}, st_vmx_eois_virtualized_{0}, st_vmx_eoi_exits_{0},
      st_vmx_ioapic_scans_{0}, st_split_ioapic_eoi_exits_{0}, st_avic_accel_accesses_{0},
      st_avic_unaccel_traps_{0}, st_avic_unaccel_faults_{0};

  std::unique_ptr<HostTimerService> host_timer_;
};

}  // namespace apicv::virt
