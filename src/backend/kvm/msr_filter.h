// The MSRs apicv serves in `--irqchip apicv` mode and the KVM_X86_SET_MSR_FILTER that makes them
// exit to userspace (KVM API doc 4.126 KVM_X86_SET_MSR_FILTER, 7.21 KVM_CAP_X86_USER_SPACE_MSR).
// The x2APIC range 0x800-0x8FF needs no filter: without an in-kernel LAPIC KVM does not know those
// MSRs and exits with reason INVAL. Denied here: IA32_APIC_BASE, IA32_TSC_DEADLINE and the PMU
// MSRs (Intel architectural PMU v2, AMD legacy and PerfCtrExtCore) so the vPMU can serve them.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

namespace apicv::kvm {

struct MsrRange {
  uint32_t base;
  uint32_t count;
};

// The denied ranges, in ascending order, at most KVM_MSR_FILTER_MAX_RANGES of them.
std::span<const MsrRange> ApicvDeniedMsrs();
bool IsApicvDeniedMsr(uint32_t msr);

// A filter with default-allow and every ApicvDeniedMsrs() range denied for reads and writes.
// `bitmaps` backs the (all-zero: deny) bitmaps the filter points to and must outlive the ioctl.
kvm_msr_filter BuildApicvMsrFilter(std::vector<std::vector<uint8_t>>& bitmaps);

}  // namespace apicv::kvm
