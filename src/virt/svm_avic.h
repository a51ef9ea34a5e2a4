// The VM's AVIC side on vendor svm (KVM svm/avic.c around the hardware): the Avic model of the
// physical and logical APIC ID tables (avic.h), what KVM does to other vCPUs for it
// (avic_kick_target_vcpus, svm_complete_interrupt_delivery), IsRunning on entry / exit / blocking,
// the guest ICR write from a vCPU whose AVIC is active, and the classification of its xAPIC page
// accesses. AMD APM vol. 2 15.29; spec §7.1-§7.3.
//
// A guest ICR write from a vCPU whose APICv is active goes through the hardware model (APM
// 15.29.3.1): IRR + doorbell for running targets, AVIC_INCOMPLETE_IPI otherwise and KVM's
// handling of it (fast or slow kick, or full emulation, which icr_write() leaves to the caller).
// IsRunning is set by vcpu_load (entry), cleared by vcpu_put (exit) and by vcpu_blocking before
// the vCPU's final halt check (avic_vcpu_blocking).
//
// Threading: icr_write() runs on the sender's thread, any number at once, and reads the APIC map
// snapshot the caller pins for it; vcpu_load/put/blocking on the vCPU's own thread;
// rebuild_logical_table() under the APIC map lock (ApicDelivery::map_mu_). Tables and counters
// are atomics inside Avic and here. No lock of its own.
//
// Not supported: x2APIC MSR accesses are not classified (no x2AVIC MSR-intercept map), the IOMMU
// side (GA log), nested AVIC; see avic.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "irq/apic_view.h"
#include "virt/apicv_inhibits.h"
#include "virt/avic.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"
#include "x86/apic_defs.h"

namespace apicv::virt {

struct SvmAvicStats {
  AvicStats avic;                     // the hardware model and KVM's exit handlers
  uint64_t ipi_kicks = 0;             // kicks for AVIC deliveries (doorbells, wake-ups, events)
  uint64_t eois_accelerated = 0;      // edge EOIs completed in the backing page
  uint64_t accelerated_accesses = 0;  // xAPIC page accesses the "hardware" completed
  uint64_t unaccelerated_traps = 0;   // AVIC_UNACCELERATED_ACCESS after the store
  uint64_t unaccelerated_faults = 0;  // AVIC_UNACCELERATED_ACCESS before the access
};

class SvmAvic {
 public:
  // avic_hardware_setup(): x2AVIC's 0x1FF table when the VM needs more than 255 ids, else the
  // xAPIC AVIC table (0xFE; 0xFF is the broadcast).
  SvmAvic(const VmConfig& config, VcpuDevices& vcpus, ApicvInhibits& inhibits, VcpuRequestSet& reqs,
          trace::TraceSink* trace);
  SvmAvic(const SvmAvic&) = delete;
  SvmAvic& operator=(const SvmAvic&) = delete;

  // avic_init_backing_page() for every vCPU: a vcpu_id above the table's max index sets
  // PHYSICAL_ID_TOO_BIG (once per such vCPU, as KVM does per vCPU creation).
  void init_vcpus();
  // The hardware takes the ICR write of `src` (APICv active): returns true when KVM must emulate
  // the IPI itself (INVALID_INT_TYPE / INVALID_TARGET: kvm_apic_send_ipi), false when the
  // hardware and KVM's incomplete-IPI handling completed it. `views` is the pinned APIC map.
  bool icr_write(int src, const x86::InterruptRequest& req, std::span<const irq::ApicView> views);
  // A guest xAPIC MMIO access while AVIC is active: accelerated, or AVIC_UNACCELERATED_ACCESS
  // (trap / fault), traced before the Lapic performs the access.
  void lapic_mmio_access(int vcpu, uint32_t offset, unsigned len, bool write);
  // AVIC completes edge-triggered EOIs in the backing page: no exit, no IOAPIC EOI, no ack
  // notifier (why PIT reinjection inhibits AVIC). Counts those it completes.
  bool eoi_accelerated(bool level_triggered);
  // avic_handle_ldr_update(): the logical table follows LDR/DFR (under the map lock).
  void rebuild_logical_table(std::span<const irq::ApicView> views) {
    avic_.rebuild_logical_table(views);
  }
  // __avic_vcpu_load / avic_vcpu_unblocking, __avic_vcpu_put, avic_vcpu_blocking.
  void vcpu_load(int vcpu) { avic_.vcpu_load(vcpu, HostApicIdOf(vcpu)); }
  void vcpu_put(int vcpu) { avic_.vcpu_put(vcpu); }
  void vcpu_blocking(int vcpu) { avic_.vcpu_blocking(vcpu); }
  bool is_running(int vcpu) const { return avic_.is_running(vcpu); }
  void set_device_trace(trace::TraceSink* sink) { avic_.set_device_trace(sink); }

  SvmAvicStats stats() const;

 private:
  class Ops;
  static uint32_t HostApicIdOf(int vcpu);

  VcpuDevices& vcpus_;
  ApicvInhibits& inhibits_;
  VcpuRequestSet& reqs_;
  Avic avic_;
  struct Counters {
    std::atomic<uint64_t> ipi_kicks{0}, eois_accelerated{0}, accelerated_accesses{0},
        unaccelerated_traps{0}, unaccelerated_faults{0};
  };
  mutable Counters st_;
};

}  // namespace apicv::virt
