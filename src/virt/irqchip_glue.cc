// ApicvVm, IOAPIC / PIC / PIT glue (KVM ioapic.c EOI and scan, irq.c, i8254.c reinjection, ack
// and mask notifiers, kvm_set_irq): see apicv_vm.h.
#include <algorithm>
#include <bit>

#include "irq/match_dest.h"
#include "virt/apicv_vm_internal.h"

namespace apicv::virt {

using namespace vm_detail;  // NOLINT: the split files share ApicvVm's private helpers
using x86::DeliveryMode;

void ApicvVm::request_scan_ioapic() {
  // kvm_make_scan_ioapic_request(): only the VMX model keeps an EOI-exit bitmap.
  // KVM_REQ_SCAN_IOAPIC is NO_WAKEUP: a halted vCPU rescans when it next runs; one in the guest
  // is kicked so it cannot EOI with a stale bitmap for long. (KVM also waits for the kicked
  // vCPUs; nothing here depends on that.)
  if (config_.vendor != VendorModel::kVmx) return;
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    VcpuRequests& r = reqs_.vcpu(i);
    r.make_request(kReqScanIoapic);
    if (r.exiting_guest_mode() == VcpuMode::kInGuestMode) kick(i);
  }
}

void ApicvVm::vcpu_scan_ioapic(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  st_vmx_ioapic_scans_.fetch_add(1, std::memory_order_relaxed);
  c.eoi_exit_bitmap = ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/true);
}

EoiExitBitmap ApicvVm::ioapic_handled_vectors(VcpuCtx& c, int vcpu, bool with_ack_notifier) {
  EoiExitBitmap b;
  // vcpu_scan_ioapic(): nothing for an absent APIC.
  if (!c.lapic.hw_enabled()) return b;
  std::array<uint64_t, x86::kIoApicNumPins> rtes;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    for (unsigned p = 0; p < x86::kIoApicNumPins; ++p) rtes[p] = ioapic_.rte(p);
  }
  const LapicIdentity id = c.lapic.identity();
  const irq::ApicView self{id.vcpu_id,  id.hw_enabled, id.x2apic, id.sw_enabled,
                           id.xapic_id, id.ldr,        id.dfr,    0};
  // kvm_ioapic_scan_entry() / kvm_scan_ioapic_routes(): level-triggered pins and (in-kernel
  // IOAPIC only) pins with an ack notifier (the PIT's GSI 0, routed to pin 2, while reinjection
  // is on), masked or not, whose destination is this vCPU, or whose vector this vCPU still has in
  // IRR/ISR (kvm_apic_pending_eoi).
  for (unsigned p = 0; p < x86::kIoApicNumPins; ++p) {
    const uint64_t e = rtes[p];
    const bool ack_notifier = with_ack_notifier && p == kIsaIrq0IoApicPin && pit_reinject_;
    if (!(e & x86::kRteTriggerLevel) && !ack_notifier) continue;
    const uint8_t vec = static_cast<uint8_t>(e & x86::kRteVectorMask);
    const uint32_t dest = static_cast<uint32_t>((e & x86::kRteDestMask) >> x86::kRteDestShift);
    const uint32_t word = static_cast<uint32_t>(vec >> 5) * 0x10;
    const bool pending_eoi =
        ((c.lapic.reg(x86::kApicIsr + word) | c.lapic.reg(x86::kApicIrr + word)) >> (vec & 31)) &
        1u;
    if (irq::MatchDest(self, vcpu, nullptr, -1, x86::Shorthand::kNone, dest,
                       e & x86::kRteDestLogical, route_options_.x2apic_broadcast_quirk_disabled) ||
        pending_eoi)
      b.set(vec);
  }
  return b;
}

void ApicvVm::eoi_broadcast(int vcpu, const LapicEoi& eoi) {
  const bool apicv_active = inhibits_.vcpu_apicv_active(vcpu);
  // APICv EOI virtualization (SDM 30.1.3): the Lapic already completed the EOI (ISR, PPR); only a
  // vector in the EOI-exit bitmap makes it exit to the hypervisor (handle_apic_eoi_induced).
  if (config_.vendor == VendorModel::kVmx && apicv_active) {
    if (!vcpus_[static_cast<size_t>(vcpu)]->eoi_exit_bitmap.test(eoi.vector)) {
      st_eois_accel_.fetch_add(1, std::memory_order_relaxed);
      st_vmx_eois_virtualized_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    st_vmx_eoi_exits_.fetch_add(1, std::memory_order_relaxed);
  }
  // AVIC completes edge-triggered EOIs in the backing page: no exit, no IOAPIC EOI, no ack
  // notifier. That is why PIT reinjection (which needs the ack) inhibits AVIC.
  if (config_.vendor == VendorModel::kSvm && apicv_active &&
      Avic::eoi_accelerated(eoi.level_triggered)) {
    st_eois_accel_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Only EOIs that reach KVM's emulation (apic_set_eoi, kvm_apic_set_eoi_accelerated) trace.
  trace::trace_kvm_eoi(lapic_trace(), static_cast<uint32_t>(vcpu), eoi.vector);
  st_eois_.fetch_add(1, std::memory_order_relaxed);
  if (config_.placement == IrqchipPlacement::kSplit) {
    // kvm_ioapic_send_eoi() with a split irqchip: a vector in ioapic_handled_vectors (the
    // level-triggered routes scanned for this vCPU) sets pending_ioapic_eoi and exits with
    // KVM_EXIT_IOAPIC_EOI; the VMM-layer IOAPIC then does the EOI. Other vectors stop here.
    VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
    if (!ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/false).test(eoi.vector)) return;
    // Suppress EOI Broadcast (SVR[12]) honoured only when the VMM enabled it: no exit, the guest
    // EOIs the IOAPIC through its EOI register. In the legacy quirk KVM ignores the bit.
    if (eoi.directed && config_.suppress_eoi_broadcast == SuppressEoiBroadcast::kEnabled) return;
    st_split_ioapic_eoi_exits_.fetch_add(1, std::memory_order_relaxed);
    st_vmm_exits_.fetch_add(1, std::memory_order_relaxed);
  }
  IoApicOutput out;
  bool deferred = false;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    const uint64_t before = ioapic_.next_deadline_ns();
    out = ioapic_.eoi(eoi.vector, eoi.level_triggered, now());
    deferred = ioapic_.next_deadline_ns() < before;
  }
  // The storm guard deferred a re-delivery: the timer service must learn the new deadline.
  if (deferred) timer_deadline_changed();
  // kvm_ioapic_update_eoi_one() runs kvm_notify_acked_irq() (kvm_ack_irq) for every pin with the
  // EOIed vector, before the pin's notifier acts. KVM only gets there for vectors in
  // ioapic_handled_vectors (kvm_ioapic_send_eoi); the model's IOAPIC sees every EOI, so the
  // trace is filtered here.
  if (out.acked_pins != 0 && TraceOn(kernel_irqchip_trace())) {
    VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
    if (ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/true).test(eoi.vector)) {
      for (uint32_t pins = out.acked_pins; pins != 0; pins &= pins - 1)
        trace::trace_kvm_ack_irq(kernel_irqchip_trace(), kIrqchipIoapic,
                                 static_cast<unsigned>(std::countr_zero(pins)));
    }
  }
  ioapic_output(out);
}

void ApicvVm::ioapic_output(const IoApicOutput& out) {
  if (out.acked_pins & (1u << kIsaIrq0IoApicPin)) ack_notify_isa_irq(0);
  if (out.mask_changed_pins & (1u << kIsaIrq0IoApicPin)) {
    bool masked;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      masked = ioapic_.rte(kIsaIrq0IoApicPin) & (1ull << 16);
    }
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.irq0_mask_changed(masked);
  }
  const bool split_msi = config_.placement == IrqchipPlacement::kSplit && TraceOn(lapic_trace());
  for (unsigned i = 0; i < out.num_deliveries; ++i) {
    const IoApicDelivery& d = out.deliveries[i];
    if (split_msi) trace_split_ioapic_msi(d.pin, /*assert_only=*/true);
    route_and_deliver(-1, d.irq);
    if (split_msi && !d.irq.trigger_level) trace_split_ioapic_msi(d.pin, /*assert_only=*/false);
  }
}

// kernel-irqchip=split: the VMM's IOAPIC raises a pin through KVM_IRQ_LINE on the GSI the VMM
// routed as an MSI (QEMU: GSI = pin, MSI address/data built from the RTE; an edge pin is raised
// and lowered at once, a level pin only raised). kvm_set_irq() traces the line, kvm_set_msi()
// traces kvm_msi_set_irq for the assertion only (it returns before the trace when level is 0).
void ApicvVm::trace_split_ioapic_msi(unsigned pin, bool assert_only) {
  trace::TraceSink* tp = lapic_trace();
  if (!assert_only) {
    trace::trace_kvm_set_irq(tp, pin, 0, kUserspaceIrqSourceId);
    return;
  }
  uint64_t e;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    e = ioapic_.rte(pin);
  }
  trace::trace_kvm_set_irq(tp, pin, 1, kUserspaceIrqSourceId);
  // QEMU's ioapic_entry_parse(): address = 0xFEE00000 | RTE[63:48] << 4 | dest mode << 2; data =
  // vector | delivery mode << 8 | trigger << 15.
  const uint64_t address =
      0xFEE00000ull | (((e >> 48) & 0xFFFF) << 4) | ((e & x86::kRteDestLogical) ? (1ull << 2) : 0);
  const uint64_t data = (e & x86::kRteVectorMask) | (e & x86::kRteDeliveryModeMask) |
                        ((e & x86::kRteTriggerLevel) ? (1ull << 15) : 0);
  trace::trace_kvm_msi_set_irq(tp, address, data);
}

void ApicvVm::trace_pic_acks(uint16_t acked_irqs) {
  // pic_clear_isr() -> kvm_notify_acked_irq(SELECT_PIC(irq), irq): irq counts 0-15 across both
  // chips, so a slave pin prints as 8-15.
  for (uint32_t irqs = acked_irqs; irqs != 0; irqs &= irqs - 1) {
    const unsigned irq = static_cast<unsigned>(std::countr_zero(irqs));
    trace::trace_kvm_ack_irq(kernel_irqchip_trace(), irq < 8 ? kIrqchipPicMaster : kIrqchipPicSlave,
                             irq);
  }
}

void ApicvVm::pic_output(const PicOutput& out) {
  if (out.acked_irqs != 0 && TraceOn(kernel_irqchip_trace())) trace_pic_acks(out.acked_irqs);
  if (out.acked_irqs & 1u) ack_notify_isa_irq(0);
  if (out.mask_changed_irqs & 1u) {
    bool masked;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      masked = pic_.imr(0) & 1u;
    }
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.irq0_mask_changed(masked);
  }
  if (out.output_changed && pic_output_.load(std::memory_order_acquire)) kick_extint_vcpu();
}

void ApicvVm::kick_extint_vcpu() {
  // KVM's pic_unlock(): the first vCPU for which kvm_apic_accept_pic_intr() holds (LVT0 unmasked
  // in ExtINT mode, or the LAPIC hardware-disabled) gets KVM_REQ_EVENT and a kick; none, nobody.
  // The target re-evaluates accept_pic_intr() on its own thread before injecting.
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    if (vcpus_[static_cast<size_t>(i)]->accepts_pic_intr.load(std::memory_order_acquire)) {
      reqs_.make_request_and_kick(i, kReqEvent);
      return;
    }
  }
}

void ApicvVm::publish_accept_pic_intr(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  c.accepts_pic_intr.store(c.lapic.accept_pic_intr(), std::memory_order_release);
}

void ApicvVm::ack_notify_isa_irq(unsigned irq) {
  if (irq != 0 || !pit_reinject_) return;
  st_pit_acks_.fetch_add(1, std::memory_order_relaxed);
  PitOutput out;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    out = pit_.ack_irq();
  }
  pit_output(out);
}

void ApicvVm::pit_output(const PitOutput& out) {
  for (unsigned i = 0; i < out.irq0_pulses; ++i) {
    st_pit_ticks_.fetch_add(1, std::memory_order_relaxed);
    // pit_do_work(): kvm_set_irq(GSI 0, 1) then (GSI 0, 0) from the PIT's source.
    set_irq_line(0, true, kPitIrqSourceId);
    set_irq_line(0, false, kPitIrqSourceId);
  }
}

void ApicvVm::set_isa_irq(unsigned irq, bool level) {
  set_irq_line(irq, level, kUserspaceIrqSourceId);
}

void ApicvVm::set_irq_line(unsigned irq, bool level, int irq_source_id) {
  if (irq >= 24) return;
  // kvm_set_irq() traces the GSI before walking its routes (PIC, then IOAPIC). Only with the
  // in-kernel PIC/IOAPIC: with split/off the line belongs to the VMM's devices.
  trace::trace_kvm_set_irq(kernel_irqchip_trace(), irq, level ? 1 : 0, irq_source_id);
  if (irq < 16) {
    PicOutput pout;
    uint8_t elcr, imr;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      pout = pic_.set_irq(irq, level);
      pic_output_.store(pic_.output(), std::memory_order_release);
      elcr = pic_.elcr(irq >> 3);
      imr = pic_.imr(irq >> 3);
    }
    // kvm_pic_set_irq(): traced after pic_update_irq(), " (coalesced)" when pic_set_irq1()
    // returned 0.
    trace::trace_kvm_pic_set_irq(kernel_irqchip_trace(), static_cast<uint8_t>(irq >> 3),
                                 static_cast<uint8_t>(irq & 7), elcr, imr, pout.coalesced);
    pic_output(pout);
  }
  const unsigned pin = irq == 0 ? kIsaIrq0IoApicPin : irq == kIsaIrq0IoApicPin ? 0xFF : irq;
  if (pin < x86::kIoApicNumPins) {
    IoApicOutput out;
    uint64_t rte;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      out = ioapic_.set_irq(pin, level, now());
      rte = ioapic_.rte(pin);
    }
    // KVM traces every ioapic_set_irq() call, deassertions included, with the entry's bits.
    trace::trace_kvm_ioapic_set_irq(kernel_irqchip_trace(), rte, static_cast<int>(pin),
                                    out.coalesced);
    ioapic_output(out);
  }
}

}  // namespace apicv::virt
