// Interrupt delivery and routing (KVM lapic.c delivery, irq_comm.c); see apic_delivery.h.
#include "virt/apic_delivery.h"

#include "trace/kvm_events.h"
#include "virt/svm_avic.h"
#include "virt/vm_defs.h"
#include "virt/vmx_posted_intr.h"

namespace apicv::virt {

using x86::DeliveryMode;
using x86::InterruptRequest;

ApicDelivery::ApicDelivery(const VmConfig& config, VcpuDevices& vcpus, ApicvInhibits& inhibits,
                           VcpuRequestSet& reqs, const BackendKick& kick, const DeviceTrace& trace,
                           SvmAvic* avic, VmxPostedIntr* vmx)
    : config_(config),
      vcpus_(vcpus),
      inhibits_(inhibits),
      reqs_(reqs),
      kick_(kick),
      trace_(trace),
      avic_(avic),
      vmx_(vmx),
      arb_prio_(std::make_unique<std::atomic<uint32_t>[]>(static_cast<size_t>(vcpus.size()))),
      views_(static_cast<size_t>(vcpus.size())) {
  route_options_.vector_hashing = config.vector_hashing;
}

void ApicDelivery::reset_view(int vcpu) {
  std::lock_guard<std::mutex> g(map_mu_);
  views_[static_cast<size_t>(vcpu)] = ApicViewOf(vcpus_.lapic(vcpu).identity());
}

void ApicDelivery::rebuild_apic_map(int changed_vcpu, bool xapic_id_written) {
  irq::ApicMapFlags flags;
  bool id_written_2022 = false;
  {
    std::lock_guard<std::mutex> g(map_mu_);
    if (changed_vcpu >= 0) {
      // The owner thread calls us, so reading its Lapic is safe.
      const LapicIdentity id = vcpus_.lapic(changed_vcpu).identity();
      // 2022 rule (3743c2f02517): any guest write of the xAPIC ID register, even of the value it
      // already holds, compared the ID with the vCPU id not truncated to 8 bits (f651a0089548
      // added the truncation); a mismatch sets APIC_ID_MODIFIED for good.
      if (xapic_id_written && id.hw_enabled && !id.x2apic && id.xapic_id != id.vcpu_id)
        id_written_2022 = true;
      views_[static_cast<size_t>(changed_vcpu)] = ApicViewOf(id);
    }
    auto snap = std::make_shared<MapSnapshot>();
    snap->views = views_;
    snap->map.Rebuild(snap->views);
    flags = snap->map.flags();
    // avic_handle_ldr_update(): the logical APIC ID table follows LDR/DFR (xAPIC vCPUs only).
    if (avic_) avic_->rebuild_logical_table(snap->views);
    {
      std::lock_guard<std::mutex> sg(snap_mu_);
      map_snapshot_ = std::move(snap);
    }
    // kvm_recalculate_apic_map(): the three map inhibits are recomputed on every rebuild, still
    // under apic_map_lock (here map_mu_). Applying them after the unlock would let two concurrent
    // rebuilds apply their flags in the opposite order and leave a stale inhibit set.
    // Holding map_mu_ across the APICV_UPDATE kick-and-wait is safe: a vCPU in guest mode leaves
    // it without taking map_mu_ (docs/locking.md).
    inhibits_.set_or_clear(InhibitReason::kPhysicalIdAliased, flags.phys_id_aliased);
    inhibits_.set_or_clear(InhibitReason::kLogicalIdAliased, flags.logical_id_aliased);
    if (config_.apic_id_check == ApicIdCheck::kCurrent) {
      inhibits_.set_or_clear(InhibitReason::kApicIdModified, flags.xapic_id_mismatch);
    } else if (id_written_2022) {
      inhibits_.set(InhibitReason::kApicIdModified);
    }
  }
  st_map_rebuilds_.fetch_add(1, std::memory_order_relaxed);
  // kvm_recalculate_apic_map() ends with kvm_make_scan_ioapic_request(): RTE destinations may now
  // match other vCPUs. Only the VMX model keeps an EOI-exit bitmap.
  if (vmx_) vmx_->request_scan_ioapic();
}

void ApicDelivery::send_ipi(int src, const InterruptRequest& req) {
  st_ipis_.fetch_add(1, std::memory_order_relaxed);
  // With AVIC active on the sender, the hardware takes the ICR write; KVM only sees it when it
  // exits with AVIC_INCOMPLETE_IPI. When the sender's AVIC is inhibited, the write traps and KVM
  // emulates it (kvm_apic_send_ipi).
  if (avic_ && req.from_ipi && src >= 0 && src < config_.nr_vcpus &&
      inhibits_.vcpu_apicv_active(src)) {
    std::shared_ptr<const MapSnapshot> snap = load_map();
    if (avic_->icr_write(src, req, snap->views)) kvm_apic_send_ipi(src, req);
    return;
  }
  kvm_apic_send_ipi(src, req);
}

void ApicDelivery::kvm_apic_send_ipi(int src, const InterruptRequest& req) {
  // kvm_apic_send_ipi() traces the ICR low word (BUSY already cleared) and the decoded
  // destination: ICR[63:32] for an x2APIC source, ICR2[31:24] for xAPIC.
  trace::trace_kvm_apic_ipi(trace_.lapic(), IcrLow(req), req.dest_id);
  route_and_deliver(src, req);
}

void ApicDelivery::route_and_deliver(int src, const InterruptRequest& req) {
  std::shared_ptr<const MapSnapshot> snap = load_map();
  thread_local irq::TargetList targets;
  targets.clear();
  if (!route_options_.vector_hashing && irq::IsLowestPriority(req)) {
    // kvm_apic_compare_prio() reads each candidate's live apic_arb_prio.
    thread_local std::vector<irq::ApicView> views;
    views = snap->views;
    for (size_t i = 0; i < views.size(); ++i)
      views[i].arb_prio = arb_prio_[i].load(std::memory_order_relaxed);
    irq::Route(req, &snap->map, views, route_options_, targets);
  } else {
    irq::Route(req, &snap->map, snap->views, route_options_, targets);
  }
  for (int t : targets.targets()) deliver(src, req, t);
}

int ApicDelivery::ioapic_delivery_result(const InterruptRequest& req) const {
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

void ApicDelivery::deliver(int src, const InterruptRequest& req, int target) {
  if (target < 0 || target >= config_.nr_vcpus) return;
  Lapic& t = vcpus_.lapic(target);
  trace::trace_kvm_apic_accept_irq(trace_.lapic(), static_cast<uint32_t>(target),
                                   static_cast<uint16_t>(req.delivery_mode) << 8, req.trigger_level,
                                   req.vector);
  switch (req.delivery_mode) {
    case DeliveryMode::kLowestPriority:
      // __apic_accept_irq: every lowest-priority arrival counts, accepted or not.
      arb_prio_[static_cast<size_t>(target)].fetch_add(1, std::memory_order_relaxed);
      [[fallthrough]];
    case DeliveryMode::kFixed:
      // __apic_accept_irq drops a level-triggered deassert.
      if (req.trigger_level && !req.level) return;
      deliver_fixed(src, target, req);
      return;
    case DeliveryMode::kNmi:
      t.post_nmi();
      break;
    case DeliveryMode::kInit:
      if (req.trigger_level && !req.level) return;  // INIT level de-assert: ignored
      t.post_init();
      break;
    case DeliveryMode::kStartup:
      t.post_sipi(req.vector);
      break;
    default:
      return;  // SMI, remote read, ExtINT through the bus: ignored, as KVM does
  }
  // NMI / INIT / SIPI: the target may sit in the backend's wait-for-SIPI loop, which is neither
  // guest mode nor a halt; the backend's kick reaches every wait, so use it unconditionally.
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.vcpu(target).make_request(kReqEvent);
  kick_.kick(target);
}

void ApicDelivery::deliver_fixed(int src, int target, const InterruptRequest& req) {
  Lapic& t = vcpus_.lapic(target);
  const uint8_t vector = req.vector;
  const bool level = req.trigger_level;
  // The vendor deliver_interrupt hook traces kvm_apicv_accept_irq when the interrupt goes through
  // the target's APICv/AVIC: vmx_deliver_interrupt() after posting,
  // svm_complete_interrupt_delivery() before the doorbell or wake-up. With APICv inhibited on the
  // target neither traces.
  const bool apicv_active = inhibits_.vcpu_apicv_active(target);
  auto trace_apicv_accept = [&] {
    trace::trace_kvm_apicv_accept_irq(trace_.lapic(), static_cast<uint32_t>(target),
                                      static_cast<uint16_t>(req.delivery_mode) << 8, level, vector);
  };
  if (target == src) {
    InterruptRequest r;
    r.vector = vector;
    r.trigger_level = level;
    t.accept_irq(r);
    // The sender is outside guest mode (it is handling its own exit): no doorbell, no notification.
    if (apicv_active) trace_apicv_accept();
    reqs_.vcpu(target).make_request(kReqEvent);
    return;
  }
  // vmx_deliver_interrupt(): with APICv active on the target, post into its descriptor.
  if (vmx_ && apicv_active) {
    vmx_->deliver(target, vector, level);
    trace_apicv_accept();
    return;
  }
  // Lock-free posting into the target's PIR; the owner folds it into IRR before injecting.
  t.post(vector, level);
  if (avic_ && apicv_active) {
    trace_apicv_accept();
    // avic_ring_doorbell() for a target in guest mode (the kick below stands for the doorbell).
    if (reqs_.vcpu(target).mode() == VcpuMode::kInGuestMode &&
        (src < 0 || HostApicId(src) != HostApicId(target)))
      trace::trace_kvm_avic_doorbell(trace_.lapic(), static_cast<uint32_t>(target),
                                     HostApicId(target));
  }
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.make_request_and_kick(target, kReqEvent);
}

ApicDeliveryStats ApicDelivery::stats() const {
  ApicDeliveryStats s;
  s.ipis = st_ipis_.load(std::memory_order_relaxed);
  s.ipi_kicks = st_ipi_kicks_.load(std::memory_order_relaxed);
  s.map_rebuilds = st_map_rebuilds_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace apicv::virt
