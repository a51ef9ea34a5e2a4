// AMD PMU (APM vol. 2 13.2): legacy PerfEvtSel0..3/PerfCtr0..3 and the core-extension MSRs.
#include <gtest/gtest.h>

#include <cstdint>

#include "devices/pmu/pmu.h"

namespace apicv {
namespace {

constexpr uint32_t kSel0 = 0xC0010000;
constexpr uint32_t kCtr0 = 0xC0010004;
constexpr uint32_t kExtCtl0 = 0xC0010200;  // PerfEvtSel n at +2n, PerfCtr n at +2n+1

constexpr uint64_t kUsr = 1ull << 16;
constexpr uint64_t kOs = 1ull << 17;
constexpr uint64_t kInt = 1ull << 20;
constexpr uint64_t kEn = 1ull << 22;
constexpr uint64_t kRetiredInstr = 0xC0;
constexpr uint64_t kCyclesNotHalted = 0x76;

constexpr PmuMsrResult kOk = PmuMsrResult::kOk;
constexpr PmuMsrResult kGp = PmuMsrResult::kGp;

Pmu Amd(bool core_ext = false) {
  return Pmu(
      PmuConfig{.model = PmuModel::kAmd, .amd_core_ext = core_ext, .full_width_writes = false});
}

uint64_t Rd(const Pmu& p, uint32_t msr) {
  uint64_t v = 0xDEADBEEF;
  EXPECT_EQ(p.rdmsr(msr, &v), kOk) << std::hex << msr;
  return v;
}

TEST(PmuAmd, LegacyLayoutAndNoIntelMsrs) {
  Pmu p = Amd();
  EXPECT_EQ(p.nr_gp(), 4u);
  EXPECT_EQ(p.nr_fixed(), 0u);
  for (uint32_t msr = kSel0; msr < kSel0 + 8; ++msr) {
    EXPECT_TRUE(p.is_pmu_msr(msr));
    EXPECT_EQ(Rd(p, msr), 0u);
  }
  uint64_t v = 0;
  // No architectural Intel PMU, no PerfMonV2 global MSRs.
  for (uint32_t msr : {0xC1u, 0x186u, 0x309u, 0x38Du, 0x38Eu, 0x38Fu, 0x390u, 0xC0000300u,
                       0xC0000301u, 0xC0000302u}) {
    EXPECT_EQ(p.rdmsr(msr, &v), PmuMsrResult::kNotPmu) << std::hex << msr;
    EXPECT_EQ(p.wrmsr(msr, 0), PmuMsrResult::kNotPmu) << std::hex << msr;
  }
  const CpuidLeaf a = p.CpuidLeafA();
  EXPECT_EQ(a.eax | a.ebx | a.ecx | a.edx, 0u);
  EXPECT_EQ(p.amd_cpuid_ext_ecx_bits(), 0u);
  EXPECT_FALSE(p.mask_lvtpc_on_pmi());
  EXPECT_FALSE(p.any_counter_enabled());
}

TEST(PmuAmd, CoreExtensionAbsentMeansGp) {
  Pmu p = Amd();
  uint64_t v = 0;
  EXPECT_EQ(p.rdmsr(kExtCtl0, &v), kGp);
  EXPECT_EQ(p.wrmsr(kExtCtl0 + 1, 5), kGp);
  EXPECT_EQ(p.wrmsr(kExtCtl0 + 11, 5), kGp);
  EXPECT_EQ(p.wrmsr(kExtCtl0 + 12, 5), PmuMsrResult::kNotPmu);
}

TEST(PmuAmd, ReservedEventSelectBitsAreDroppedNotFaulted) {
  Pmu p = Amd();
  EXPECT_EQ(p.wrmsr(kSel0 + 2, ~0ull), kOk);
  // Reserved: 63:36, 21, 19.
  EXPECT_EQ(Rd(p, kSel0 + 2), 0x0000000FFFD7FFFFull);
}

TEST(PmuAmd, CounterWritesTruncateWithoutSignExtension) {
  Pmu p = Amd();
  ASSERT_EQ(p.wrmsr(kCtr0, 0x80000000ull), kOk);
  EXPECT_EQ(Rd(p, kCtr0), 0x80000000ull);
  ASSERT_EQ(p.wrmsr(kCtr0 + 3, ~0ull), kOk);
  EXPECT_EQ(Rd(p, kCtr0 + 3), 0xFFFFFFFFFFFFull);
}

TEST(PmuAmd, RetiredInstructionsCountAndOverflow) {
  Pmu p = Amd();
  ASSERT_EQ(p.wrmsr(kSel0 + 1, kEn | kOs | kInt | kRetiredInstr), kOk);
  EXPECT_TRUE(p.any_counter_enabled());  // no global control on AMD
  ASSERT_EQ(p.wrmsr(kCtr0 + 1, 0xFFFFFFFFFFFEull), kOk);
  EXPECT_FALSE(p.instruction_retired(0).pmi);
  p.instruction_retired(3);  // USR not selected
  EXPECT_EQ(Rd(p, kCtr0 + 1), 0xFFFFFFFFFFFFull);
  const PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 2u);
  EXPECT_TRUE(o.pmi);
  EXPECT_EQ(Rd(p, kCtr0 + 1), 0u);
  EXPECT_TRUE(p.take_pmi_request());
}

TEST(PmuAmd, OverflowWithoutIntRaisesNoPmi) {
  Pmu p = Amd();
  ASSERT_EQ(p.wrmsr(kSel0, kEn | kUsr | kRetiredInstr), kOk);
  ASSERT_EQ(p.wrmsr(kCtr0, 0xFFFFFFFFFFFFull), kOk);
  const PmuOverflow o = p.instruction_retired(3);
  EXPECT_EQ(o.status_bits_new, 1u);
  EXPECT_FALSE(o.pmi);
  EXPECT_FALSE(p.pmi_requested());
}

TEST(PmuAmd, TwelveBitEventCodeMustMatch) {
  Pmu p = Amd();
  // EventSelect[11:8] = 1 makes this event 1C0h, not retired instructions.
  ASSERT_EQ(p.wrmsr(kSel0, kEn | kOs | kRetiredInstr | (1ull << 32)), kOk);
  ASSERT_EQ(p.wrmsr(kSel0 + 1, kEn | kOs | kRetiredInstr | (1ull << 8)), kOk);  // umask 1
  p.instruction_retired(0, 9);
  EXPECT_EQ(Rd(p, kCtr0), 0u);
  EXPECT_EQ(Rd(p, kCtr0 + 1), 0u);
}

TEST(PmuAmd, CyclesNotHaltedFromTsc) {
  Pmu p = Amd();
  ASSERT_EQ(p.wrmsr(kSel0 + 3, kEn | kOs | kUsr | kCyclesNotHalted), kOk);
  p.advance_cycles(0, 10, 0);
  p.advance_cycles(50, 1010, 3);
  EXPECT_EQ(Rd(p, kCtr0 + 3), 1000u);
  p.instruction_retired(0, 4);
  EXPECT_EQ(Rd(p, kCtr0 + 3), 1000u);
}

TEST(PmuAmd, CoreExtensionSixCountersAliasLegacy) {
  Pmu p = Amd(/*core_ext=*/true);
  EXPECT_EQ(p.nr_gp(), 6u);
  EXPECT_EQ(p.amd_cpuid_ext_ecx_bits(), 1u << 23);
  // Legacy PerfEvtSel2 == PerfEvtSel n=2 at 0xC0010204; PerfCtr2 at 0xC0010205.
  ASSERT_EQ(p.wrmsr(kSel0 + 2, kEn | kOs | kRetiredInstr), kOk);
  EXPECT_EQ(Rd(p, kExtCtl0 + 4), kEn | kOs | kRetiredInstr);
  ASSERT_EQ(p.wrmsr(kExtCtl0 + 5, 77), kOk);
  EXPECT_EQ(Rd(p, kCtr0 + 2), 77u);
  // Counter 5 exists only in the extension.
  ASSERT_EQ(p.wrmsr(kExtCtl0 + 10, kEn | kOs | kInt | kRetiredInstr), kOk);
  ASSERT_EQ(p.wrmsr(kExtCtl0 + 11, 0xFFFFFFFFFFFFull), kOk);
  const PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1u << 5);
  EXPECT_TRUE(o.pmi);
  EXPECT_EQ(Rd(p, kCtr0 + 2), 78u);
  EXPECT_EQ(Rd(p, kExtCtl0 + 11), 0u);
}

TEST(PmuAmd, ResetClearsEverything) {
  Pmu p = Amd(true);
  ASSERT_EQ(p.wrmsr(kExtCtl0 + 10, kEn | kOs | kRetiredInstr), kOk);
  ASSERT_EQ(p.wrmsr(kExtCtl0 + 11, 1234), kOk);
  p.reset();
  EXPECT_EQ(Rd(p, kExtCtl0 + 10), 0u);
  EXPECT_EQ(Rd(p, kExtCtl0 + 11), 0u);
  EXPECT_FALSE(p.any_counter_enabled());
  EXPECT_EQ(p.global_ctrl(), 0u);
}

}  // namespace
}  // namespace apicv
