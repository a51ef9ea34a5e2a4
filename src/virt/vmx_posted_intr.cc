// APICv posted interrupts and EOI-exit bitmaps for the VM (KVM vmx/posted_intr.c, vmx.c); see
// vmx_posted_intr.h.
#include "virt/vmx_posted_intr.h"

#include <bit>

#include "virt/vm_defs.h"

namespace apicv::virt {

using x86::DeliveryMode;
using x86::InterruptRequest;

namespace {
void Bump(std::atomic<uint64_t>& c) {
  c.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

VmxPostedIntr::VmxPostedIntr(VcpuDevices& vcpus, VcpuRequestSet& reqs, const BackendKick& kick)
    : vcpus_(vcpus),
      reqs_(reqs),
      kick_(kick),
      per_vcpu_(std::make_unique<PerVcpu[]>(static_cast<size_t>(vcpus.size()))) {
  for (int i = 0; i < vcpus.size(); ++i) {
    pi(i).desc.set_nv(kPostedIntrVector);
    pi(i).desc.set_ndst(HostApicId(i));
  }
}

void VmxPostedIntr::deliver(int target, uint8_t vector, bool level) {
  PerVcpu& t = pi(target);
  const int w = vector >> 5;
  const uint32_t bit = 1u << (vector & 31);
  if (level) {
    t.tmr[static_cast<size_t>(w)].fetch_or(bit, std::memory_order_seq_cst);
  } else {
    t.tmr[static_cast<size_t>(w)].fetch_and(~bit, std::memory_order_seq_cst);
  }
  // Only for the counters: which of the "no notification" cases it was.
  const bool was_pending = t.desc.test_pir(vector);
  Bump(st_.deliveries);
  switch (deliver_posted_interrupt(t.desc, vector, reqs_.vcpu(target))) {
    case PiNotify::kNotify:
      // kvm_vcpu_trigger_posted_interrupt(): the notification IPI. The model has no hardware
      // PIR processing inside the guest, so the target exits and harvests on re-entry.
      Bump(st_.notifications);
      Bump(st_.kicks);
      reqs_.kick_vcpu(target);
      return;
    case PiNotify::kWake:
      // kvm_vcpu_wake_up(): a blocked target is woken; one between exit and entry finds ON in
      // vcpu_enter() or its next harvest.
      Bump(st_.wakeups);
      if (reqs_.vcpu(target).blocked()) {
        Bump(st_.kicks);
        reqs_.kick_vcpu(target);
      }
      return;
    case PiNotify::kNone:
      if (was_pending) {
        Bump(st_.coalesced);
      } else if (!t.desc.sn()) {
        Bump(st_.suppressed_on);
      }
      return;
  }
}

void VmxPostedIntr::sync_pir_to_irr(int vcpu) {
  PerVcpu& c = pi(vcpu);
  if (!c.desc.on()) return;
  std::array<uint32_t, 8> posted{};
  if (!virt::sync_pir_to_irr(c.desc, posted).harvested) return;
  Bump(st_.harvests);
  // __kvm_apic_update_irr(): the vectors join IRR with the trigger mode recorded by the sender;
  // a disabled APIC drops them, as __apic_accept_irq would have.
  Lapic& lapic = vcpus_.lapic(vcpu);
  for (int w = 0; w < 8; ++w) {
    uint32_t bits = posted[static_cast<size_t>(w)];
    if (bits == 0) continue;
    const uint32_t level = c.tmr[static_cast<size_t>(w)].load(std::memory_order_seq_cst);
    while (bits != 0) {
      const int b = std::countr_zero(bits);
      bits &= bits - 1;
      InterruptRequest r;
      r.vector = static_cast<uint8_t>(w * 32 + b);
      r.delivery_mode = DeliveryMode::kFixed;
      r.trigger_level = (level >> b) & 1u;
      r.level = true;
      lapic.accept_irq(r);
    }
  }
}

void VmxPostedIntr::clear(int vcpu) {
  PiDesc& d = pi(vcpu).desc;
  d.control.fetch_and(~kPiControlOn, std::memory_order_seq_cst);
  for (auto& w : d.pir) w.store(0, std::memory_order_seq_cst);
}

void VmxPostedIntr::request_scan_ioapic() {
  // KVM_REQ_SCAN_IOAPIC is NO_WAKEUP: a halted vCPU rescans when it next runs. (KVM also waits
  // for the kicked vCPUs; nothing here depends on that.)
  for (int i = 0; i < reqs_.nr_vcpus(); ++i) {
    VcpuRequests& r = reqs_.vcpu(i);
    r.make_request(kReqScanIoapic);
    if (r.exiting_guest_mode() == VcpuMode::kInGuestMode) kick_.kick(i);
  }
}

void VmxPostedIntr::load_eoi_exitmap(int vcpu, const EoiExitBitmap& handled) {
  Bump(st_.ioapic_scans);
  pi(vcpu).eoi_exit_bitmap = handled;
}

bool VmxPostedIntr::eoi_virtualized(int vcpu, uint8_t vector) {
  if (!pi(vcpu).eoi_exit_bitmap.test(vector)) {
    Bump(st_.eois_virtualized);
    return true;
  }
  Bump(st_.eoi_exits);
  return false;
}

VmxPostedIntrStats VmxPostedIntr::stats() const {
  auto ld = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  VmxPostedIntrStats s;
  s.deliveries = ld(st_.deliveries);
  s.notifications = ld(st_.notifications);
  s.wakeups = ld(st_.wakeups);
  s.suppressed_on = ld(st_.suppressed_on);
  s.coalesced = ld(st_.coalesced);
  s.harvests = ld(st_.harvests);
  s.kicks = ld(st_.kicks);
  s.eois_virtualized = ld(st_.eois_virtualized);
  s.eoi_exits = ld(st_.eoi_exits);
  s.ioapic_scans = ld(st_.ioapic_scans);
  return s;
}

}  // namespace apicv::virt
