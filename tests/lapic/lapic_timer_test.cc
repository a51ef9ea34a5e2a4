// The APIC timer against a fake clock: SDM vol. 3A 11.5.4 (divide configuration Figure 11-10,
// one-shot and periodic counting), 11.5.4.1 (TSC-deadline mode), spec §9.4 (KVM's mode-switch,
// TMICT and minimum-period rules).
#include <gtest/gtest.h>

#include "devices/clock.h"
#include "devices/lapic.h"
#include "lapic_test_util.h"

namespace apicv {
namespace {

using namespace x86;
using lapic_test::Read;
using lapic_test::SwEnable;
using lapic_test::Write;

constexpr uint32_t kOneShot = 0x00000;
constexpr uint32_t kPeriodic = 0x20000;
constexpr uint32_t kTscDeadline = 0x40000;

TEST(LapicTimerDivide, TableFromTheSdm) {
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x0), 2u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x1), 4u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x2), 8u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x3), 16u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x8), 32u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x9), 64u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0xA), 128u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0xB), 1u);
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0x4), 2u);  // bit 2 is reserved
  EXPECT_EQ(LapicTimer::DivideFromTdcr(0xF), 1u);
}

class LapicTimerTest : public ::testing::Test {
 protected:
  explicit LapicTimerTest(LapicConfig c = Config()) : apic_(1, false, c) { SwEnable(apic_); }
  static LapicConfig Config() {
    LapicConfig c;
    c.min_periodic_ns = 100;
    return c;
  }
  uint64_t now() const { return clock_.now_ns(); }
  LapicOutput W(uint32_t off, uint32_t v) { return Write(apic_, off, v, now()); }
  uint32_t R(uint32_t off) { return Read(apic_, off, now()); }
  FakeClock clock_{1000};
  Lapic apic_;
};

TEST_F(LapicTimerTest, OneShotFiresOnceAfterTmictTimesDivideBusCycles) {
  W(kApicLvtt, kOneShot | 0x30);
  W(kApicTdcr, 0x0);  // divide by 2
  LapicOutput o = W(kApicTmict, 100);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 1000u + 100 * 2);
  EXPECT_EQ(R(kApicTmcct), 100u);
  clock_.advance(50);
  EXPECT_EQ(R(kApicTmcct), 75u);  // 50 ns = 25 ticks of 2 ns
  clock_.set(1199);
  EXPECT_FALSE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.highest_irr(), -1);
  clock_.set(1200);
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.highest_irr(), 0x30);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(R(kApicTmcct), 0u);
  EXPECT_EQ(R(kApicTmict), 100u);  // the initial count stays
  clock_.advance(100000);
  EXPECT_FALSE(apic_.on_timer(now()));
}

TEST_F(LapicTimerTest, ReservedTimerMode3CountsLikeOneShot) {
  W(kApicLvtt, 0x60000 | 0x30);
  EXPECT_EQ(R(kApicLvtt), 0x60030u);  // stored as written
  W(kApicTmict, 10);                  // 20 ns
  clock_.advance(20);
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, TmcctReachesZeroWhenOverdueEvenBeforeOnTimer) {
  W(kApicLvtt, kOneShot | 0x30);
  W(kApicTmict, 10);
  clock_.advance(500);
  EXPECT_EQ(R(kApicTmcct), 0u);
}

TEST_F(LapicTimerTest, TmictRewriteRestartsAndZeroStops) {
  W(kApicLvtt, kOneShot | 0x30);
  W(kApicTmict, 100);  // 200 ns
  clock_.advance(150);
  W(kApicTmict, 100);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 1150u + 200);
  LapicOutput o = W(kApicTmict, 0);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(R(kApicTmcct), 0u);
}

TEST_F(LapicTimerTest, PeriodicReArmsWithoutDriftAndCoalescesWhenLate) {
  W(kApicLvtt, kPeriodic | 0x31);
  W(kApicTdcr, 0x3);  // divide by 16
  clock_.set(0);
  W(kApicTmict, 1000);  // period 16000 ns
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 16000u);
  clock_.set(16000);
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 32000u);
  clock_.set(20000);
  EXPECT_EQ(R(kApicTmcct), 750u);  // 12000 ns left / 16
  EXPECT_EQ(apic_.get_interrupt(), 0x31);
  W(kApicEoi, 0);
  clock_.set(32005);  // serviced 5 ns late: the next period is still anchored at 48000
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 48000u);
  EXPECT_EQ(apic_.get_interrupt(), 0x31);
  W(kApicEoi, 0);
  clock_.set(100000);  // 3+ periods missed: one interrupt, next boundary after now
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 112000u);
  EXPECT_EQ(apic_.highest_irr(), 0x31);
  EXPECT_EQ(apic_.reg(kApicIrr + 0x10), 1u << 17);  // a single pending bit
}

TEST_F(LapicTimerTest, DivisorChangeRescalesTheRemainingTime) {
  W(kApicLvtt, kOneShot | 0x30);
  clock_.set(0);
  W(kApicTmict, 1000);  // divide 2: 2000 ns
  clock_.set(1000);
  EXPECT_EQ(R(kApicTmcct), 500u);
  LapicOutput o = W(kApicTdcr, 0x1);  // divide 4: the 1000 ns left become 2000 ns
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 3000u);
  EXPECT_EQ(R(kApicTmcct), 500u);  // the count itself does not jump
  EXPECT_EQ(R(kApicTdcr), 1u);
}

TEST_F(LapicTimerTest, MaskedLvttDropsTheInterruptButStillExpires) {
  W(kApicLvtt, 0x10000 | kOneShot | 0x30);
  W(kApicTmict, 5);
  clock_.advance(10);
  EXPECT_FALSE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.highest_irr(), -1);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, OneShotToPeriodicKeepsTheCountdown) {
  W(kApicLvtt, kOneShot | 0x30);
  clock_.set(0);
  W(kApicTmict, 500);  // 1000 ns
  clock_.set(300);
  LapicOutput o = W(kApicLvtt, kPeriodic | 0x30);
  EXPECT_FALSE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 1000u);
  clock_.set(1000);
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 2000u);  // now periodic
}

TEST_F(LapicTimerTest, SwitchingIntoTscDeadlineModeCancelsAndClearsTmict) {
  W(kApicLvtt, kPeriodic | 0x30);
  W(kApicTmict, 500);
  LapicOutput o = W(kApicLvtt, kTscDeadline | 0x30);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(R(kApicTmict), 0u);
  EXPECT_EQ(R(kApicTmcct), 0u);
  W(kApicTmict, 500);  // ignored in TSC-deadline mode
  EXPECT_EQ(R(kApicTmict), 0u);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, SwitchingOutOfTscDeadlineModeCancelsTheDeadline) {
  W(kApicLvtt, kTscDeadline | 0x30);
  apic_.wrmsr_tsc_deadline(5000, now(), 1000);
  ASSERT_NE(apic_.next_timer_deadline_ns(), UINT64_MAX);
  W(kApicLvtt, kOneShot | 0x30);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);
  W(kApicLvtt, kTscDeadline | 0x30);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);  // the old deadline was discarded
}

TEST_F(LapicTimerTest, TscDeadlineArmsFiresAndClears) {
  W(kApicLvtt, kTscDeadline | 0x32);
  // tsc_khz = 1,000,000: one TSC tick per ns. now_ns = 1000, now_tsc = 700.
  LapicOutput o = apic_.wrmsr_tsc_deadline(2700, now(), 700);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_FALSE(o.event);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), 3000u);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 2700u);
  EXPECT_EQ(R(kApicTmcct), 0u);
  clock_.set(2999);
  EXPECT_FALSE(apic_.on_timer(now()));
  clock_.set(3000);
  EXPECT_TRUE(apic_.on_timer(now()));
  EXPECT_EQ(apic_.highest_irr(), 0x32);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, TscDeadlineInThePastFiresImmediately) {
  W(kApicLvtt, kTscDeadline | 0x32);
  LapicOutput o = apic_.wrmsr_tsc_deadline(500, now(), 700);
  EXPECT_TRUE(o.event);
  EXPECT_EQ(apic_.highest_irr(), 0x32);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, TscDeadlineZeroDisarmsAndWritesOutsideTheModeAreIgnored) {
  W(kApicLvtt, kTscDeadline | 0x32);
  apic_.wrmsr_tsc_deadline(9000, now(), 700);
  LapicOutput o = apic_.wrmsr_tsc_deadline(0, now(), 700);
  EXPECT_TRUE(o.timer_changed);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
  W(kApicLvtt, kOneShot | 0x32);
  apic_.wrmsr_tsc_deadline(9000, now(), 700);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);
  EXPECT_EQ(apic_.next_timer_deadline_ns(), UINT64_MAX);
}

TEST_F(LapicTimerTest, TscDeadlineMsrIsInertWhileHardwareDisabled) {
  W(kApicLvtt, kTscDeadline | 0x32);
  apic_.wrmsr_tsc_deadline(9000, now(), 700);
  ASSERT_FALSE(apic_.set_apic_base(kApicDefaultBase, false).gp);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 0u);
  LapicOutput o = apic_.wrmsr_tsc_deadline(5000, now(), 700);
  EXPECT_FALSE(o.timer_changed);
  ASSERT_FALSE(apic_.set_apic_base(kApicDefaultBase | kApicBaseEnable, false).gp);
  EXPECT_EQ(apic_.rdmsr_tsc_deadline(), 9000u);  // the write while disabled was dropped
}

TEST(LapicTimer, TscDeadlineConvertsWithTscKhz) {
  LapicConfig c;
  c.tsc_khz = 2000000;  // 2 GHz: 2 ticks per ns
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtt, kTscDeadline | 0x40);
  apic.wrmsr_tsc_deadline(14000, 100, 10000);
  EXPECT_EQ(apic.next_timer_deadline_ns(), 100u + 2000);
}

TEST(LapicTimer, TscDeadlineNeverFiresWithoutATscFrequency) {
  LapicConfig c;
  c.tsc_khz = 0;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtt, kTscDeadline | 0x40);
  apic.wrmsr_tsc_deadline(14000, 100, 10000);
  EXPECT_EQ(apic.next_timer_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(apic.rdmsr_tsc_deadline(), 14000u);
}

TEST(LapicTimer, PeriodicPeriodIsClampedToTheMinimumButOneShotIsNot) {
  Lapic apic(0, false, LapicConfig{});  // min_periodic_ns 200000
  SwEnable(apic);
  Write(apic, kApicLvtt, kPeriodic | 0x40);
  Write(apic, kApicTmict, 10, 0);  // 20 ns requested
  EXPECT_EQ(apic.next_timer_deadline_ns(), 200000u);
  EXPECT_EQ(Read(apic, kApicTmcct, 0), 10u);  // never above TMICT
  Write(apic, kApicLvtt, kOneShot | 0x40);
  Write(apic, kApicTmict, 10, 0);
  EXPECT_EQ(apic.next_timer_deadline_ns(), 20u);
}

TEST(LapicTimer, BusCycleLengthIsConfigurable) {
  LapicConfig c;
  c.bus_cycle_ns = 5;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtt, kOneShot | 0x40);
  Write(apic, kApicTdcr, 0xB, 0);  // divide by 1
  Write(apic, kApicTmict, 10, 1000);
  EXPECT_EQ(apic.next_timer_deadline_ns(), 1050u);
  EXPECT_EQ(Read(apic, kApicTmcct, 1025), 5u);
}

TEST(LapicTimer, HugeCountsSaturateInsteadOfWrapping) {
  LapicConfig c;
  c.bus_cycle_ns = 1ull << 40;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtt, kOneShot | 0x40);
  Write(apic, kApicTdcr, 0xA, 0);  // divide by 128
  const uint64_t now = 1ull << 62;
  Write(apic, kApicTmict, 0xFFFFFFFF, now);
  EXPECT_FALSE(apic.on_timer(now + 1));
  EXPECT_GT(apic.next_timer_deadline_ns(), now + 1);
  EXPECT_NE(apic.next_timer_deadline_ns(), UINT64_MAX);  // armed, just very far away
  EXPECT_GT(Read(apic, kApicTmcct, now + 1), 0u);
}

TEST(LapicTimer, X2ApicTmictWriteReportsTimerChange) {
  Lapic apic(0, false, LapicConfig{});
  lapic_test::EnterX2Apic(apic);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x80F, 0x1FF, 0).gp);
  ASSERT_FALSE(apic.wrmsr_x2apic(0x832, 0x40, 0).gp);
  MsrAccess w = apic.wrmsr_x2apic(0x838, 50, 10);
  ASSERT_FALSE(w.gp);
  EXPECT_TRUE(w.out.timer_changed);
  EXPECT_EQ(apic.next_timer_deadline_ns(), 110u);
  EXPECT_EQ(apic.rdmsr_x2apic(0x839, 60).value, 25u);
}

}  // namespace
}  // namespace apicv
