// Backend-neutral initial CPU states (SDM vol. 3A Table 10-1, 8.4.4.1; Multiboot 0.6.96 §3.2) and
// the CPUID leaves apicv advertises from a base set (SDM vol. 2A CPUID leaves 1, 0BH, 0AH).
#include <gtest/gtest.h>

#include <vector>

#include "platform/cpu_state.h"
#include "platform/cpuid.h"
#include "platform/guest_memory.h"

namespace apicv::platform {
namespace {

TEST(CpuState, InitIsTable10_1) {
  const CpuState st = InitCpuState();
  EXPECT_EQ(st.mode, EntryMode::kReal16);
  EXPECT_EQ(st.cs.selector, 0xF000);
  EXPECT_EQ(st.cs.base, 0xFFFF0000u);
  EXPECT_EQ(st.rip, 0xFFF0u);
  EXPECT_EQ(st.rip + st.cs.base, 0xFFFFFFF0u);  // the reset vector
  EXPECT_EQ(st.cr0, 0x60000010u);
  EXPECT_EQ(st.rflags, 2u);
  EXPECT_EQ(st.gdt.limit, 0xFFFF);
  EXPECT_EQ(st.idt.limit, 0xFFFF);
  EXPECT_FALSE(st.ldtr.s);
  EXPECT_EQ(st.ldtr.type, 2);
  EXPECT_EQ(st.efer, 0u);
}

TEST(CpuState, SipiStartsAtVectorPage) {
  const CpuState st = SipiCpuState(0x9A);
  EXPECT_EQ(st.cs.selector, 0x9A00);
  EXPECT_EQ(st.cs.base, 0x9A000u);
  EXPECT_EQ(st.rip, 0u);
  EXPECT_EQ(st.cr0, 0x60000010u);
}

TEST(CpuState, MultibootEntryIsFlatProtectedModeWithMagicInEax) {
  BootImage b;
  b.mode = EntryMode::kProtected32;
  b.entry = 0x100123;
  b.eax = kMultibootBootloaderMagic;
  b.ebx = 0x9000;
  const CpuState st = BootCpuState(b);
  EXPECT_EQ(st.rip, 0x100123u);
  EXPECT_EQ(st.rax, 0x2BADB002u);
  EXPECT_EQ(st.rbx, 0x9000u);
  EXPECT_EQ(st.cr0, kCr0Pe | kCr0Et);  // paging off, caches on
  EXPECT_EQ(st.cs.base, 0u);
  EXPECT_EQ(st.cs.limit, 0xFFFFFFFFu);
  EXPECT_TRUE(st.cs.db);
  EXPECT_FALSE(st.cs.l);
  EXPECT_EQ(st.cs.type & 0x8, 0x8);  // code
  EXPECT_EQ(st.ss.type & 0x8, 0);    // data
  EXPECT_TRUE(st.ss.db);
  EXPECT_EQ(st.efer, 0u);
}

TEST(CpuState, LongModeEntryUsesTheLoaderTables) {
  GuestMemory mem(16ull << 20);
  const uint8_t code[] = {0xF4};
  const BootImage b = LoadFlat(mem, code, EntryMode::kLong64);
  const CpuState st = BootCpuState(b);
  EXPECT_EQ(st.mode, EntryMode::kLong64);
  EXPECT_EQ(st.rip, kFlatLoadAddr);
  EXPECT_EQ(st.cr3, b.cr3);
  EXPECT_NE(st.cr3, 0u);
  EXPECT_EQ(st.gdt.base, b.gdt_base);
  EXPECT_EQ(st.gdt.limit, b.gdt_limit);
  EXPECT_EQ(st.cr0, kCr0Pe | kCr0Et | kCr0Pg);
  EXPECT_EQ(st.cr4, kCr4Pae);
  EXPECT_EQ(st.efer, kEferLme | kEferLma);
  EXPECT_TRUE(st.cs.l);
  EXPECT_FALSE(st.cs.db);  // L=1 requires D=0
  EXPECT_EQ(st.cs.selector, 0x8);
  // The selector indexes the loader's GDT: its descriptor there has L=1 (bit 53).
  uint64_t desc = 0;
  ASSERT_TRUE(mem.read(b.gdt_base + st.cs.selector, &desc, 8));
  EXPECT_TRUE(desc & (1ull << 53));
}

TEST(CpuState, RealModeFlatEntryAtBootSector) {
  GuestMemory mem(4ull << 20);
  const uint8_t code[] = {0xF4};
  const CpuState st = BootCpuState(LoadFlat(mem, code, EntryMode::kReal16));
  EXPECT_EQ(st.rip, 0x7C00u);
  EXPECT_EQ(st.cs.base, 0u);
  EXPECT_EQ(st.cs.selector, 0u);
  EXPECT_EQ(st.cr0 & kCr0Pe, 0u);
  EXPECT_EQ(st.rsp, 0x7C00u);
}

// A base set like the software CPU's: no x2APIC/TSC-deadline of its own, no leaf 0AH.
std::vector<CpuidEntry> SmallBase() {
  std::vector<CpuidEntry> b(4);
  b[0].function = 0;
  b[0].eax = 0xB;
  b[1].function = 1;
  b[1].ebx = 0x00010800;
  b[1].edx = 1u << 4;  // TSC
  b[2].function = 0xB;
  b[2].index = 0;
  b[2].flags = kCpuidFlagSignificantIndex;
  b[3].function = 0xB;
  b[3].index = 1;
  b[3].flags = kCpuidFlagSignificantIndex;
  return b;
}

TEST(ApicvCpuid, AddsApicFeaturesAndIdsToABaseSet) {
  const std::vector<CpuidEntry> c = ApicvCpuid(SmallBase(), 0x1A5, GuestPmu{});
  const CpuidEntry* l1 = FindCpuid(c, 1, 0);
  ASSERT_NE(l1, nullptr);
  EXPECT_TRUE(l1->ecx & kCpuid1EcxX2Apic);
  EXPECT_TRUE(l1->ecx & kCpuid1EcxTscDeadline);
  EXPECT_TRUE(l1->ecx & kCpuid1EcxHypervisor);
  EXPECT_EQ(l1->edx, 1u << 4);      // what the base implements stays
  EXPECT_EQ(l1->ebx >> 24, 0xA5u);  // 8-bit initial APIC ID
  EXPECT_EQ(l1->ebx & 0xFFFFFFu, 0x010800u);
  EXPECT_EQ(FindCpuid(c, 0xB, 0)->edx, 0x1A5u);  // full x2APIC ID in every subleaf
  EXPECT_EQ(FindCpuid(c, 0xB, 1)->edx, 0x1A5u);
  EXPECT_EQ(FindCpuid(c, 0xA, 0), nullptr);  // kKeep adds no PMU leaf
}

TEST(ApicvCpuid, IntelPmuAddsLeafAAndRaisesMaxLeaf) {
  std::vector<CpuidEntry> base = SmallBase();
  base[0].eax = 7;
  const std::vector<CpuidEntry> c = ApicvCpuid(base, 0, GuestPmu{GuestPmu::Kind::kIntelV2});
  const CpuidEntry* a = FindCpuid(c, 0xA, 0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->eax & 0xFF, 2u);  // architectural PMU version 2
  EXPECT_EQ(FindCpuid(c, 0, 0)->eax, 0xAu);
}

TEST(ApicvCpuid, FindHonoursSignificantIndex) {
  std::vector<CpuidEntry> v(2);
  v[0].function = 1;
  v[0].eax = 11;
  v[1].function = 0xB;
  v[1].index = 1;
  v[1].flags = kCpuidFlagSignificantIndex;
  EXPECT_EQ(FindCpuid(v, 1, 99)->eax, 11u);  // subleaf ignored for a non-indexed leaf
  EXPECT_EQ(FindCpuid(v, 0xB, 0), nullptr);
  EXPECT_NE(FindCpuid(v, 0xB, 1), nullptr);
  EXPECT_EQ(FindCpuid(v, 0x80000000, 0), nullptr);
}

TEST(ApicvCpuid, HostCpuidHidesMonitorAndVmx) {
  const std::vector<CpuidEntry> h = HostCpuid();
  const CpuidEntry* l1 = FindCpuid(h, 1, 0);
  ASSERT_NE(l1, nullptr);
  EXPECT_EQ(l1->ecx & ((1u << 3) | (1u << 5)), 0u);
  EXPECT_NE(FindCpuid(h, 0x80000000, 0), nullptr);
}

}  // namespace
}  // namespace apicv::platform
