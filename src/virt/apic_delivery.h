// Interrupt delivery and routing (KVM lapic.c kvm_recalculate_apic_map / kvm_apic_send_ipi /
// __apic_accept_irq, irq_comm.c kvm_irq_delivery_to_apic): the VM's APIC map, IPIs and IOAPIC
// messages routed through it (irq/apic_bus.h: fixed, lowest priority with vector hashing or
// apic_arb_prio arbitration, NMI, INIT, SIPI), and acceptance into the target: the Lapic's
// lock-free PIR (Lapic::post), the VMX PiDesc when the target's APICv is active
// (VmxPostedIntr), the sender's own IRR, or the NMI / INIT / SIPI latches (the Lapic's, the only
// ones). An ICR write from a vCPU whose AVIC is active goes to the AVIC hardware first
// (SvmAvic); only what it leaves to KVM is emulated here. Intel SDM vol. 3A 11.6 (IPIs), 11.12
// (x2APIC); AMD APM vol. 2 15.29.3.1.
//
// Locks (docs/locking.md): `map_mu_` guards the per-vCPU views and building the next snapshot
// (and the AVIC logical table rebuild, and the three map inhibits applied while still holding it,
// as KVM does under apic_map_lock); `snap_mu_` (leaf) guards the published snapshot pointer.
// Senders copy the pointer and route without any lock. Kicks and traces run with no lock held.
//
// Not supported: the x2APIC "hotplug hack" ID format, SMI and remote-read delivery (accepted and
// dropped, as KVM), KVM's optimized-map fast path (every message takes the routing layer's map).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "irq/apic_bus.h"
#include "irq/apic_map.h"
#include "irq/apic_view.h"
#include "virt/apicv_inhibits.h"
#include "virt/backend_kick.h"
#include "virt/device_trace.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"

namespace apicv::virt {

class SvmAvic;
class VmxPostedIntr;

struct ApicDeliveryStats {
  uint64_t ipis = 0;          // ICR / SELF_IPI messages sent
  uint64_t ipi_kicks = 0;     // kicks caused by delivery (posted vectors, NMI/INIT/SIPI)
  uint64_t map_rebuilds = 0;  // kvm_recalculate_apic_map() runs
};

class ApicDelivery {
 public:
  // `avic` (vendor svm) and `vmx` (vendor vmx) may be null; everything must outlive this.
  ApicDelivery(const VmConfig& config, VcpuDevices& vcpus, ApicvInhibits& inhibits,
               VcpuRequestSet& reqs, const BackendKick& kick, const DeviceTrace& trace,
               SvmAvic* avic, VmxPostedIntr* vmx);
  ApicDelivery(const ApicDelivery&) = delete;
  ApicDelivery& operator=(const ApicDelivery&) = delete;

  // The vCPU's view from its Lapic as it is now (construction, reset: every vCPU stopped).
  void reset_view(int vcpu);
  // kvm_recalculate_apic_map(): `changed_vcpu` (-1: none) re-reads its Lapic on its own thread;
  // the new snapshot is published, the map inhibits (PHYSICAL_ID_ALIASED, LOGICAL_ID_ALIASED,
  // APIC_ID_MODIFIED) re-derived, and KVM_REQ_SCAN_IOAPIC requested. `xapic_id_written`: the
  // guest wrote the xAPIC ID register (the 2022 rule of --apic-id-check 2022).
  void rebuild_apic_map(int changed_vcpu, bool xapic_id_written = false);
  // An ICR / SELF_IPI write of vCPU `src`: through the AVIC when active on the sender, else
  // kvm_apic_send_ipi().
  void send_ipi(int src, const x86::InterruptRequest& req);
  // kvm_irq_delivery_to_apic(): route `req` from `src` (-1: the IOAPIC) and accept it on every
  // target.
  void route_and_deliver(int src, const x86::InterruptRequest& req);
  // kvm_irq_delivery_to_apic()'s return value for an IOAPIC message, without delivering it: -1
  // when the slow path finds no destination, else how many targets __apic_accept_irq() would
  // accept it on. The IOAPIC sets remote IRR from it (called under the IOAPIC's mutex; snap_mu_
  // is a leaf).
  int ioapic_delivery_result(const x86::InterruptRequest& req) const;
  // INIT / RESET: KVM's apic_arb_prio starts over.
  void reset_arb_prio(int vcpu) {
    arb_prio_[static_cast<size_t>(vcpu)].store(0, std::memory_order_relaxed);
  }
  const irq::RouteOptions& route_options() const { return route_options_; }

  ApicDeliveryStats stats() const;

 private:
  struct MapSnapshot {
    irq::ApicMap map;
    std::vector<irq::ApicView> views;
  };
  std::shared_ptr<const MapSnapshot> load_map() const {
    std::lock_guard<std::mutex> g(snap_mu_);
    return map_snapshot_;
  }
  void kvm_apic_send_ipi(int src, const x86::InterruptRequest& req);
  void deliver(int src, const x86::InterruptRequest& req, int target);
  void deliver_fixed(int src, int target, const x86::InterruptRequest& req);

  const VmConfig& config_;
  VcpuDevices& vcpus_;
  ApicvInhibits& inhibits_;
  VcpuRequestSet& reqs_;
  const BackendKick& kick_;
  const DeviceTrace& trace_;
  SvmAvic* const avic_;
  VmxPostedIntr* const vmx_;
  irq::RouteOptions route_options_;
  // KVM's vcpu->arch.apic_arb_prio: lowest-priority messages that reached each vCPU since its
  // last INIT/RESET; the arbitration input when vector hashing is off.
  std::unique_ptr<std::atomic<uint32_t>[]> arb_prio_;

  std::mutex map_mu_;
  std::vector<irq::ApicView> views_;                 // guarded by map_mu_
  mutable std::mutex snap_mu_;                       // leaf
  std::shared_ptr<const MapSnapshot> map_snapshot_;  // guarded by snap_mu_

  std::atomic<uint64_t> st_ipis_{0}, st_ipi_kicks_{0}, st_map_rebuilds_{0};
};

}  // namespace apicv::virt
