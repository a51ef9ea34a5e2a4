// Intel architectural PMU v2 (SDM vol. 3B 20.2): MSR semantics, counting, overflow, PMI requests.
// MSR numbers and bit values are written out from the SDM here on purpose, so the tests also
// check the constants in x86/pmu_defs.h.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "devices/pmu/pmu.h"

namespace apicv {
namespace {

constexpr uint32_t kPmc0 = 0xC1;
constexpr uint32_t kEvtSel0 = 0x186;
constexpr uint32_t kFixedCtr0 = 0x309;
constexpr uint32_t kFixedCtrCtrl = 0x38D;
constexpr uint32_t kGlobalStatus = 0x38E;
constexpr uint32_t kGlobalCtrl = 0x38F;
constexpr uint32_t kGlobalOvfCtrl = 0x390;
constexpr uint32_t kAPmc0 = 0x4C1;
constexpr uint32_t kPerfCapabilities = 0x345;

constexpr uint64_t kUsr = 1ull << 16;
constexpr uint64_t kOs = 1ull << 17;
constexpr uint64_t kInt = 1ull << 20;
constexpr uint64_t kEn = 1ull << 22;
constexpr uint64_t kInstr = 0xC0;       // INST_RETIRED.ANY_P, umask 0
constexpr uint64_t kCycles = 0x3C;      // UnHalted Core Cycles
constexpr uint64_t kRefCycles = 0x13C;  // UnHalted Reference Cycles (umask 1)
constexpr uint64_t k48 = 0xFFFFFFFFFFFFull;

constexpr PmuMsrResult kOk = PmuMsrResult::kOk;
constexpr PmuMsrResult kGp = PmuMsrResult::kGp;

uint64_t Rd(const Pmu& p, uint32_t msr) {
  uint64_t v = 0xDEADBEEF;
  EXPECT_EQ(p.rdmsr(msr, &v), kOk) << std::hex << msr;
  return v;
}

TEST(PmuIntel, CpuidLeafAAdvertisesV2FourGpThreeFixed48Bits) {
  Pmu p;
  const CpuidLeaf a = p.CpuidLeafA();
  // EAX: version 2 | 4 counters << 8 | width 48 << 16 | EBX length 7 << 24.
  EXPECT_EQ(a.eax, 0x07300402u);
  // EBX: LLC reference/miss and branch events (bits 3..6) unavailable.
  EXPECT_EQ(a.ebx, 0x78u);
  EXPECT_EQ(a.ecx, 0u);
  // EDX: 3 fixed counters | width 48 << 5.
  EXPECT_EQ(a.edx, 0x603u);
  EXPECT_EQ(p.nr_gp(), 4u);
  EXPECT_EQ(p.nr_fixed(), 3u);
}

TEST(PmuIntel, ResetState) {
  Pmu p;
  EXPECT_EQ(Rd(p, kGlobalCtrl), 0xFull);  // SDM: GLOBAL_CTRL sets bits n-1:0 at RESET
  EXPECT_EQ(Rd(p, kGlobalStatus), 0u);
  EXPECT_EQ(Rd(p, kFixedCtrCtrl), 0u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(Rd(p, kEvtSel0 + i), 0u);
    EXPECT_EQ(Rd(p, kPmc0 + i), 0u);
  }
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(Rd(p, kFixedCtr0 + i), 0u);
  EXPECT_FALSE(p.any_counter_enabled());
  EXPECT_TRUE(p.mask_lvtpc_on_pmi());
}

TEST(PmuIntel, ResetClearsProgrammedState) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0xB), kOk);
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x100000001ull), kOk);
  EXPECT_TRUE(p.instruction_retired(0).pmi);
  p.reset();
  EXPECT_EQ(Rd(p, kEvtSel0), 0u);
  EXPECT_EQ(Rd(p, kPmc0), 0u);
  EXPECT_EQ(Rd(p, kFixedCtrCtrl), 0u);
  EXPECT_EQ(Rd(p, kGlobalCtrl), 0xFull);
  EXPECT_EQ(Rd(p, kGlobalStatus), 0u);
  EXPECT_FALSE(p.pmi_requested());
  EXPECT_FALSE(p.any_counter_enabled());
  EXPECT_EQ(p.overflow_count(), 0u);
}

TEST(PmuIntel, LegacyCounterWriteSignExtendsBit31) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFF0), kOk);
  EXPECT_EQ(Rd(p, kPmc0), 0xFFFFFFFFFFF0ull);
  ASSERT_EQ(p.wrmsr(kPmc0 + 1, 0x7FFFFFFF), kOk);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 0x7FFFFFFFull);
  // EDX (bits 63:32) does not reach the counter: only EAX's sign does.
  ASSERT_EQ(p.wrmsr(kPmc0 + 2, 0x0000000180000000ull), kOk);
  EXPECT_EQ(Rd(p, kPmc0 + 2), 0xFFFF80000000ull);
  ASSERT_EQ(p.wrmsr(kPmc0 + 3, 0xABCD000000000005ull), kOk);
  EXPECT_EQ(Rd(p, kPmc0 + 3), 5u);
}

TEST(PmuIntel, HostInitiatedCounterWriteIsNotSignExtended) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kPmc0, 0x80000000ull, /*host_initiated=*/true), kOk);
  EXPECT_EQ(Rd(p, kPmc0), 0x80000000ull);
  ASSERT_EQ(p.wrmsr(kPmc0, 0x123456789ABCull, true), kOk);
  EXPECT_EQ(Rd(p, kPmc0), 0x123456789ABCull);
}

TEST(PmuIntel, FixedCounterWriteTruncatesToWidthWithoutSignExtension) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kFixedCtr0, 0x80000000ull), kOk);
  EXPECT_EQ(Rd(p, kFixedCtr0), 0x80000000ull);
  ASSERT_EQ(p.wrmsr(kFixedCtr0 + 2, ~0ull), kOk);
  EXPECT_EQ(Rd(p, kFixedCtr0 + 2), k48);
}

TEST(PmuIntel, CounterWrapsAt48BitsAndSetsStatus) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kUsr | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFE), kOk);  // -2
  PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 0u);
  EXPECT_EQ(Rd(p, kPmc0), k48);
  o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1u);
  EXPECT_FALSE(o.pmi);  // INT clear
  EXPECT_EQ(Rd(p, kPmc0), 0u);
  EXPECT_EQ(Rd(p, kGlobalStatus), 1u);
  EXPECT_FALSE(p.pmi_requested());
  // Keeps counting after the wrap.
  p.instruction_retired(3, 5);
  EXPECT_EQ(Rd(p, kPmc0), 5u);
  EXPECT_EQ(p.overflow_count(), 1u);
}

TEST(PmuIntel, ArmAtMinusNOverflowsOnTheNthInstruction) {
  Pmu p;
  constexpr uint32_t kN = 1000;
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 2, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0 + 2, static_cast<uint32_t>(-static_cast<int32_t>(kN))), kOk);
  for (uint32_t i = 1; i < kN; ++i) {
    ASSERT_FALSE(p.instruction_retired(0).pmi) << i;
  }
  const PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1u << 2);
  EXPECT_TRUE(o.pmi);
  EXPECT_TRUE(p.pmi_requested());
  EXPECT_EQ(Rd(p, kGlobalStatus), 1u << 2);
}

TEST(PmuIntel, BulkCountReportsOneOverflowPerCounter) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);  // -1
  const PmuOverflow o = p.instruction_retired(0, 10);
  EXPECT_EQ(o.status_bits_new, 1u);
  EXPECT_EQ(Rd(p, kPmc0), 9u);
  EXPECT_EQ(p.pmi_request_count(), 1u);
}

TEST(PmuIntel, PmiRequestedOnlyWithIntBit) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0 + 1, 0xFFFFFFFE), kOk);
  PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1u);
  EXPECT_FALSE(o.pmi);
  EXPECT_FALSE(p.pmi_requested());
  o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 2u);
  EXPECT_TRUE(o.pmi);
  EXPECT_TRUE(p.pmi_requested());
  EXPECT_EQ(Rd(p, kGlobalStatus), 3u);
}

TEST(PmuIntel, TwoOverflowsInOneCallCoalesceIntoOneRequest) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x9), kOk);  // fixed 0: OS + PMI
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x100000001ull), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtr0, k48), kOk);
  const PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 0x100000001ull);
  EXPECT_TRUE(o.pmi);
  EXPECT_EQ(p.pmi_request_count(), 1u);
  EXPECT_EQ(p.overflow_count(), 2u);
  EXPECT_TRUE(p.take_pmi_request());
  EXPECT_FALSE(p.take_pmi_request());
}

TEST(PmuIntel, RequestsFromSeparateOverflowsCoalesceUntilTaken) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  EXPECT_TRUE(p.instruction_retired(0).pmi);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  EXPECT_TRUE(p.instruction_retired(0).pmi);
  EXPECT_EQ(p.pmi_request_count(), 2u);  // two raises...
  EXPECT_TRUE(p.take_pmi_request());     // ...one pending request
  EXPECT_FALSE(p.take_pmi_request());
  EXPECT_FALSE(p.pmi_requested());
}

TEST(PmuIntel, GlobalCtrlGatesCounting) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 3, kEn | kOs | kInstr), kOk);
  EXPECT_TRUE(p.any_counter_enabled());
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x7), kOk);  // PMC3 disabled globally
  EXPECT_FALSE(p.any_counter_enabled());
  p.instruction_retired(0, 100);
  EXPECT_EQ(Rd(p, kPmc0 + 3), 0u);
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x8), kOk);
  EXPECT_TRUE(p.any_counter_enabled());
  p.instruction_retired(0, 100);
  EXPECT_EQ(Rd(p, kPmc0 + 3), 100u);
}

TEST(PmuIntel, EventSelectEnBitGatesCounting) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kOs | kUsr | kInstr), kOk);  // EN clear
  EXPECT_FALSE(p.any_counter_enabled());
  p.instruction_retired(0, 7);
  EXPECT_EQ(Rd(p, kPmc0), 0u);
}

TEST(PmuIntel, OsUsrFilterFollowsCpl) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kUsr | kInstr), kOk);
  p.instruction_retired(0, 3);
  p.instruction_retired(3, 5);
  p.instruction_retired(1, 2);  // CPL 1 and 2 count as "user" (CPL != 0)
  EXPECT_EQ(Rd(p, kPmc0), 3u);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 7u);
}

TEST(PmuIntel, OtherEventsDoNotCountInstructions) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | 0x4F2E), kOk);       // LLC reference
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kOs | 0x01C0), kOk);   // C0H with a non-zero umask
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 2, kEn | kOs | kCycles), kOk);  // cycles, not instructions
  EXPECT_TRUE(p.any_counter_enabled());
  p.instruction_retired(0, 50);
  EXPECT_EQ(Rd(p, kPmc0), 0u);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 0u);
  EXPECT_EQ(Rd(p, kPmc0 + 2), 0u);
}

TEST(PmuIntel, CmaskInvEdgeIgnoredForEmulatedInstructions) {
  Pmu p;
  // CMASK=2, INV, EDGE: KVM ignores them for the events it synthesises.
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInstr | (2ull << 24) | (1ull << 23) | (1ull << 18)),
            kOk);
  p.instruction_retired(0, 4);
  EXPECT_EQ(Rd(p, kPmc0), 4u);
}

TEST(PmuIntel, FixedCounterOsUsrPmiBits) {
  Pmu p;
  // Fixed counters are off in GLOBAL_CTRL at RESET.
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x2), kOk);  // fixed 0: USR only
  EXPECT_FALSE(p.any_counter_enabled());
  p.instruction_retired(3, 10);
  EXPECT_EQ(Rd(p, kFixedCtr0), 0u);
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 1ull << 32), kOk);
  EXPECT_TRUE(p.any_counter_enabled());
  p.instruction_retired(3, 10);
  p.instruction_retired(0, 10);  // OS not selected
  EXPECT_EQ(Rd(p, kFixedCtr0), 10u);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x1), kOk);  // OS only
  p.instruction_retired(3, 10);
  p.instruction_retired(0, 1);
  EXPECT_EQ(Rd(p, kFixedCtr0), 11u);
  // Overflow without PMI bit: status only.
  ASSERT_EQ(p.wrmsr(kFixedCtr0, k48), kOk);
  PmuOverflow o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1ull << 32);
  EXPECT_FALSE(o.pmi);
  // With PMI bit (bit 3 of the field).
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x9), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtr0, k48), kOk);
  o = p.instruction_retired(0);
  EXPECT_EQ(o.status_bits_new, 1ull << 32);
  EXPECT_TRUE(o.pmi);
  EXPECT_EQ(Rd(p, kGlobalStatus), 1ull << 32);
}

TEST(PmuIntel, FixedCounterFieldsAreIndependent) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x700000000ull), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x300), kOk);  // only fixed 2 (ref cycles) enabled
  p.instruction_retired(0, 5);
  EXPECT_EQ(Rd(p, kFixedCtr0), 0u);
  p.advance_cycles(0, 1000, 0);
  p.advance_cycles(100, 1600, 0);
  EXPECT_EQ(Rd(p, kFixedCtr0 + 1), 0u);
  EXPECT_EQ(Rd(p, kFixedCtr0 + 2), 600u);
}

TEST(PmuIntel, GlobalOvfCtrlClearsStatusBits) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kOs | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0x1), kOk);
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x100000003ull), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFFFF), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0 + 1, 0xFFFFFFFF), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtr0, k48), kOk);
  p.instruction_retired(0);
  ASSERT_EQ(Rd(p, kGlobalStatus), 0x100000003ull);
  ASSERT_EQ(p.wrmsr(kGlobalOvfCtrl, 0x100000001ull), kOk);
  EXPECT_EQ(Rd(p, kGlobalStatus), 2u);
  EXPECT_EQ(Rd(p, kGlobalOvfCtrl), 0u);  // reads as 0
  // OvfBuffer / CondChgd (62, 63) are writable; clearing bits that are clear is harmless.
  ASSERT_EQ(p.wrmsr(kGlobalOvfCtrl, 0xC000000000000004ull | 2), kOk);
  EXPECT_EQ(Rd(p, kGlobalStatus), 0u);
}

TEST(PmuIntel, HostInitiatedGlobalStatusWriteAndOvfCtrl) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kGlobalStatus, 0x400000005ull, /*host_initiated=*/true), kOk);
  EXPECT_EQ(Rd(p, kGlobalStatus), 0x400000005ull);
  EXPECT_EQ(p.wrmsr(kGlobalStatus, 1ull << 4, true), kGp);  // counter 4 does not exist
  EXPECT_EQ(Rd(p, kGlobalStatus), 0x400000005ull);
  // A host write of OVF_CTRL (state restore) does not clear anything.
  ASSERT_EQ(p.wrmsr(kGlobalOvfCtrl, 0x1, true), kOk);
  EXPECT_EQ(Rd(p, kGlobalStatus), 0x400000005ull);
}

TEST(PmuIntel, GpCases) {
  Pmu p;
  // IA32_PERFEVTSELx: bits 63:32 and AnyThread (21) reserved in v2.
  EXPECT_EQ(p.wrmsr(kEvtSel0, 1ull << 21), kGp);
  EXPECT_EQ(p.wrmsr(kEvtSel0, 1ull << 32), kGp);
  EXPECT_EQ(p.wrmsr(kEvtSel0 + 1, 1ull << 63), kGp);
  EXPECT_EQ(Rd(p, kEvtSel0), 0u);
  // Every other low bit is writable.
  EXPECT_EQ(p.wrmsr(kEvtSel0, 0xFFDFFFFFull), kOk);
  EXPECT_EQ(Rd(p, kEvtSel0), 0xFFDFFFFFull);
  // Counters 4..7 do not exist.
  uint64_t v = 0;
  EXPECT_EQ(p.wrmsr(0x18A, 0), kGp);
  EXPECT_EQ(p.rdmsr(0x18D, &v), kGp);
  EXPECT_EQ(p.wrmsr(0xC5, 0), kGp);
  EXPECT_EQ(p.rdmsr(0xC8, &v), kGp);
  EXPECT_EQ(p.wrmsr(0x30C, 0), kGp);  // fixed counter 3
  // Fixed ctrl: AnyThread (bit 2 of each field) and fields of absent counters.
  EXPECT_EQ(p.wrmsr(kFixedCtrCtrl, 0x4), kGp);
  EXPECT_EQ(p.wrmsr(kFixedCtrCtrl, 0x400), kGp);
  EXPECT_EQ(p.wrmsr(kFixedCtrCtrl, 0x1000), kGp);
  EXPECT_EQ(p.wrmsr(kFixedCtrCtrl, 0xBBB), kOk);
  EXPECT_EQ(Rd(p, kFixedCtrCtrl), 0xBBBu);
  // GLOBAL_STATUS is read-only for the guest.
  EXPECT_EQ(p.wrmsr(kGlobalStatus, 0), kGp);
  EXPECT_EQ(p.wrmsr(kGlobalStatus, 1), kGp);
  // GLOBAL_CTRL: only bits 3:0 and 34:32.
  EXPECT_EQ(p.wrmsr(kGlobalCtrl, 1ull << 4), kGp);
  EXPECT_EQ(p.wrmsr(kGlobalCtrl, 1ull << 35), kGp);
  EXPECT_EQ(p.wrmsr(kGlobalCtrl, 1ull << 63), kGp);
  EXPECT_EQ(Rd(p, kGlobalCtrl), 0xFull);
  EXPECT_EQ(p.wrmsr(kGlobalCtrl, 0x70000000Full), kOk);
  // GLOBAL_OVF_CTRL: GLOBAL_STATUS's reserved bits.
  EXPECT_EQ(p.wrmsr(kGlobalOvfCtrl, 1ull << 4), kGp);
  EXPECT_EQ(p.wrmsr(kGlobalOvfCtrl, 1ull << 61), kGp);
  // No full-width writes / PERF_CAPABILITIES unless configured.
  EXPECT_EQ(p.wrmsr(kAPmc0, 0), kGp);
  EXPECT_EQ(p.rdmsr(kAPmc0, &v), kGp);
  EXPECT_EQ(p.rdmsr(kPerfCapabilities, &v), kGp);
}

TEST(PmuIntel, NonPmuMsrsAreNotMine) {
  Pmu p;
  uint64_t v = 0;
  EXPECT_EQ(p.rdmsr(0x10, &v), PmuMsrResult::kNotPmu);       // TSC
  EXPECT_EQ(p.wrmsr(0x1B, 0), PmuMsrResult::kNotPmu);        // APIC base
  EXPECT_EQ(p.wrmsr(0xC0010000, 0), PmuMsrResult::kNotPmu);  // AMD PerfEvtSel0
  EXPECT_EQ(p.wrmsr(0x38C, 0), PmuMsrResult::kNotPmu);
  EXPECT_EQ(p.wrmsr(0x391, 0), PmuMsrResult::kNotPmu);
  EXPECT_TRUE(p.is_pmu_msr(0x186));
  EXPECT_TRUE(p.is_pmu_msr(0x38F));
  EXPECT_FALSE(p.is_pmu_msr(0x185));
}

TEST(PmuIntel, FullWidthWrites) {
  Pmu p(PmuConfig{.model = PmuModel::kIntelV2, .amd_core_ext = false, .full_width_writes = true});
  EXPECT_EQ(Rd(p, kPerfCapabilities), 1ull << 13);
  ASSERT_EQ(p.wrmsr(kAPmc0 + 1, 0x800000000000ull), kOk);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 0x800000000000ull);
  EXPECT_EQ(Rd(p, kAPmc0 + 1), 0x800000000000ull);
  ASSERT_EQ(p.wrmsr(kAPmc0, 0x80000000ull), kOk);  // no sign extension
  EXPECT_EQ(Rd(p, kPmc0), 0x80000000ull);
  EXPECT_EQ(p.wrmsr(kAPmc0, 1ull << 48), kGp);  // beyond the width
  EXPECT_EQ(Rd(p, kPmc0), 0x80000000ull);
  EXPECT_EQ(p.wrmsr(kAPmc0 + 4, 0), kGp);
  EXPECT_EQ(p.wrmsr(kPerfCapabilities, 1ull << 13), kGp);  // read-only for the guest
  // The legacy alias still sign-extends.
  ASSERT_EQ(p.wrmsr(kPmc0, 0x80000000ull), kOk);
  EXPECT_EQ(Rd(p, kPmc0), 0xFFFF80000000ull);
}

TEST(PmuIntel, CyclesCountFromTsc) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kCycles), kOk);
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kOs | kUsr | kRefCycles), kOk);
  EXPECT_EQ(p.advance_cycles(100, 5000, 0).status_bits_new, 0u);  // first call: sync only
  EXPECT_EQ(Rd(p, kPmc0), 0u);
  p.advance_cycles(200, 7000, 0);
  EXPECT_EQ(Rd(p, kPmc0), 2000u);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 2000u);
  p.advance_cycles(300, 8000, 3);  // user mode: PMC0 is OS-only
  EXPECT_EQ(Rd(p, kPmc0), 2000u);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 3000u);
  p.advance_cycles(400, 9000, 0, /*halted=*/true);  // unhalted cycles stop in HLT
  EXPECT_EQ(Rd(p, kPmc0), 2000u);
  EXPECT_EQ(Rd(p, kPmc0 + 1), 3000u);
  p.advance_cycles(500, 100, 0);  // TSC written backwards: resync only
  EXPECT_EQ(Rd(p, kPmc0), 2000u);
  p.advance_cycles(600, 150, 0);
  EXPECT_EQ(Rd(p, kPmc0), 2050u);
  // Instructions do not move cycle counters.
  p.instruction_retired(0, 10);
  EXPECT_EQ(Rd(p, kPmc0), 2050u);
}

TEST(PmuIntel, CyclesCounterOverflowRequestsPmi) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kGlobalCtrl, 0x200000000ull), kOk);
  ASSERT_EQ(p.wrmsr(kFixedCtrCtrl, 0xB0), kOk);       // fixed 1 (core cycles): OS|USR|PMI
  ASSERT_EQ(p.wrmsr(kFixedCtr0 + 1, k48 - 99), kOk);  // -100
  p.advance_cycles(0, 0, 0);
  EXPECT_FALSE(p.advance_cycles(10, 99, 0).pmi);
  const PmuOverflow o = p.advance_cycles(20, 150, 3);
  EXPECT_EQ(o.status_bits_new, 1ull << 33);
  EXPECT_TRUE(o.pmi);
  EXPECT_EQ(Rd(p, kFixedCtr0 + 1), 50u);
  // A delta of several periods wraps once and keeps the remainder.
  const PmuOverflow big = p.advance_cycles(30, 150 + (3ull << 48), 0);
  EXPECT_EQ(big.status_bits_new, 1ull << 33);
  EXPECT_EQ(Rd(p, kFixedCtr0 + 1), 50u);
}

TEST(PmuIntel, NextCyclesOverflowDeadline) {
  Pmu p;
  constexpr uint64_t kNone = std::numeric_limits<uint64_t>::max();
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kCycles), kOk);  // no INT: no deadline
  ASSERT_EQ(p.wrmsr(kPmc0, static_cast<uint32_t>(-3000)), kOk);
  p.advance_cycles(500, 1000, 0);
  EXPECT_EQ(p.next_cycles_overflow_ns(3000000), kNone);
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kCycles), kOk);
  // 3000 cycles at 3 GHz (3,000,000 kHz) = 1000 ns after the last sample at 500 ns.
  EXPECT_EQ(p.next_cycles_overflow_ns(3000000), 1500u);
  EXPECT_EQ(p.next_cycles_overflow_ns(0), kNone);
  // The nearest counter wins; partial nanoseconds round up (1 cycle at 3 GHz -> 1 ns).
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kUsr | kInt | kRefCycles), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0 + 1, 0xFFFFFFFF), kOk);
  EXPECT_EQ(p.next_cycles_overflow_ns(3000000), 501u);
  // A counter at 0 needs 2^48 cycles: at 1 kHz that is 2^48 ms, beyond 64 bits of ns.
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, 0), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0), kOk);
  EXPECT_EQ(p.next_cycles_overflow_ns(1), kNone);
}

TEST(PmuIntel, NoDeadlineBeforeFirstSample) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kCycles), kOk);
  EXPECT_EQ(p.next_cycles_overflow_ns(1000000), std::numeric_limits<uint64_t>::max());
}

// Seed 002: in one VM-exit a counter overflows from the cycles path and another from an emulated
// instruction. The device raises two requests, but they coalesce into one pending PMI.
TEST(PmuIntel, SameExitOverflowsFromCyclesAndInstructionsMakeOnePendingPmi) {
  Pmu p;
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kInt | kCycles), kOk);
  ASSERT_EQ(p.wrmsr(kEvtSel0 + 1, kEn | kOs | kInt | kInstr), kOk);
  ASSERT_EQ(p.wrmsr(kPmc0, 0xFFFFFF00), kOk);      // -256 cycles
  ASSERT_EQ(p.wrmsr(kPmc0 + 1, 0xFFFFFFFF), kOk);  // -1 instruction
  p.advance_cycles(0, 0, 0);
  const PmuOverflow from_cycles = p.advance_cycles(100, 300, 0);
  const PmuOverflow from_instr = p.instruction_retired(0);
  EXPECT_EQ(from_cycles.status_bits_new, 1u);
  EXPECT_EQ(from_instr.status_bits_new, 2u);
  EXPECT_TRUE(from_cycles.pmi);
  EXPECT_TRUE(from_instr.pmi);
  EXPECT_EQ(p.pmi_request_count(), 2u);
  EXPECT_EQ(Rd(p, kGlobalStatus), 3u);
  EXPECT_TRUE(p.take_pmi_request());
  EXPECT_FALSE(p.take_pmi_request());
}

TEST(PmuIntel, CycleCounterEnabledLaterStartsAtLastSample) {
  Pmu p;
  p.advance_cycles(0, 1000, 0);  // nothing counts cycles yet
  p.advance_cycles(10, 4000, 0);
  ASSERT_EQ(p.wrmsr(kEvtSel0, kEn | kOs | kCycles), kOk);
  p.advance_cycles(20, 4500, 0);
  EXPECT_EQ(Rd(p, kPmc0), 500u);
}

TEST(PmuIntel, AbsentCounterSlotsAreClaimedAndFault) {
  Pmu p;
  for (uint32_t msr : {0x18Au, 0x18Du, 0xC5u, 0xC8u, 0x4C1u, 0x4C8u, 0x30Cu, 0x345u}) {
    EXPECT_TRUE(p.is_pmu_msr(msr)) << std::hex << msr;
    uint64_t v = 0;
    EXPECT_EQ(p.rdmsr(msr, &v), kGp) << std::hex << msr;
    EXPECT_EQ(p.wrmsr(msr, 0), kGp) << std::hex << msr;
  }
  EXPECT_FALSE(p.is_pmu_msr(0x18E));
  EXPECT_FALSE(p.is_pmu_msr(0xC9));
  EXPECT_FALSE(p.is_pmu_msr(0x30D));
}

}  // namespace
}  // namespace apicv
