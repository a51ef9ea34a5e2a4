// x2APIC MSR interface (SDM 11.12.1, Table 11-6; spec §9.1-9.2), IA32_APIC_BASE mode transitions
// (SDM 11.4.4, 11.12.5 Figure 11-27; spec §9.5) and INIT versus RESET (SDM 11.4.7.3; spec §9.6).
#include <gtest/gtest.h>

#include "devices/lapic.h"
#include "lapic_test_util.h"

namespace apicv {
namespace {

using namespace x86;
using lapic_test::EnterX2Apic;
using lapic_test::Read;
using lapic_test::SwEnable;
using lapic_test::Write;

constexpr uint64_t kEn = kApicBaseEnable;
constexpr uint64_t kExtd = kApicBaseExtd;
constexpr uint64_t kBase = kApicDefaultBase;

class X2ApicMsrTest : public ::testing::Test {
 protected:
  void SetUp() override { EnterX2Apic(apic_); }
  bool WriteGp(uint32_t msr, uint64_t v) { return apic_.wrmsr_x2apic(msr, v, 0).gp; }
  bool ReadGp(uint32_t msr) { return apic_.rdmsr_x2apic(msr, 0).gp; }
  uint64_t Rd(uint32_t msr) {
    MsrAccess r = apic_.rdmsr_x2apic(msr, 0);
    EXPECT_FALSE(r.gp) << std::hex << msr;
    return r.value;
  }
  Lapic apic_{0x123, false, LapicConfig{}};
};

TEST(X2ApicMsr, FaultsUnlessInX2ApicMode) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_TRUE(apic.rdmsr_x2apic(0x802, 0).gp);
  EXPECT_TRUE(apic.wrmsr_x2apic(0x808, 0, 0).gp);
  ASSERT_FALSE(apic.set_apic_base(kBase, false).gp);  // disabled
  EXPECT_TRUE(apic.rdmsr_x2apic(0x803, 0).gp);
}

TEST_F(X2ApicMsrTest, IdIsTheVcpuIdAndLdrIsDerived) {
  EXPECT_EQ(Rd(0x802), 0x123u);
  // SDM 11.12.10.2: cluster = ID[19:4] = 0x12 in LDR[31:16], LDR[15:0] = 1 << ID[3:0] = 1 << 3.
  EXPECT_EQ(Rd(0x80D), 0x00120008u);
  EXPECT_EQ(apic_.identity().ldr, 0x00120008u);
  EXPECT_TRUE(apic_.identity().x2apic);
  EXPECT_EQ(Rd(0x803), 0x00050014u);
}

TEST_F(X2ApicMsrTest, ReadOnlyRegistersFaultOnWrite) {
  for (uint32_t msr :
       {0x802u, 0x803u, 0x80Au, 0x80Du, 0x810u, 0x817u, 0x818u, 0x820u, 0x827u, 0x839u}) {
    EXPECT_TRUE(WriteGp(msr, 0)) << std::hex << msr;
  }
  EXPECT_EQ(Rd(0x802), 0x123u);
  EXPECT_EQ(Rd(0x80D), 0x00120008u);
}

TEST_F(X2ApicMsrTest, RegistersWithoutAnX2ApicMsrFault) {
  // APR, DFR, ICR2, RRR, CMCI (absent), 0x840.. and everything outside 0x800-0x8FF.
  for (uint32_t msr : {0x809u, 0x80Eu, 0x831u, 0x80Cu, 0x82Fu, 0x840u, 0x8FFu, 0x801u}) {
    EXPECT_TRUE(ReadGp(msr)) << std::hex << msr;
    EXPECT_TRUE(WriteGp(msr, 0)) << std::hex << msr;
  }
  EXPECT_TRUE(ReadGp(0x7FF));
  EXPECT_TRUE(ReadGp(0x900));
  EXPECT_TRUE(WriteGp(0x900, 0));
}

TEST_F(X2ApicMsrTest, WriteOnlyRegistersFaultOnRead) {
  EXPECT_TRUE(ReadGp(0x80B));  // EOI
  EXPECT_TRUE(ReadGp(0x83F));  // SELF IPI
  EXPECT_FALSE(WriteGp(0x80B, 0));
}

TEST_F(X2ApicMsrTest, HighHalfSetFaultsAndChangesNothing) {
  EXPECT_FALSE(WriteGp(0x808, 0x20));
  EXPECT_TRUE(WriteGp(0x808, 0x100000030ull));
  EXPECT_EQ(Rd(0x808), 0x20u);
  EXPECT_TRUE(WriteGp(0x80F, 0x1FF | (1ull << 32)));
  EXPECT_FALSE(apic_.sw_enabled());
}

TEST_F(X2ApicMsrTest, Icr64BitWriteSendsWithFull32BitDestination) {
  MsrAccess w = apic_.wrmsr_x2apic(0x830, 0x00000456000040F1ull | kIcrBusy, 0);
  ASSERT_FALSE(w.gp);
  ASSERT_TRUE(w.out.ipi.has_value());
  EXPECT_EQ(w.out.ipi->vector, 0xF1);
  EXPECT_EQ(w.out.ipi->dest_id, 0x456u);
  EXPECT_TRUE(w.out.ipi->source_x2apic);
  EXPECT_EQ(w.out.ipi->source_vcpu, 0x123);
  EXPECT_EQ(Rd(0x830), 0x00000456000040F1ull);  // delivery status reads idle
}

TEST_F(X2ApicMsrTest, IcrReservedBitsFault) {
  ASSERT_FALSE(WriteGp(0x830, 0x0000000500000030ull));
  for (int bit : {13, 16, 17, 20, 25, 31}) {
    MsrAccess w = apic_.wrmsr_x2apic(0x830, 0x31ull | (1ull << bit), 0);
    EXPECT_TRUE(w.gp) << bit;
    EXPECT_FALSE(w.out.ipi.has_value());
  }
  EXPECT_EQ(Rd(0x830), 0x0000000500000030ull);
}

TEST_F(X2ApicMsrTest, SelfIpiSendsFixedEdgeToSelfAndRejectsReservedBits) {
  MsrAccess w = apic_.wrmsr_x2apic(0x83F, 0x45, 0);
  ASSERT_FALSE(w.gp);
  ASSERT_TRUE(w.out.ipi.has_value());
  EXPECT_EQ(w.out.ipi->shorthand, Shorthand::kSelf);
  EXPECT_EQ(w.out.ipi->delivery_mode, DeliveryMode::kFixed);
  EXPECT_EQ(w.out.ipi->vector, 0x45);
  EXPECT_FALSE(w.out.ipi->trigger_level);
  EXPECT_TRUE(WriteGp(0x83F, 0x100));
  EXPECT_TRUE(WriteGp(0x83F, 1ull << 32));
}

TEST_F(X2ApicMsrTest, EsrAcceptsOnlyZero) {
  EXPECT_FALSE(WriteGp(0x828, 0));
  EXPECT_TRUE(WriteGp(0x828, 1));
  EXPECT_TRUE(WriteGp(0x828, 0x80));
  EXPECT_EQ(Rd(0x828), 0u);
}

TEST_F(X2ApicMsrTest, OrdinaryRegistersReadBackThroughMsrs) {
  EXPECT_FALSE(WriteGp(0x80F, 0x1FF));
  EXPECT_EQ(Rd(0x80F), 0x1FFu);
  EXPECT_FALSE(WriteGp(0x832, 0x000200EE));  // LVTT periodic vector 0xEE
  EXPECT_EQ(Rd(0x832), 0x000200EEu);
  EXPECT_FALSE(WriteGp(0x83E, 0x3));
  EXPECT_EQ(Rd(0x83E), 0x3u);
  EXPECT_FALSE(WriteGp(0x838, 1000));
  EXPECT_EQ(Rd(0x838), 1000u);
  EXPECT_EQ(Rd(0x839), 1000u);  // TMCCT at the instant of arming (now = 0)
}

// ---- IA32_APIC_BASE ----

TEST(ApicBase, GuestXApicToX2ApicAndBackThroughDisabled) {
  Lapic apic(5, false, LapicConfig{});
  MsrAccess r = apic.set_apic_base(kBase | kEn | kExtd, false);
  ASSERT_FALSE(r.gp);
  EXPECT_TRUE(r.out.apicv_update);
  EXPECT_TRUE(r.out.map_dirty);
  EXPECT_EQ(apic.mode(), ApicMode::kX2Apic);
  EXPECT_EQ(apic.rdmsr_x2apic(0x802, 0).value, 5u);
  // x2APIC -> xAPIC directly is illegal for the guest.
  r = apic.set_apic_base(kBase | kEn, false);
  EXPECT_TRUE(r.gp);
  EXPECT_EQ(apic.mode(), ApicMode::kX2Apic);
  // x2APIC -> disabled -> xAPIC is the architectural path.
  r = apic.set_apic_base(kBase, false);
  ASSERT_FALSE(r.gp);
  EXPECT_TRUE(r.out.apicv_update);
  EXPECT_EQ(apic.mode(), ApicMode::kDisabled);
  EXPECT_FALSE(apic.identity().hw_enabled);
  r = apic.set_apic_base(kBase | kEn, false);
  ASSERT_FALSE(r.gp);
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
  EXPECT_EQ(Read(apic, kApicId), 0x05000000u);
}

TEST(ApicBase, GuestCannotGoFromDisabledToX2Apic) {
  Lapic apic(5, false, LapicConfig{});
  ASSERT_FALSE(apic.set_apic_base(kBase, false).gp);
  EXPECT_TRUE(apic.set_apic_base(kBase | kEn | kExtd, false).gp);
  EXPECT_EQ(apic.mode(), ApicMode::kDisabled);
}

TEST(ApicBase, HostMayMakeTransitionsTheGuestCannot) {
  Lapic apic(5, false, LapicConfig{});
  ASSERT_FALSE(apic.set_apic_base(kBase, true).gp);
  ASSERT_FALSE(apic.set_apic_base(kBase | kEn | kExtd, true).gp);  // disabled -> x2APIC
  EXPECT_EQ(apic.mode(), ApicMode::kX2Apic);
  EXPECT_EQ(apic.identity().ldr, 0x00000020u);             // 1 << 5
  ASSERT_FALSE(apic.set_apic_base(kBase | kEn, true).gp);  // x2APIC -> xAPIC
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
  EXPECT_EQ(Read(apic, kApicId), 0x05000000u);
}

TEST(ApicBase, InvalidModeIsAlwaysRejected) {
  Lapic apic(5, false, LapicConfig{});
  EXPECT_TRUE(apic.set_apic_base(kBase | kExtd, false).gp);
  EXPECT_TRUE(apic.set_apic_base(kBase | kExtd, true).gp);
  EXPECT_EQ(apic.get_apic_base(), kBase | kEn);
}

TEST(ApicBase, ReservedLowBitsFaultButBspIsWritable) {
  Lapic apic(5, false, LapicConfig{});
  for (int bit : {0, 1, 2, 3, 4, 5, 6, 7, 9}) {
    EXPECT_TRUE(apic.set_apic_base(kBase | kEn | (1ull << bit), false).gp) << bit;
    EXPECT_TRUE(apic.set_apic_base(kBase | kEn | (1ull << bit), true).gp) << bit;
  }
  EXPECT_FALSE(apic.set_apic_base(kBase | kEn | kApicBaseBsp, false).gp);
  EXPECT_EQ(apic.get_apic_base(), kBase | kEn | kApicBaseBsp);
}

TEST(ApicBase, BitsAtOrAboveMaxPhyAddrAreReserved) {
  Lapic apic(5, false, LapicConfig{});  // MAXPHYADDR 46
  EXPECT_TRUE(apic.set_apic_base((1ull << 46) | kBase | kEn, false).gp);
  EXPECT_TRUE(apic.set_apic_base((1ull << 63) | kBase | kEn, true).gp);
  EXPECT_FALSE(apic.set_apic_base((1ull << 45) | kEn, false).gp);
  LapicConfig c;
  c.maxphyaddr = 36;
  Lapic narrow(5, false, c);
  EXPECT_TRUE(narrow.set_apic_base((1ull << 36) | kBase | kEn, false).gp);
  EXPECT_FALSE(narrow.set_apic_base((1ull << 35) | kEn, false).gp);
}

TEST(ApicBase, ExtdIsReservedWithoutX2ApicSupport) {
  LapicConfig c;
  c.x2apic_supported = false;
  Lapic apic(5, false, c);
  EXPECT_TRUE(apic.set_apic_base(kBase | kEn | kExtd, false).gp);
  EXPECT_TRUE(apic.set_apic_base(kBase | kEn | kExtd, true).gp);
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
}

TEST(ApicBase, RelocationReportsBaseModifiedOnlyWhenEnabled) {
  Lapic apic(5, false, LapicConfig{});
  MsrAccess r = apic.set_apic_base(0xFED00000ull | kEn, false);
  ASSERT_FALSE(r.gp);
  EXPECT_TRUE(r.out.base_modified);
  EXPECT_FALSE(r.out.apicv_update);  // EN/EXTD unchanged
  EXPECT_EQ(apic.get_apic_base(), 0xFED00000ull | kEn);
  r = apic.set_apic_base(0xFEC00000ull, false);  // disabled elsewhere: nothing to inhibit
  ASSERT_FALSE(r.gp);
  EXPECT_FALSE(r.out.base_modified);
  r = apic.set_apic_base(kBase | kEn, false);
  ASSERT_FALSE(r.gp);
  EXPECT_FALSE(r.out.base_modified);
}

TEST(ApicBase, WritingTheCurrentValueIsANoOp) {
  Lapic apic(5, false, LapicConfig{});
  Write(apic, kApicId, 0x77000000);
  MsrAccess r = apic.set_apic_base(apic.get_apic_base(), false);
  EXPECT_FALSE(r.gp);
  EXPECT_FALSE(r.out.map_dirty);
  EXPECT_FALSE(r.out.apicv_update);
  EXPECT_EQ(Read(apic, kApicId), 0x77000000u);
}

TEST(ApicBase, ReEnablingResetsAModifiedXApicId) {
  Lapic apic(5, false, LapicConfig{});
  Write(apic, kApicId, 0x77000000);
  ASSERT_FALSE(apic.set_apic_base(kBase, false).gp);
  MsrAccess r = apic.set_apic_base(kBase | kEn, false);
  ASSERT_FALSE(r.gp);
  EXPECT_TRUE(r.out.map_dirty);
  EXPECT_EQ(Read(apic, kApicId), 0x05000000u);
}

// ---- INIT versus RESET ----

TEST(LapicInitReset, InitKeepsBaseModeAndIdButClearsTheRest) {
  Lapic apic(9, false, LapicConfig{});
  EnterX2Apic(apic);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x80F, 0x1FF, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x808, 0x30, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x835, 0xEF, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x83E, 0x9, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x838, 500, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x830, 0x0000000200000040ull, 0).gp);
  ASSERT_TRUE(apic.accept_irq(lapic_test::Fixed(0x80, true)));
  ASSERT_TRUE(apic.accept_irq(lapic_test::Fixed(0x90)));
  ASSERT_EQ(apic.get_interrupt(), 0x90);
  ASSERT_NE(apic.next_timer_deadline_ns(), UINT64_MAX);

  LapicOutput o = apic.reset(/*init_only=*/true);
  EXPECT_TRUE(o.map_dirty);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic.mode(), ApicMode::kX2Apic);
  EXPECT_EQ(apic.rdmsr_x2apic(0x802, 0).value, 9u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x80D, 0).value, 0x200u);  // 1 << 9 kept
  EXPECT_EQ(apic.rdmsr_x2apic(0x80F, 0).value, 0xFFu);
  EXPECT_EQ(apic.rdmsr_x2apic(0x808, 0).value, 0u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x835, 0).value, 0x10000u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x83E, 0).value, 0u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x838, 0).value, 0u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x830, 0).value, 0u);
  EXPECT_EQ(apic.highest_irr(), -1);
  EXPECT_EQ(apic.highest_isr(), -1);
  EXPECT_EQ(apic.reg(kApicTmr + 0x40), 0u);
  EXPECT_EQ(apic.ppr(), 0u);
  EXPECT_EQ(apic.next_timer_deadline_ns(), UINT64_MAX);
}

TEST(LapicInitReset, InitKeepsAModifiedXApicIdAndRelocatedBaseResetRestoresThem) {
  Lapic apic(9, false, LapicConfig{});
  ASSERT_FALSE(apic.set_apic_base(0xFED00000ull | kEn, false).gp);
  Write(apic, kApicId, 0x42000000);
  Write(apic, kApicLdr, 0x10000000);
  Write(apic, kApicDfr, 0x0FFFFFFF);
  apic.reset(/*init_only=*/true);
  EXPECT_EQ(apic.get_apic_base(), 0xFED00000ull | kEn);
  EXPECT_EQ(Read(apic, kApicId), 0x42000000u);
  EXPECT_EQ(Read(apic, kApicLdr), 0u);
  EXPECT_EQ(Read(apic, kApicDfr), 0xFFFFFFFFu);
  LapicOutput o = apic.reset(/*init_only=*/false);
  EXPECT_FALSE(o.base_modified);
  EXPECT_EQ(apic.get_apic_base(), kBase | kEn);
  EXPECT_EQ(Read(apic, kApicId), 0x09000000u);
}

TEST(LapicInitReset, ResetLeavesX2ApicModeInitDoesNot) {
  Lapic apic(9, true, LapicConfig{});
  EnterX2Apic(apic);
  apic.reset(/*init_only=*/true);
  EXPECT_EQ(apic.mode(), ApicMode::kX2Apic);
  LapicOutput o = apic.reset(/*init_only=*/false);
  EXPECT_TRUE(o.apicv_update);
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
  EXPECT_EQ(apic.get_apic_base(), kBase | kEn | kApicBaseBsp);
  EXPECT_EQ(Read(apic, kApicId), 0x09000000u);
  EXPECT_EQ(Read(apic, kApicLdr), 0u);
}

}  // namespace
}  // namespace apicv
