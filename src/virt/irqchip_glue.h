// The platform interrupt controllers and their glue to the LAPICs (KVM ioapic.c glue, irq.c,
// irq_comm.c kvm_set_irq, i8254.c reinjection, i8259.c pic_unlock): the IOAPIC, the 8259A pair
// and the PIT, the GSI lines that feed them, EOI broadcast to the IOAPIC with the ack notifiers
// it runs (PIT reinjection) and the mask notifiers (the PIT learns when IRQ0 is masked), ExtINT
// (which vCPU the PIC's INTR kicks, the acknowledge), and the IOAPIC scan that tells a vCPU which
// vectors need an EOI exit. IOAPIC messages are delivered through ApicDelivery. Intel 82093AA
// datasheet, 8259A and 8254 datasheets, Intel SDM vol. 3A 11.8.5 (EOI); spec §5-§6.
//
// Placement (-machine kernel-irqchip=on|split|off) changes who owns these devices: with split
// the IOAPIC's EOIs are the VMM's (KVM_EXIT_IOAPIC_EOI for the vectors the scan reports) and its
// messages arrive as MSIs; with split / off every access counts as a VMM exit; device
// tracepoints follow DeviceTrace.
//
// Locks (docs/locking.md): one mutex per device, `ioapic_mu_`, `pic_mu_`, `pit_mu_`, each held
// around one call into its device only; the device's output (deliveries, ack and mask notifiers,
// kicks, traces) is acted on after it is released, so no two are ever held together. Lock-free:
// the PIC's INTR line as last published (`pic_intr_`), each vCPU's published "accepts PIC
// interrupts", the counters.
//
// Not supported: the RTC GSI 8 EOI tracking of the IOAPIC scan, per-vCPU scan masks (every vCPU
// rescans on any RTE write), IRQ routing tables other than the ISA identity with the MADT
// override (ISA IRQ 0 -> IOAPIC pin 2), MSI routing of other GSIs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "devices/clock.h"
#include "devices/ioapic.h"
#include "devices/lapic.h"
#include "devices/pic.h"
#include "devices/pit.h"
#include "virt/device_trace.h"
#include "virt/irqchip.h"
#include "virt/posted_interrupt.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"
#include "virt/vm_timers.h"

namespace apicv::virt {

class ApicDelivery;
class VmxPostedIntr;

struct IrqchipGlueStats {
  uint64_t pit_ticks = 0;  // IRQ0 pulses raised by the PIT
  uint64_t pit_acks = 0;   // PIT ack-notifier calls
  uint64_t eois = 0;       // EOIs that reached the hypervisor's emulation (apic_set_eoi)
  uint64_t vmm_exits = 0;  // accesses served by the VMM layer (split/off placement)
  uint64_t split_ioapic_eoi_exits = 0;  // KVM_EXIT_IOAPIC_EOI (also in vmm_exits)
};

class IrqchipGlue {
 public:
  // `pit_reinject`: the in-kernel PIT reinjects lost ticks through its ack notifier (KVM's
  // default; QEMU's lost_tick_policy=discard turns it off). `vmx` may be null. Throws
  // std::invalid_argument for Suppress-EOI-Broadcast flags outside kernel-irqchip=split.
  IrqchipGlue(const VmConfig& config, const Clock& clock, VcpuDevices& vcpus, VcpuRequestSet& reqs,
              const DeviceTrace& trace, ApicDelivery& delivery, VmxPostedIntr* vmx,
              VmTimers& timers, bool pit_reinject);
  IrqchipGlue(const IrqchipGlue&) = delete;
  IrqchipGlue& operator=(const IrqchipGlue&) = delete;

  // Guest accesses: the IOAPIC window at 0xFEC00000, the PIC and PIT ports, the test device's
  // IRQ lines (0x2000 + n); kNotMine for anything else.
  AccessResult mmio_read(uint64_t gpa, void* data, unsigned len);
  AccessResult mmio_write(uint64_t gpa, const void* data, unsigned len);
  AccessResult pio_in(uint16_t port, void* data, unsigned len);
  AccessResult pio_out(uint16_t port, const void* data, unsigned len);

  // kvm_set_irq() from userspace (KVM_IRQ_LINE): PIC input n and IOAPIC pin n, except that ISA
  // IRQ 0 is wired to IOAPIC pin 2 (the MADT interrupt source override QEMU describes).
  void set_isa_irq(unsigned irq, bool level);
  // apic_set_eoi() once the vendor's EOI acceleration declined it: kvm_eoi, then
  // kvm_ioapic_send_eoi() (split: KVM_EXIT_IOAPIC_EOI for handled vectors), the IOAPIC EOI and
  // its ack notifiers. The vCPU's own thread.
  void eoi(int vcpu, const LapicEoi& eoi);
  // vcpu_scan_ioapic() / kvm_ioapic_scan_entry(): the vectors whose EOI this vCPU must report
  // (level-triggered RTEs, plus the PIT's pin while it has an ack notifier when asked). The
  // vCPU's own thread.
  EoiExitBitmap ioapic_handled_vectors(int vcpu, bool with_ack_notifier);

  // kvm_apic_accept_pic_intr() of the vCPU as of its last LAPIC change, published for the thread
  // that picks whom an ExtINT kicks (owner thread, or every vCPU stopped).
  void publish_accept_pic_intr(int vcpu);
  // The PIC's INTR output (pic_intr_): an ExtINT is waiting.
  bool pic_intr() const { return pic_intr_.load(std::memory_order_acquire); }
  // kvm_pic_read_irq(): the PIC's acknowledge cycle, with its notifiers run afterwards.
  uint8_t acknowledge_pic();

  // The device timers behind the timer seam: PIT channel 0 and the IOAPIC's deferred
  // re-delivery. One servicing thread at a time; next_deadline_ns() anywhere.
  void service_timers(uint64_t now_ns);
  uint64_t next_deadline_ns();

  // System reset (every vCPU out of the guest).
  void reset();
  IrqchipGlueStats stats() const;
  // IrqChip::pit_irq0_edges(): PIT channel 0 rising edges generated so far. Any thread.
  uint64_t pit_irq0_edges() const { return st_pit_edges_.load(std::memory_order_acquire); }

 private:
  void ioapic_output(const IoApicOutput& out);
  void pic_output(const PicOutput& out);
  void pit_output(const PitOutput& out);
  void ack_notify_isa_irq(unsigned irq);
  void kick_extint_vcpu();
  // kvm_set_irq(): one GSI line from userspace (source 0) or the in-kernel PIT (source 2),
  // through the PIC and IOAPIC routes.
  void set_irq_line(unsigned irq, bool level, int irq_source_id);
  void trace_split_ioapic_msi(unsigned pin, bool assert_only);
  void trace_pic_acks(uint16_t acked_irqs);
  void count_vmm_exit();
  uint64_t now() const { return clock_.now_ns(); }

  const VmConfig& config_;
  const Clock& clock_;
  VcpuDevices& vcpus_;
  VcpuRequestSet& reqs_;
  const DeviceTrace& trace_;
  ApicDelivery& delivery_;
  VmxPostedIntr* const vmx_;
  VmTimers& timers_;
  const bool pit_reinject_;

  std::mutex ioapic_mu_;
  IoApic ioapic_;  // guarded by ioapic_mu_
  std::mutex pic_mu_;
  Pic pic_;  // guarded by pic_mu_
  // The PIC's INTR line, refreshed under pic_mu_ after every PIC call, read without it.
  std::atomic<bool> pic_intr_{false};
  std::mutex pit_mu_;
  Pit pit_;                                                // guarded by pit_mu_
  std::unique_ptr<std::atomic<bool>[]> accepts_pic_intr_;  // per vCPU
  // pit_output's pulser: IRQ0 pulses not yet raised, and whether a thread is raising them.
  std::atomic<uint64_t> pit_pulses_pending_{0};
  std::atomic<bool> pit_pulsing_{false};

  std::atomic<uint64_t> st_pit_ticks_{0}, st_pit_edges_{0}, st_pit_acks_{0}, st_eois_{0},
      st_vmm_exits_{0}, st_split_ioapic_eoi_exits_{0};
};

}  // namespace apicv::virt
