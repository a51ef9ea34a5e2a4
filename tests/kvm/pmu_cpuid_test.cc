// CPUID PMU leaves a guest sees under apicv's irqchip. Expected values are built from the SDM's
// field layout of CPUID.0AH (vol. 2A: EAX[7:0] version, [15:8] GP counters, [23:16] width,
// [31:24] EBX vector length; EBX bit i = architectural event i NOT available; EDX[4:0] fixed
// counters, [12:5] their width) and from the APM's Fn8000_0001_ECX bits 23/24/28.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "backend/kvm/cpuid.h"

namespace apicv::kvm {
namespace {

constexpr uint32_t LeafAEax(uint32_t version, uint32_t gp, uint32_t width, uint32_t ebx_len) {
  return version | (gp << 8) | (width << 16) | (ebx_len << 24);
}

// A list shaped like KVM_GET_SUPPORTED_CPUID on an AMD host without a guest PMU: leaf 0xA
// present but zero, the AMD extension bits set so the test sees them cleared.
std::vector<kvm_cpuid_entry2> AmdLikeList() {
  std::vector<kvm_cpuid_entry2> e(5);
  e[0].function = 0;
  e[0].eax = 0x10;  // max basic leaf
  e[0].ebx = 0x68747541;
  e[1].function = 1;
  e[1].ecx = 0x1;
  e[2].function = 0xA;
  e[3].function = 0x80000001;
  e[3].ecx = (1u << 23) | (1u << 24) | (1u << 28) | (1u << 6) | 1u;  // + SSE4A, LAHF
  e[4].function = 0x80000022;
  e[4].eax = 0x7;  // PerfMonV2, LbrStack, LbrAndPmcFreeze
  e[4].ebx = 0x6;  // NumPerfCtrCore = 6
  return e;
}

const kvm_cpuid_entry2* Find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn) {
  for (const auto& e : v) {
    if (e.function == fn) return &e;
  }
  return nullptr;
}

TEST(PmuCpuid, IntelV2LeafAFromTheSdm) {
  auto v = AmdLikeList();
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kIntelV2});
  const kvm_cpuid_entry2* a = Find(v, 0xA);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->eax, LeafAEax(2, 4, 48, 7));
  EXPECT_EQ(a->eax, 0x07300402u);
  // Available: 0 core cycles, 1 instructions retired, 2 reference cycles. Unavailable: 3 LLC
  // reference, 4 LLC misses, 5 branch instructions retired, 6 branch mispredicts retired.
  EXPECT_EQ(a->ebx, (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6));
  EXPECT_EQ(a->ecx, 0u);
  EXPECT_EQ(a->edx & 0x1Fu, 3u);
  EXPECT_EQ((a->edx >> 5) & 0xFFu, 48u);
  EXPECT_EQ(a->edx >> 13, 0u);
}

TEST(PmuCpuid, IntelV2HidesAmdExtensionsAndKeepsOtherBits) {
  auto v = AmdLikeList();
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kIntelV2});
  EXPECT_EQ(Find(v, 0x80000001)->ecx, (1u << 6) | 1u);
  const kvm_cpuid_entry2* v2 = Find(v, 0x80000022);
  EXPECT_EQ(v2->eax | v2->ebx | v2->ecx | v2->edx, 0u);
  EXPECT_EQ(Find(v, 0)->eax, 0x10u);  // never lowered
  EXPECT_EQ(Find(v, 0)->ebx, 0x68747541u);
  EXPECT_EQ(Find(v, 1)->ecx, 0x1u);
  EXPECT_EQ(v.size(), 5u);
}

TEST(PmuCpuid, IntelV2AddsLeafAAndRaisesMaxBasicLeaf) {
  std::vector<kvm_cpuid_entry2> v(2);
  v[0].function = 0;
  v[0].eax = 7;
  v[1].function = 1;
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kIntelV2});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].eax, 0xAu);
  const kvm_cpuid_entry2* a = Find(v, 0xA);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->index, 0u);
  EXPECT_EQ(a->flags, 0u);
  EXPECT_EQ(a->eax & 0xFF, 2u);
  EXPECT_EQ((a->eax >> 8) & 0xFF, 4u);
}

TEST(PmuCpuid, AmdZeroesLeafAAndHidesCoreExtensionByDefault) {
  auto v = AmdLikeList();
  v[2].eax = 0x07300402;  // stale Intel-style leaf from a previous patch or host
  v[2].edx = 0x603;
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kAmd});
  const kvm_cpuid_entry2* a = Find(v, 0xA);
  EXPECT_EQ(a->eax | a->ebx | a->ecx | a->edx, 0u);
  // Only the four legacy PerfCtr MSRs are emulated: no PerfCtrExtCore, NB or LLC.
  EXPECT_EQ(Find(v, 0x80000001)->ecx, (1u << 6) | 1u);
  const kvm_cpuid_entry2* v2 = Find(v, 0x80000022);
  EXPECT_EQ(v2->eax | v2->ebx, 0u);
}

TEST(PmuCpuid, AmdCoreExtensionSetsPerfCtrExtCore) {
  auto v = AmdLikeList();
  v[3].ecx = 1u;
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kAmd, /*amd_core_ext=*/true});
  EXPECT_EQ(Find(v, 0x80000001)->ecx, (1u << 23) | 1u);
}

TEST(PmuCpuid, AmdDoesNotAddLeafA) {
  std::vector<kvm_cpuid_entry2> v(1);
  v[0].function = 0;
  v[0].eax = 7;
  PatchCpuidForPmu(v, GuestPmu{GuestPmu::Kind::kAmd});
  EXPECT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].eax, 7u);
}

TEST(PmuCpuid, KvmIrqchipKeepsWhatKvmReports) {
  auto v = AmdLikeList();
  v[2].eax = 0x12345678;
  const auto before = v;
  PatchCpuidForPmu(v, GuestPmu{});
  ASSERT_EQ(v.size(), before.size());
  EXPECT_EQ(std::memcmp(v.data(), before.data(), v.size() * sizeof(kvm_cpuid_entry2)), 0);
}

TEST(PmuCpuid, GuestPmuForFollowsIrqchipAndVendor) {
  virt::VmConfig cfg;
  cfg.pmu_vendor = virt::PmuVendor::kIntel;
  EXPECT_EQ(GuestPmuFor(false, cfg).kind, GuestPmu::Kind::kKeep);
  EXPECT_EQ(GuestPmuFor(true, cfg).kind, GuestPmu::Kind::kIntelV2);
  cfg.pmu_vendor = virt::PmuVendor::kAmd;
  EXPECT_EQ(GuestPmuFor(false, cfg).kind, GuestPmu::Kind::kKeep);
  EXPECT_EQ(GuestPmuFor(true, cfg).kind, GuestPmu::Kind::kAmd);
  // ApicvVm's AMD Pmu has no core extension, so none is advertised.
  EXPECT_FALSE(GuestPmuFor(true, cfg).amd_core_ext);
}

TEST(PmuCpuid, VcpuPatchDoesApicIdAndPmu) {
  auto v = AmdLikeList();
  PatchCpuidForVcpu(v, 5, GuestPmu{GuestPmu::Kind::kIntelV2});
  EXPECT_EQ(Find(v, 1)->ebx >> 24, 5u);
  EXPECT_TRUE(Find(v, 1)->ecx & (1u << 21));
  EXPECT_EQ(Find(v, 0xA)->eax, 0x07300402u);
}

}  // namespace
}  // namespace apicv::kvm
