// APICv/AVIC inhibit reasons, KVM's `enum kvm_apicv_inhibit` (arch/x86/include/asm/kvm_host.h) with
// the numbering of the 2025/2026 trees, their trace names and the per-vendor "required" masks
// (kvm_x86_ops.required_apicv_inhibits). Spec §1.1; AMD APM vol. 2 §15.29 (AVIC), Intel SDM vol. 3C
// ch. 30 (APIC virtualization).
//
// Header-only vocabulary, no state. KVM ABI (the numbers appear in kvm_apicv_inhibit_changed), so
// it lives below both the trace layer (which prints the names) and the virtualization layer (which
// sets and clears the reasons); src/virt/inhibit_reason.h re-exports it into apicv::virt.
// Not supported: the historical numberings of spec §1.2 (only the current one is modelled).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace apicv::x86 {

// Bit positions in the VM-wide mask are the enum values.
enum class InhibitReason : uint8_t {
  kDisabled = 0,
  kHyperv = 1,
  kAbsent = 2,
  kBlockIrq = 3,
  kPhysicalIdAliased = 4,
  kApicIdModified = 5,
  kApicBaseModified = 6,
  kNested = 7,  // per-vCPU (SVM): never set in the VM-wide mask
  kIrqWin = 8,
  kPitReinj = 9,
  kSev = 10,
  kLogicalIdAliased = 11,
  kPhysicalIdTooBig = 12,
};

inline constexpr int kNrApicvInhibitReasons = 13;

enum class Vendor : uint8_t { kSvm, kVmx };

constexpr unsigned long InhibitBit(InhibitReason r) {
  return 1ul << static_cast<unsigned>(r);
}

// The stringified enum suffix KVM's __print_flags() prints, in enum order.
inline constexpr std::array<std::string_view, kNrApicvInhibitReasons> kInhibitReasonNames = {
    "DISABLED",
    "HYPERV",
    "ABSENT",
    "BLOCKIRQ",
    "PHYSICAL_ID_ALIASED",
    "APIC_ID_MODIFIED",
    "APIC_BASE_MODIFIED",
    "NESTED",
    "IRQWIN",
    "PIT_REINJ",
    "SEV",
    "LOGICAL_ID_ALIASED",
    "PHYSICAL_ID_TOO_BIG",
};

constexpr std::string_view InhibitReasonName(InhibitReason r) {
  const auto i = static_cast<unsigned>(r);
  return i < kInhibitReasonNames.size() ? kInhibitReasonNames[i] : std::string_view("?");
}

// Every bit KVM can print; bits above this are never produced by apicv.
inline constexpr unsigned long kAllInhibitsMask = (1ul << kNrApicvInhibitReasons) - 1;

// VMX_REQUIRED_APICV_INHIBITS. Intel APICv keeps EOI exits for vectors with ack notifiers (EOI-exit
// bitmap), so PIT_REINJ does not matter, and interrupt windows work with APICv on, so no IRQWIN.
inline constexpr unsigned long kVmxRequiredApicvInhibits =
    InhibitBit(InhibitReason::kDisabled) | InhibitBit(InhibitReason::kAbsent) |
    InhibitBit(InhibitReason::kHyperv) | InhibitBit(InhibitReason::kBlockIrq) |
    InhibitBit(InhibitReason::kPhysicalIdAliased) | InhibitBit(InhibitReason::kApicIdModified) |
    InhibitBit(InhibitReason::kApicBaseModified);

// AVIC_REQUIRED_APICV_INHIBITS. PHYSICAL_ID_TOO_BIG is only produced by avic.c; the spec infers
// (not verified, spec §11) that the 2025 patch added it to this mask, and apicv does so.
inline constexpr unsigned long kSvmRequiredApicvInhibits =
    kVmxRequiredApicvInhibits | InhibitBit(InhibitReason::kNested) |
    InhibitBit(InhibitReason::kIrqWin) | InhibitBit(InhibitReason::kPitReinj) |
    InhibitBit(InhibitReason::kSev) | InhibitBit(InhibitReason::kLogicalIdAliased) |
    InhibitBit(InhibitReason::kPhysicalIdTooBig);

constexpr unsigned long RequiredApicvInhibits(Vendor v) {
  return v == Vendor::kSvm ? kSvmRequiredApicvInhibits : kVmxRequiredApicvInhibits;
}

}  // namespace apicv::x86
