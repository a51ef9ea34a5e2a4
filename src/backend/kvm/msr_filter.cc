// MSR filter for apicv mode; see msr_filter.h.
#include "backend/kvm/msr_filter.h"

#include <cstring>

namespace apicv::kvm {

namespace {
constexpr MsrRange kDenied[] = {
    {0xC1, 4},         // IA32_PMC0..3
    {0x186, 4},        // IA32_PERFEVTSEL0..3
    {0x1B, 1},         // IA32_APIC_BASE
    {0x309, 3},        // IA32_FIXED_CTR0..2
    {0x345, 1},        // IA32_PERF_CAPABILITIES
    {0x38D, 4},        // FIXED_CTR_CTRL, PERF_GLOBAL_STATUS, _CTRL, _OVF_CTRL
    {0x6E0, 1},        // IA32_TSC_DEADLINE
    {0xC0010000, 8},   // AMD PERF_CTL0..3, PERF_CTR0..3
    {0xC0010200, 12},  // AMD PERF_CTL/CTR 0..5 (PerfCtrExtCore)
};
static_assert(sizeof(kDenied) / sizeof(kDenied[0]) <= KVM_MSR_FILTER_MAX_RANGES);
}  // namespace

std::span<const MsrRange> ApicvDeniedMsrs() {
  return kDenied;
}

bool IsApicvDeniedMsr(uint32_t msr) {
  for (const MsrRange& r : kDenied) {
    if (msr >= r.base && msr - r.base < r.count) return true;
  }
  return false;
}

kvm_msr_filter BuildApicvMsrFilter(std::vector<std::vector<uint8_t>>& bitmaps) {
  kvm_msr_filter f;
  std::memset(&f, 0, sizeof f);
  f.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  bitmaps.clear();
  bitmaps.reserve(std::size(kDenied));
  for (size_t i = 0; i < std::size(kDenied); ++i) {
    // A clear bit denies the access: an all-zero bitmap denies the whole range.
    bitmaps.emplace_back((kDenied[i].count + 7) / 8, 0);
    f.ranges[i].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
    f.ranges[i].nmsrs = kDenied[i].count;
    f.ranges[i].base = kDenied[i].base;
    f.ranges[i].bitmap = bitmaps.back().data();
  }
  return f;
}

}  // namespace apicv::kvm
