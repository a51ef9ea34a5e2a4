// Intel posted interrupts as KVM uses them for APICv: the 64-byte posted-interrupt descriptor
// (PIR, ON, SN, NV, NDST), KVM's sender side (__vmx_deliver_posted_interrupt), the receiver's
// harvest on entry (vmx_sync_pir_to_irr / __kvm_apic_update_irr) and the EOI-exit bitmap that
// keeps EOIs of "handled" vectors visible to ack notifiers.
// Intel SDM vol. 3C 30.6 (posted-interrupt processing and the descriptor format), 30.1.3
// (EOI virtualization and the EOI-exit bitmap); VT-d spec 9.12 (SN, NV, NDST); spec §7.4.
//
// Threading: any thread may deliver_posted_interrupt() concurrently; sync_pir_to_irr(),
// set_sn()/clear_sn() and the EoiExitBitmap belong to the target vCPU's thread. Lock-free: the
// PIR words and the control word are atomics (seq_cst RMWs, as the locked instructions KVM uses).
//
// Not supported: the hardware's own posted-interrupt processing inside the guest (the notification
// vector arriving in VMX non-root mode is modelled by the Vm harvesting PIR on the next entry),
// VT-d IRTE posting (the IOMMU side of SN), wakeup vectors and per-CPU blocked-vCPU lists.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>

#include "virt/vcpu_request.h"

namespace apicv::virt {

// Control word = descriptor bits 319:256.
inline constexpr uint64_t kPiControlOn = 1ull << 0;  // bit 256: outstanding notification
inline constexpr uint64_t kPiControlSn = 1ull << 1;  // bit 257: suppress notification
inline constexpr uint64_t kPiControlNvShift = 16;    // bits 279:272: notification vector
inline constexpr uint64_t kPiControlNvMask = 0xFFull << kPiControlNvShift;
inline constexpr uint64_t kPiControlNdstShift = 32;  // bits 319:288: notification destination
inline constexpr uint64_t kPiControlNdstMask = 0xFFFFFFFFull << kPiControlNdstShift;

struct alignas(64) PiDesc {
  std::array<std::atomic<uint64_t>, 4> pir{};  // bits 255:0, one per vector
  std::atomic<uint64_t> control{0};
  uint64_t reserved[3] = {};

  bool on() const { return control.load(std::memory_order_seq_cst) & kPiControlOn; }
  bool sn() const { return control.load(std::memory_order_seq_cst) & kPiControlSn; }
  uint8_t nv() const {
    return static_cast<uint8_t>((control.load(std::memory_order_seq_cst) & kPiControlNvMask) >>
                                kPiControlNvShift);
  }
  uint32_t ndst() const {
    return static_cast<uint32_t>(control.load(std::memory_order_seq_cst) >> kPiControlNdstShift);
  }
  bool test_pir(uint8_t vector) const {
    return pir[vector >> 6].load(std::memory_order_seq_cst) & (1ull << (vector & 63));
  }
  bool pir_empty() const;

  // Rewrites NV / NDST without disturbing a concurrent ON/SN update (vmx_vcpu_pi_load).
  void set_nv(uint8_t vector);
  void set_ndst(uint32_t dest);
};
static_assert(sizeof(PiDesc) == 64, "the posted-interrupt descriptor is 64 bytes");
static_assert(alignof(PiDesc) == 64, "the posted-interrupt descriptor is 64-byte aligned");

enum class PiNotify : uint8_t {
  kNone,    // already pending (PIR bit or ON already set) or notifications suppressed (SN)
  kNotify,  // target IN_GUEST_MODE: send the posted-interrupt notification IPI to its pCPU
  kWake,    // target outside the guest: kvm_vcpu_wake_up (it harvests PIR on its next entry)
};

// __vmx_deliver_posted_interrupt(): test-and-set the PIR bit (already set -> kNone), then, unless
// SN is set, test-and-set ON (already set -> kNone, a notification is outstanding), then notify
// according to the target's mode, read after both RMWs so a vCPU entering the guest concurrently
// either sees the bit or is notified.
PiNotify deliver_posted_interrupt(PiDesc& desc, uint8_t vector, const VcpuRequests& target);

struct PiSyncResult {
  bool harvested = false;     // ON was set and PIR was drained
  int max_irr = -1;           // highest vector present in the result IRR, -1 if none
  bool max_from_pir = false;  // the new highest IRR came from PIR (KVM's return value)
};

// vmx_sync_pir_to_irr(): if ON, clear ON first (a sender racing with the harvest then sets ON and
// notifies again, so nothing is lost), exchange each PIR word with zero and OR it into `irr`
// (the APIC's 8 x 32-bit IRR registers). Without ON, PIR is left alone.
PiSyncResult sync_pir_to_irr(PiDesc& desc, std::span<uint32_t, 8> irr);

// SN on vCPU put (preempted, not blocking): senders stop notifying.
void set_sn(PiDesc& desc);
// SN cleared on vCPU load; if PIR gathered vectors while SN was set, ON is set so the next
// sync_pir_to_irr() harvests them. Returns true if it set ON.
bool clear_sn(PiDesc& desc);

// The 256-bit EOI-exit bitmap (VMCS EOI_EXIT_BITMAP0-3): an EOI of a set vector exits to the
// hypervisor so ack notifiers (IOAPIC remote IRR, PIT reinjection) still run.
class EoiExitBitmap {
 public:
  void set(uint8_t vector) { bits_[vector >> 6] |= 1ull << (vector & 63); }
  void clear(uint8_t vector) { bits_[vector >> 6] &= ~(1ull << (vector & 63)); }
  bool test(uint8_t vector) const { return bits_[vector >> 6] & (1ull << (vector & 63)); }
  void reset() { bits_ = {}; }
  const std::array<uint64_t, 4>& words() const { return bits_; }
  bool operator==(const EoiExitBitmap&) const = default;

  // vcpu_load_eoi_exitmap() from the vectors KVM's IOAPIC scan reports as handled for this vCPU.
  static EoiExitBitmap FromHandledVectors(std::span<const uint8_t> handled_vectors);

 private:
  std::array<uint64_t, 4> bits_{};
};

}  // namespace apicv::virt
