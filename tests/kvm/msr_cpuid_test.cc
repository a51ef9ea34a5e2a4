// The apicv MSR filter (KVM_X86_SET_MSR_FILTER: default allow, clear bitmap bits deny) and the
// CPUID patch (leaf 1 ECX[21] x2APIC, ECX[24] TSC-deadline, EBX[31:24] APIC ID; leaf 0xB EDX).
#include <gtest/gtest.h>

#include <vector>

#include "backend/kvm/cpuid.h"
#include "backend/kvm/msr_filter.h"

namespace apicv::kvm {
namespace {

TEST(MsrFilter, DeniesApicAndPmuMsrsOnly) {
  for (uint32_t msr : {0x1Bu, 0x6E0u, 0x38Fu, 0x390u, 0x38Du, 0xC1u, 0xC4u, 0x186u, 0x189u, 0x309u,
                       0x30Bu, 0x345u, 0xC0010000u, 0xC0010007u, 0xC0010200u, 0xC001020Bu}) {
    EXPECT_TRUE(IsApicvDeniedMsr(msr)) << std::hex << msr;
  }
  for (uint32_t msr : {0x10u, 0x1Au, 0x1Cu, 0x174u, 0x6DFu, 0x6E1u, 0x800u, 0x830u, 0x8FFu, 0xC5u,
                       0x18Au, 0x30Cu, 0xC0000080u, 0xC0010008u, 0xC001020Cu}) {
    EXPECT_FALSE(IsApicvDeniedMsr(msr)) << std::hex << msr;
  }
}

TEST(MsrFilter, FilterStructDeniesEveryRange) {
  std::vector<std::vector<uint8_t>> bitmaps;
  kvm_msr_filter f = BuildApicvMsrFilter(bitmaps);
  EXPECT_EQ(f.flags, static_cast<uint32_t>(KVM_MSR_FILTER_DEFAULT_ALLOW));
  size_t used = 0;
  for (const auto& r : f.ranges) {
    if (r.nmsrs == 0) continue;
    ++used;
    EXPECT_EQ(r.flags, static_cast<uint32_t>(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE));
    ASSERT_NE(r.bitmap, nullptr);
    for (uint32_t i = 0; i < r.nmsrs; ++i) {
      EXPECT_EQ((r.bitmap[i / 8] >> (i % 8)) & 1, 0) << "MSR allowed: " << r.base + i;
      EXPECT_TRUE(IsApicvDeniedMsr(r.base + i));
    }
  }
  EXPECT_EQ(used, ApicvDeniedMsrs().size());
  EXPECT_LE(used, static_cast<size_t>(KVM_MSR_FILTER_MAX_RANGES));
}

TEST(Cpuid, AdvertisesX2ApicTscDeadlineAndApicIds) {
  std::vector<kvm_cpuid_entry2> e(4);
  e[0].function = 0;
  e[0].ebx = 0x756E6547;
  e[1].function = 1;
  e[1].ebx = 0xAB010800;  // stale APIC ID 0xAB, CLFLUSH size 8
  e[1].ecx = 0x1;
  e[2].function = 0xB;
  e[2].index = 0;
  e[3].function = 0xB;
  e[3].index = 1;
  PatchCpuidForVcpu(e, 300);
  EXPECT_EQ(e[0].ebx, 0x756E6547u);
  EXPECT_TRUE(e[1].ecx & (1u << 21));
  EXPECT_TRUE(e[1].ecx & (1u << 24));
  EXPECT_TRUE(e[1].ecx & 1u);
  EXPECT_EQ(e[1].ebx >> 24, 300u & 0xFF);
  EXPECT_EQ(e[1].ebx & 0xFFFFFF, 0x010800u);
  EXPECT_EQ(e[2].edx, 300u);
  EXPECT_EQ(e[3].edx, 300u);
}

}  // namespace
}  // namespace apicv::kvm
