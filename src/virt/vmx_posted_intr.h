// The VM's APICv side on vendor vmx (KVM vmx/posted_intr.c, vmx.c vmx_deliver_interrupt /
// vmx_sync_pir_to_irr / vmx_load_eoi_exitmap, x86.c vcpu_scan_ioapic): each vCPU's
// posted-interrupt descriptor with the trigger modes of its posted vectors, and its EOI-exit
// bitmap. Intel SDM vol. 3C 30.6 (posted-interrupt processing), 30.1.3 (EOI virtualization);
// the descriptor operations themselves are posted_interrupt.h.
//
// A fixed interrupt for a vCPU other than the sender whose APICv is active is posted here (PIR
// bit, then ON); the notification is a kick when the target is in guest mode, a wake-up when it
// is blocked, nothing when ON was already set. Each entry (and the halt check) harvests PIR into
// the Lapic's IRR. The EOI-exit bitmap is rebuilt on KVM_REQ_SCAN_IOAPIC from the vectors the
// IOAPIC glue reports as handled for the vCPU: with APICv active, an EOI of a vector outside it
// completes in the virtual APIC (no IOAPIC EOI, no ack notifier). That is why VMX needs no
// PIT_REINJ inhibit.
//
// Threading: deliver() from any thread (lock-free: PIR, ON and the trigger-mode words are seq_cst
// atomics, the trigger mode written before the PIR bit as vmx_deliver_interrupt() writes the
// vAPIC TMR first); sync_pir_to_irr(), the bitmap and clear() on the owner vCPU's thread (or with
// every vCPU stopped). No lock.
//
// Not supported: SN is never set (vCPUs are not preempted in the model), the notification vector
// is not delivered inside the guest (the kick makes the target exit and harvest on re-entry),
// IPI virtualization (IPIv), VT-d posting.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "virt/backend_kick.h"
#include "virt/posted_interrupt.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"

namespace apicv::virt {

struct VmxPostedIntrStats {
  uint64_t deliveries = 0;        // fixed interrupts posted into a target's PiDesc
  uint64_t notifications = 0;     // target in guest mode: notification (a kick here)
  uint64_t wakeups = 0;           // target outside the guest: kvm_vcpu_wake_up
  uint64_t suppressed_on = 0;     // no notification: ON was already set
  uint64_t coalesced = 0;         // the vector was already pending in PIR
  uint64_t harvests = 0;          // sync_pir_to_irr found ON and moved PIR into IRR
  uint64_t kicks = 0;             // kicks caused by notifications and wake-ups
  uint64_t eois_virtualized = 0;  // EOIs outside the EOI-exit bitmap: no exit
  uint64_t eoi_exits = 0;         // EOIs inside the bitmap: EOI-induced exits
  uint64_t ioapic_scans = 0;      // KVM_REQ_SCAN_IOAPIC handled (bitmap recomputed)
};

class VmxPostedIntr {
 public:
  // Linux's POSTED_INTR_VECTOR: the notification vector KVM writes into every PiDesc.NV.
  static constexpr uint8_t kPostedIntrVector = 0xF2;

  // vmx_vcpu_pi_load() for every vCPU: NV is the host's posted-interrupt vector, NDST the pCPU.
  VmxPostedIntr(VcpuDevices& vcpus, VcpuRequestSet& reqs, const BackendKick& kick);
  VmxPostedIntr(const VmxPostedIntr&) = delete;
  VmxPostedIntr& operator=(const VmxPostedIntr&) = delete;

  // __vmx_deliver_posted_interrupt() plus the notification (any thread).
  void deliver(int target, uint8_t vector, bool level);
  // vmx_sync_pir_to_irr() / __kvm_apic_update_irr(): owner thread.
  void sync_pir_to_irr(int vcpu);
  // Posted vectors are gone with the IRR they were meant for (INIT, RESET).
  void clear(int vcpu);
  bool on(int vcpu) const { return pi(vcpu).desc.on(); }
  const PiDesc& desc(int vcpu) const { return pi(vcpu).desc; }

  // kvm_make_scan_ioapic_request(): KVM_REQ_SCAN_IOAPIC on every vCPU (NO_WAKEUP), vCPUs in the
  // guest kicked so they cannot EOI with a stale bitmap for long. Any thread.
  void request_scan_ioapic();
  // vcpu_load_eoi_exitmap() with the vectors the IOAPIC scan found (owner thread).
  void load_eoi_exitmap(int vcpu, const EoiExitBitmap& handled);
  const EoiExitBitmap& eoi_exit_bitmap(int vcpu) const { return pi(vcpu).eoi_exit_bitmap; }
  // EOI virtualization with APICv active (SDM 30.1.3): true when the EOI of `vector` completes in
  // the virtual APIC (outside the bitmap); false when it exits (handle_apic_eoi_induced).
  bool eoi_virtualized(int vcpu, uint8_t vector);

  VmxPostedIntrStats stats() const;

 private:
  struct alignas(64) PerVcpu {
    PiDesc desc;
    std::array<std::atomic<uint32_t>, 8> tmr{};  // trigger mode of each posted vector
    EoiExitBitmap eoi_exit_bitmap;               // owner thread
  };
  PerVcpu& pi(int vcpu) { return per_vcpu_[static_cast<size_t>(vcpu)]; }
  const PerVcpu& pi(int vcpu) const { return per_vcpu_[static_cast<size_t>(vcpu)]; }

  VcpuDevices& vcpus_;
  VcpuRequestSet& reqs_;
  const BackendKick& kick_;
  std::unique_ptr<PerVcpu[]> per_vcpu_;
  struct Counters {
    std::atomic<uint64_t> deliveries{0}, notifications{0}, wakeups{0}, suppressed_on{0},
        coalesced{0}, harvests{0}, kicks{0}, eois_virtualized{0}, eoi_exits{0}, ioapic_scans{0};
  };
  mutable Counters st_;
};

}  // namespace apicv::virt
