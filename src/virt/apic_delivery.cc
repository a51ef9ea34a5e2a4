// ApicvVm, interrupt delivery (KVM lapic.c kvm_apic_send_ipi / __apic_accept_irq, irq_comm.c
// kvm_irq_delivery_to_apic, svm/avic.c incomplete IPIs, vmx/posted_intr.c): see apicv_vm.h.
#include <algorithm>
#include <bit>

#include "irq/match_dest.h"
#include "virt/apicv_vm_internal.h"

namespace apicv::virt {

using namespace vm_detail;  // NOLINT: the split files share ApicvVm's private helpers
using x86::DeliveryMode;

class ApicvVm::AvicOps final : public AvicVcpuOps {
 public:
  AvicOps(ApicvVm& vm, std::shared_ptr<const MapSnapshot> snap) : vm_(vm), snap_(std::move(snap)) {}
  void set_irr(int vcpu, uint8_t vector) override {
    vm_.vcpus_[static_cast<size_t>(vcpu)]->lapic.post(vector, /*level=*/false);
  }
  // The doorbell makes a running target evaluate its IRR; a wake-up makes a halted one run; both
  // become the backend's kick here. KVM_REQ_EVENT is set on every path so a target between its
  // event check and guest entry sees a pending request in vcpu_enter and does not miss the IRR.
  void ring_doorbell(int vcpu) override { kick(vcpu); }
  void wake(int vcpu) override { kick(vcpu); }
  void request_event_and_kick(int vcpu) override { kick(vcpu); }
  bool in_guest_mode(int vcpu) override {
    return vm_.reqs_.vcpu(vcpu).mode() == VcpuMode::kInGuestMode;
  }
  bool apicv_active(int vcpu) override { return vm_.inhibits_.vcpu_apicv_active(vcpu); }
  const irq::ApicView& view(int vcpu) override {
    static const irq::ApicView kAbsent{};
    if (vcpu < 0 || static_cast<size_t>(vcpu) >= snap_->views.size()) return kAbsent;
    return snap_->views[static_cast<size_t>(vcpu)];
  }

 private:
  void kick(int vcpu) {
    vm_.st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
    vm_.reqs_.make_request_and_kick(vcpu, kReqEvent);
  }
  ApicvVm& vm_;
  std::shared_ptr<const MapSnapshot> snap_;
};

void ApicvVm::send_ipi(int src, const InterruptRequest& req) {
  st_ipis_.fetch_add(1, std::memory_order_relaxed);
  // With AVIC active on the sender, the hardware takes the ICR write; KVM only sees it when it
  // exits with AVIC_INCOMPLETE_IPI. When the sender's AVIC is inhibited, the write traps and KVM
  // emulates it (kvm_apic_send_ipi).
  if (avic_ && req.from_ipi && src >= 0 && src < config_.nr_vcpus &&
      inhibits_.vcpu_apicv_active(src)) {
    avic_send_ipi(src, req);
    return;
  }
  kvm_apic_send_ipi(src, req);
}

void ApicvVm::kvm_apic_send_ipi(int src, const InterruptRequest& req) {
  // kvm_apic_send_ipi() traces the ICR low word (BUSY already cleared) and the decoded
  // destination: ICR[63:32] for an x2APIC source, ICR2[31:24] for xAPIC.
  trace::trace_kvm_apic_ipi(lapic_trace(), IcrLow(req), req.dest_id);
  route_and_deliver(src, req);
}

void ApicvVm::avic_send_ipi(int src, const InterruptRequest& req) {
  AvicOps ops(*this, load_map());
  const uint32_t icrl = IcrLow(req);
  const uint32_t icrh = IcrHigh(req);
  const AvicIcrResult r = avic_->handle_icr_write(src, icrl, icrh, req.source_x2apic, ops);
  if (!r.exit) return;
  switch (avic_->avic_incomplete_ipi_interception(src, icrl, icrh, static_cast<uint32_t>(r.cause),
                                                  r.index, ops)) {
    case AvicIncompleteIpiAction::kSendIpi:
    case AvicIncompleteIpiAction::kWriteIcrNodecode:
      // INVALID_INT_TYPE / INVALID_TARGET: the hardware touched no IRR; KVM emulates the whole
      // IPI through the ICR write path.
      kvm_apic_send_ipi(src, req);
      return;
    case AvicIncompleteIpiAction::kNone:           // TARGET_NOT_RUNNING: IRRs set, targets kicked
    case AvicIncompleteIpiAction::kIgnoredVector:  // vector < 16: dropped as by the hardware
    case AvicIncompleteIpiAction::kWarnBackingPage:
    case AvicIncompleteIpiAction::kUnhandledCause:
      return;
  }
}

void ApicvVm::route_and_deliver(int src, const InterruptRequest& req) {
  std::shared_ptr<const MapSnapshot> snap = load_map();
  thread_local irq::TargetList targets;
  targets.clear();
  if (!route_options_.vector_hashing && irq::IsLowestPriority(req)) {
    // kvm_apic_compare_prio() reads each candidate's live apic_arb_prio.
    thread_local std::vector<irq::ApicView> views;
    views = snap->views;
    for (size_t i = 0; i < views.size(); ++i)
      views[i].arb_prio = vcpus_[i]->arb_prio.load(std::memory_order_relaxed);
    irq::Route(req, &snap->map, views, route_options_, targets);
  } else {
    irq::Route(req, &snap->map, snap->views, route_options_, targets);
  }
  for (int t : targets.targets()) deliver(src, req, t);
}

int ApicvVm::ioapic_delivery_result(const InterruptRequest& req) const {
  std::shared_ptr<const MapSnapshot> snap = load_map();
  thread_local irq::TargetList targets;
  targets.clear();
  const int matched = irq::Route(req, &snap->map, snap->views, route_options_, targets);
  // The slow path starts from -1 and only a matched APIC moves it; the fast path starts from 0.
  if (matched < 0) return -1;
  int r = 0;
  for (int t : targets.targets()) {
    if (t < 0 || static_cast<size_t>(t) >= snap->views.size()) continue;
    const irq::ApicView& v = snap->views[static_cast<size_t>(t)];
    switch (req.delivery_mode) {
      case DeliveryMode::kFixed:
      case DeliveryMode::kLowestPriority:
        // __apic_accept_irq(): a level deassert carries nothing; a disabled APIC refuses.
        if (!(req.trigger_level && !req.level) && v.present && v.sw_enabled) ++r;
        break;
      case DeliveryMode::kInit:
        if (!req.trigger_level || req.level) ++r;
        break;
      case DeliveryMode::kNmi:
      case DeliveryMode::kStartup:
      case DeliveryMode::kSmi:
      case DeliveryMode::kRemoteRead:
        ++r;  // accepted by KVM (SMI and remote read are not modelled further here)
        break;
      default:
        break;  // ExtINT: __apic_accept_irq() leaves it to the PIC path (0)
    }
  }
  return r;
}

void ApicvVm::deliver(int src, const InterruptRequest& req, int target) {
  if (target < 0 || target >= config_.nr_vcpus) return;
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  trace::trace_kvm_apic_accept_irq(lapic_trace(), static_cast<uint32_t>(target),
                                   static_cast<uint16_t>(req.delivery_mode) << 8, req.trigger_level,
                                   req.vector);
  switch (req.delivery_mode) {
    case DeliveryMode::kLowestPriority:
      // __apic_accept_irq: every lowest-priority arrival counts, accepted or not.
      t.arb_prio.fetch_add(1, std::memory_order_relaxed);
      [[fallthrough]];
    case DeliveryMode::kFixed:
      // __apic_accept_irq drops a level-triggered deassert.
      if (req.trigger_level && !req.level) return;
      deliver_fixed(src, target, req);
      return;
    case DeliveryMode::kNmi:
      t.lapic.post_nmi();
      break;
    case DeliveryMode::kInit:
      if (req.trigger_level && !req.level) return;  // INIT level de-assert: ignored
      t.lapic.post_init();
      break;
    case DeliveryMode::kStartup:
      t.lapic.post_sipi(req.vector);
      break;
    default:
      return;  // SMI, remote read, ExtINT through the bus: ignored, as KVM does
  }
  // NMI / INIT / SIPI: the target may sit in the backend's wait-for-SIPI loop, which is neither
  // guest mode nor a halt; the backend's kick reaches every wait, so use it unconditionally.
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.vcpu(target).make_request(kReqEvent);
  kick(target);
}

void ApicvVm::deliver_fixed(int src, int target, const InterruptRequest& req) {
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  const uint8_t vector = req.vector;
  const bool level = req.trigger_level;
  // The vendor deliver_interrupt hook traces kvm_apicv_accept_irq when the interrupt goes through
  // the target's APICv/AVIC: vmx_deliver_interrupt() after posting,
  // svm_complete_interrupt_delivery() before the doorbell or wake-up. With APICv inhibited on the
  // target neither traces.
  const bool apicv_active = inhibits_.vcpu_apicv_active(target);
  auto trace_apicv_accept = [&] {
    trace::trace_kvm_apicv_accept_irq(lapic_trace(), static_cast<uint32_t>(target),
                                      static_cast<uint16_t>(req.delivery_mode) << 8, level, vector);
  };
  if (target == src) {
    InterruptRequest r;
    r.vector = vector;
    r.trigger_level = level;
    t.lapic.accept_irq(r);
    // The sender is outside guest mode (it is handling its own exit): no doorbell, no notification.
    if (apicv_active) trace_apicv_accept();
    reqs_.vcpu(target).make_request(kReqEvent);
    return;
  }
  // vmx_deliver_interrupt(): with APICv active on the target, post into its descriptor.
  if (config_.vendor == VendorModel::kVmx && apicv_active) {
    vmx_deliver_posted_interrupt(target, vector, level);
    trace_apicv_accept();
    return;
  }
  // Lock-free posting into the target's PIR; the owner folds it into IRR before injecting.
  t.lapic.post(vector, level);
  if (avic_ && apicv_active) {
    trace_apicv_accept();
    // avic_ring_doorbell() for a target in guest mode (the kick below stands for the doorbell).
    if (reqs_.vcpu(target).mode() == VcpuMode::kInGuestMode &&
        (src < 0 || HostApicId(src) != HostApicId(target)))
      trace::trace_kvm_avic_doorbell(lapic_trace(), static_cast<uint32_t>(target),
                                     HostApicId(target));
  }
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.make_request_and_kick(target, kReqEvent);
}

void ApicvVm::vmx_deliver_posted_interrupt(int target, uint8_t vector, bool level) {
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  const int w = vector >> 5;
  const uint32_t bit = 1u << (vector & 31);
  if (level) {
    t.pi_tmr[static_cast<size_t>(w)].fetch_or(bit, std::memory_order_seq_cst);
  } else {
    t.pi_tmr[static_cast<size_t>(w)].fetch_and(~bit, std::memory_order_seq_cst);
  }
  // Only for the counters: which of the "no notification" cases it was.
  const bool was_pending = t.pi.test_pir(vector);
  st_pi_deliveries_.fetch_add(1, std::memory_order_relaxed);
  switch (deliver_posted_interrupt(t.pi, vector, reqs_.vcpu(target))) {
    case PiNotify::kNotify:
      // kvm_vcpu_trigger_posted_interrupt(): the notification IPI. The model has no hardware
      // PIR processing inside the guest, so the target exits and harvests on re-entry.
      st_pi_notifications_.fetch_add(1, std::memory_order_relaxed);
      st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
      reqs_.kick_vcpu(target);
      return;
    case PiNotify::kWake:
      // kvm_vcpu_wake_up(): a blocked target is woken; one between exit and entry finds ON in
      // vcpu_enter() or its next harvest.
      st_pi_wakeups_.fetch_add(1, std::memory_order_relaxed);
      if (reqs_.vcpu(target).blocked()) {
        st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
        reqs_.kick_vcpu(target);
      }
      return;
    case PiNotify::kNone:
      if (was_pending) {
        st_pi_coalesced_.fetch_add(1, std::memory_order_relaxed);
      } else if (!t.pi.sn()) {
        st_pi_suppressed_on_.fetch_add(1, std::memory_order_relaxed);
      }
      return;
  }
}

void ApicvVm::vmx_sync_pir_to_irr(VcpuCtx& c) {
  if (!c.pi.on()) return;
  std::array<uint32_t, 8> posted{};
  if (!sync_pir_to_irr(c.pi, posted).harvested) return;
  st_pi_harvests_.fetch_add(1, std::memory_order_relaxed);
  // __kvm_apic_update_irr(): the vectors join IRR with the trigger mode recorded by the sender;
  // a disabled APIC drops them, as __apic_accept_irq would have.
  for (int w = 0; w < 8; ++w) {
    uint32_t bits = posted[static_cast<size_t>(w)];
    if (bits == 0) continue;
    const uint32_t level = c.pi_tmr[static_cast<size_t>(w)].load(std::memory_order_seq_cst);
    while (bits != 0) {
      const int b = std::countr_zero(bits);
      bits &= bits - 1;
      InterruptRequest r;
      r.vector = static_cast<uint8_t>(w * 32 + b);
      r.delivery_mode = DeliveryMode::kFixed;
      r.trigger_level = (level >> b) & 1u;
      r.level = true;
      c.lapic.accept_irq(r);
    }
  }
}

void ApicvVm::vmx_clear_pi(VcpuCtx& c) {
  // Posted vectors are gone with the IRR they were meant for (INIT, RESET).
  c.pi.control.fetch_and(~kPiControlOn, std::memory_order_seq_cst);
  for (auto& w : c.pi.pir) w.store(0, std::memory_order_seq_cst);
}

}  // namespace apicv::virt
