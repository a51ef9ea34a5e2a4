// Interrupt acceptance (SDM 11.6, 11.8.4; spec §9.2 __apic_accept_irq), priorities (SDM 11.8.3.1,
// 11.8.6 CR8), acknowledge and EOI order (SDM 11.8.4-11.8.5), directed EOI (SDM 11.8.5), ESR in KVM
// and SDM modes (SDM 11.5.3), local LVT delivery (spec §8), PIC acceptance (spec §4) and lock-free
// posting from other threads.
#include <gtest/gtest.h>

#include <atomic>
#include <bitset>
#include <thread>
#include <vector>

#include "devices/lapic.h"
#include "lapic_test_util.h"

namespace apicv {
namespace {

using namespace x86;
using lapic_test::Fixed;
using lapic_test::Read;
using lapic_test::SwEnable;
using lapic_test::Write;

InterruptRequest Mode(DeliveryMode m, uint8_t vector = 0, bool trigger_level = false,
                      bool level = true) {
  InterruptRequest r;
  r.delivery_mode = m;
  r.vector = vector;
  r.trigger_level = trigger_level;
  r.level = level;
  return r;
}

class LapicIrqTest : public ::testing::Test {
 protected:
  void SetUp() override { SwEnable(apic_); }
  Lapic apic_{2, false, LapicConfig{}};
};

// ---- Acceptance ----

TEST(LapicAccept, FixedIsDroppedUnlessHardwareAndSoftwareEnabled) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_FALSE(apic.accept_irq(Fixed(0x40)));  // SPIV[8] = 0 after reset
  EXPECT_EQ(apic.highest_irr(), -1);
  SwEnable(apic);
  EXPECT_TRUE(apic.accept_irq(Fixed(0x40)));
  EXPECT_EQ(apic.highest_irr(), 0x40);
  ASSERT_FALSE(apic.set_apic_base(kApicDefaultBase, false).gp);
  EXPECT_FALSE(apic.accept_irq(Fixed(0x41)));
  EXPECT_EQ(apic.highest_irr(), 0x40);
  // A hardware-disabled APIC offers nothing for injection even with IRR bits left over.
  EXPECT_EQ(apic.pending_deliverable(), -1);
  EXPECT_EQ(apic.get_interrupt(), -1);
}

TEST_F(LapicIrqTest, LevelDeassertCarriesNoInterrupt) {
  EXPECT_FALSE(apic_.accept_irq(Mode(DeliveryMode::kFixed, 0x50, true, false)));
  EXPECT_EQ(apic_.highest_irr(), -1);
  // An edge message with level=0 is still delivered.
  EXPECT_TRUE(apic_.accept_irq(Mode(DeliveryMode::kFixed, 0x50, false, false)));
}

TEST_F(LapicIrqTest, TmrFollowsTheTriggerModeOfTheLastAcceptedMessage) {
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x60, true)));
  EXPECT_EQ(apic_.reg(kApicTmr + 0x30), 1u);  // vector 0x60 = word 3 bit 0
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x60, false)));
  EXPECT_EQ(apic_.reg(kApicTmr + 0x30), 0u);
  EXPECT_EQ(apic_.reg(kApicIrr + 0x30), 1u);
}

TEST(LapicAccept, NmiInitSipiAreLatchedEvenWhenSoftwareDisabled) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_TRUE(apic.accept_irq(Mode(DeliveryMode::kNmi)));
  EXPECT_TRUE(apic.take_nmi());
  EXPECT_FALSE(apic.take_nmi());
  EXPECT_FALSE(apic.accept_irq(Mode(DeliveryMode::kInit, 0, true, false)));  // INIT de-assert
  EXPECT_FALSE(apic.take_init());
  EXPECT_TRUE(apic.accept_irq(Mode(DeliveryMode::kInit, 0, true, true)));
  EXPECT_TRUE(apic.take_init());
  EXPECT_FALSE(apic.take_init());
  EXPECT_TRUE(apic.accept_irq(Mode(DeliveryMode::kStartup, 0x9A)));
  uint8_t v = 0;
  EXPECT_TRUE(apic.take_sipi(&v));
  EXPECT_EQ(v, 0x9A);
  EXPECT_FALSE(apic.take_sipi(&v));
  EXPECT_EQ(apic.highest_irr(), -1);
}

TEST_F(LapicIrqTest, ExtIntSmiAndRemoteReadAreNotAccepted) {
  EXPECT_FALSE(apic_.accept_irq(Mode(DeliveryMode::kExtInt, 0x30)));
  EXPECT_FALSE(apic_.accept_irq(Mode(DeliveryMode::kSmi)));
  EXPECT_FALSE(apic_.accept_irq(Mode(DeliveryMode::kRemoteRead)));
  EXPECT_EQ(apic_.highest_irr(), -1);
  EXPECT_FALSE(apic_.take_nmi());
}

TEST_F(LapicIrqTest, KvmParityAcceptsVectorsBelow16) {
  EXPECT_TRUE(apic_.accept_irq(Fixed(0x05)));
  EXPECT_EQ(apic_.reg(kApicIrr), 1u << 5);
  Write(apic_, kApicEsr, 0);
  EXPECT_EQ(Read(apic_, kApicEsr), 0u);
}

// ---- Priorities, acknowledge, EOI ----

TEST_F(LapicIrqTest, NestedServiceFollowsPriorityClasses) {
  for (uint8_t v : {0x31, 0x75, 0x52}) ASSERT_TRUE(apic_.accept_irq(Fixed(v)));
  EXPECT_EQ(apic_.highest_irr(), 0x75);
  EXPECT_EQ(apic_.get_interrupt(), 0x75);
  EXPECT_EQ(apic_.ppr(), 0x70u);
  EXPECT_EQ(Read(apic_, kApicPpr), 0x70u);
  EXPECT_EQ(apic_.pending_deliverable(), -1);  // 0x52: class 5 <= 7
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x7A)));
  EXPECT_EQ(apic_.pending_deliverable(), -1);  // same class as the one in service
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x81)));
  EXPECT_EQ(apic_.get_interrupt(), 0x81);  // nests
  EXPECT_EQ(apic_.ppr(), 0x80u);

  LapicOutput o = Write(apic_, kApicEoi, 0x12345);  // value ignored
  ASSERT_TRUE(o.eoi.has_value());
  EXPECT_EQ(o.eoi->vector, 0x81);
  EXPECT_TRUE(o.event);
  EXPECT_EQ(apic_.ppr(), 0x70u);
  EXPECT_EQ(apic_.pending_deliverable(), -1);

  o = Write(apic_, kApicEoi, 0);
  ASSERT_TRUE(o.eoi.has_value());
  EXPECT_EQ(o.eoi->vector, 0x75);
  EXPECT_EQ(apic_.ppr(), 0u);
  EXPECT_EQ(apic_.get_interrupt(), 0x7A);
  Write(apic_, kApicEoi, 0);
  EXPECT_EQ(apic_.get_interrupt(), 0x52);
  Write(apic_, kApicEoi, 0);
  EXPECT_EQ(apic_.get_interrupt(), 0x31);
  Write(apic_, kApicEoi, 0);
  EXPECT_EQ(apic_.get_interrupt(), -1);
  EXPECT_EQ(apic_.highest_isr(), -1);
}

TEST_F(LapicIrqTest, EoiWithNothingInServiceDoesNothing) {
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x40)));
  LapicOutput o = Write(apic_, kApicEoi, 0);
  EXPECT_FALSE(o.eoi.has_value());
  EXPECT_EQ(apic_.highest_irr(), 0x40);
}

TEST_F(LapicIrqTest, EoiReportsTheTriggerModeFromTmr) {
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x70, true)));
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x60, false)));
  EXPECT_EQ(apic_.get_interrupt(), 0x70);
  LapicOutput o = Write(apic_, kApicEoi, 0);
  ASSERT_TRUE(o.eoi.has_value());
  EXPECT_TRUE(o.eoi->level_triggered);
  EXPECT_FALSE(o.eoi->directed);
  EXPECT_EQ(apic_.get_interrupt(), 0x60);
  o = Write(apic_, kApicEoi, 0);
  EXPECT_FALSE(o.eoi->level_triggered);
}

TEST(LapicEoi, DirectedEoiIsReportedWhenSpivBit12IsSet) {
  LapicConfig c;
  c.directed_eoi = true;
  Lapic apic(0, false, c);
  Write(apic, kApicSpiv, 0x11FF);
  ASSERT_TRUE(apic.accept_irq(Fixed(0x70, true)));
  EXPECT_EQ(apic.get_interrupt(), 0x70);
  LapicOutput o = Write(apic, kApicEoi, 0);
  ASSERT_TRUE(o.eoi.has_value());
  EXPECT_TRUE(o.eoi->directed);
  EXPECT_TRUE(o.eoi->level_triggered);

  Lapic plain(0, false, LapicConfig{});
  Write(plain, kApicSpiv, 0x11FF);  // bit 12 not writable without directed-EOI support
  ASSERT_TRUE(plain.accept_irq(Fixed(0x70, true)));
  plain.get_interrupt();
  o = Write(plain, kApicEoi, 0);
  ASSERT_TRUE(o.eoi.has_value());
  EXPECT_FALSE(o.eoi->directed);
}

TEST_F(LapicIrqTest, X2ApicEoiMsrCompletesTheHighestInService) {
  lapic_test::EnterX2Apic(apic_);
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x99)));
  EXPECT_EQ(apic_.get_interrupt(), 0x99);
  MsrAccess w = apic_.wrmsr_x2apic(0x80B, 0, 0);
  ASSERT_FALSE(w.gp);
  ASSERT_TRUE(w.out.eoi.has_value());
  EXPECT_EQ(w.out.eoi->vector, 0x99);
}

TEST_F(LapicIrqTest, TprMasksByPriorityClass) {
  for (uint8_t v : {0x55, 0x65}) ASSERT_TRUE(apic_.accept_irq(Fixed(v)));
  Write(apic_, kApicTpr, 0x50);
  EXPECT_EQ(apic_.ppr(), 0x50u);
  EXPECT_EQ(apic_.pending_deliverable(), 0x65);
  Write(apic_, kApicTpr, 0x5F);
  EXPECT_EQ(apic_.pending_deliverable(), 0x65);  // class 6 > PPR 0x5F
  Write(apic_, kApicTpr, 0x60);
  EXPECT_EQ(apic_.pending_deliverable(), -1);
  Write(apic_, kApicTpr, 0xF0);
  EXPECT_EQ(apic_.get_interrupt(), -1);
  EXPECT_EQ(apic_.highest_irr(), 0x65);
}

TEST_F(LapicIrqTest, PprTakesTprWhenItsClassIsAtLeastTheInServiceClass) {
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x45)));
  ASSERT_EQ(apic_.get_interrupt(), 0x45);
  Write(apic_, kApicTpr, 0x2F);
  EXPECT_EQ(apic_.ppr(), 0x40u);  // ISRV[7:4] with low nibble 0
  Write(apic_, kApicTpr, 0x47);
  EXPECT_EQ(apic_.ppr(), 0x47u);  // equal class: TPR wins
  Write(apic_, kApicTpr, 0x93);
  EXPECT_EQ(apic_.ppr(), 0x93u);
}

TEST_F(LapicIrqTest, LoweringTprRequestsAnEventOnlyIfSomethingBecameDeliverable) {
  Write(apic_, kApicTpr, 0xF0);
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x65)));
  EXPECT_FALSE(Write(apic_, kApicTpr, 0x70).event);  // still masked
  EXPECT_TRUE(Write(apic_, kApicTpr, 0x20).event);
  EXPECT_FALSE(Write(apic_, kApicTpr, 0x90).event);  // raising never unmasks
}

TEST_F(LapicIrqTest, Cr8IsTprBits7To4) {
  apic_.set_cr8(0x9);
  EXPECT_EQ(Read(apic_, kApicTpr), 0x90u);
  EXPECT_EQ(apic_.get_cr8(), 0x9u);
  Write(apic_, kApicTpr, 0xAB);
  EXPECT_EQ(apic_.get_cr8(), 0xAu);
  apic_.set_cr8(0x1F);  // only CR8[3:0] exist
  EXPECT_EQ(Read(apic_, kApicTpr), 0xF0u);
  ASSERT_TRUE(apic_.accept_irq(Fixed(0x35)));
  EXPECT_EQ(apic_.pending_deliverable(), -1);
  EXPECT_TRUE(apic_.set_cr8(0x2));
  EXPECT_EQ(apic_.pending_deliverable(), 0x35);
  EXPECT_TRUE(apic_.set_cr8(0x1));   // lowered, something deliverable
  EXPECT_FALSE(apic_.set_cr8(0xF));  // raised
}

// ---- ESR ----

TEST(LapicEsr, SdmModeLatchesIllegalVectorErrorsOnTheNextWrite) {
  LapicConfig c;
  c.esr_sdm_mode = true;
  Lapic apic(0, false, c);
  SwEnable(apic);
  LapicOutput o = Write(apic, kApicIcr, 0x00004005);  // fixed, vector 5
  EXPECT_TRUE(o.ipi.has_value());       // the message still goes out; receivers refuse it
  EXPECT_EQ(Read(apic, kApicEsr), 0u);  // not visible before an ESR write
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), kEsrSendIllegalVector);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), 0u);  // the write also cleared the error

  Write(apic, kApicIcr, 0x00004400);  // NMI: the vector field is ignored
  EXPECT_FALSE(apic.accept_irq(Fixed(0x0F)));
  EXPECT_EQ(apic.highest_irr(), -1);
  Write(apic, kApicEsr, 0xFFFFFFFF);  // the value written does not matter
  EXPECT_EQ(Read(apic, kApicEsr), kEsrReceiveIllegalVector);

  Read(apic, kApicLvtCmci);  // unimplemented register
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), kEsrIllegalRegister);
  EXPECT_TRUE(apic.accept_irq(Fixed(0x10)));  // 16 is the first legal vector
}

TEST(LapicEsr, SdmModeRaisesTheErrorInterruptThroughLvtErr) {
  LapicConfig c;
  c.esr_sdm_mode = true;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtErr, 0xE3);
  LapicOutput o = Write(apic, kApicIcr, 0x00004005);
  EXPECT_TRUE(o.event);
  EXPECT_EQ(apic.highest_irr(), 0xE3);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), kEsrSendIllegalVector);
  // Masked LVTERR: the error is recorded, no interrupt.
  EXPECT_EQ(apic.get_interrupt(), 0xE3);
  Write(apic, kApicEoi, 0);
  Write(apic, kApicLvtErr, 0x100E3);
  o = Write(apic, kApicIcr, 0x00004005);
  EXPECT_FALSE(o.event);
  EXPECT_EQ(apic.highest_irr(), -1);
}

TEST(LapicEsr, AnIllegalLvtErrVectorIsRecordedWithoutRecursion) {
  LapicConfig c;
  c.esr_sdm_mode = true;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtErr, 0x03);
  Write(apic, kApicIcr, 0x00004005);
  EXPECT_EQ(apic.highest_irr(), -1);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), kEsrSendIllegalVector | kEsrReceiveIllegalVector);
}

TEST(LapicEsr, KvmParityNeverReportsErrors) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  Write(apic, kApicLvtErr, 0xE3);
  Write(apic, kApicIcr, 0x00004005);
  apic.accept_irq(Fixed(0x03));
  Read(apic, kApicLvtCmci);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), 0u);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), 0u);
  EXPECT_EQ(apic.highest_irr(), 0x03);  // the vector-3 message was accepted, LVTERR never fired
}

// ---- Local delivery and the PIC ----

TEST_F(LapicIrqTest, LocalDeliverUsesTheLvtAndMasksLvtpcWhenAsked) {
  Write(apic_, kApicLvtPc, 0x000000FE);
  EXPECT_TRUE(apic_.local_deliver(kApicLvtPc, /*mask_lvtpc_on_delivery=*/true));
  EXPECT_EQ(apic_.highest_irr(), 0xFE);
  EXPECT_EQ(Read(apic_, kApicLvtPc), 0x000100FEu);
  EXPECT_FALSE(apic_.local_deliver(kApicLvtPc, true));  // now masked
  Write(apic_, kApicLvtPc, 0x000000FD);
  EXPECT_TRUE(apic_.local_deliver(kApicLvtPc, false));
  EXPECT_EQ(Read(apic_, kApicLvtPc), 0x000000FDu);
}

TEST_F(LapicIrqTest, LocalDeliverHonoursModeAndTrigger) {
  Write(apic_, kApicLvt1, 0x00000400);  // NMI
  EXPECT_TRUE(apic_.local_deliver(kApicLvt1));
  EXPECT_TRUE(apic_.take_nmi());
  Write(apic_, kApicLvt0, 0x00008031);  // fixed, level
  EXPECT_TRUE(apic_.local_deliver(kApicLvt0));
  EXPECT_EQ(apic_.reg(kApicTmr + 0x10), 1u << 17);  // 0x31 = word 1 bit 17
  Write(apic_, kApicLvt0, 0x00000700);              // ExtINT goes through the PIC, not the APIC
  EXPECT_FALSE(apic_.local_deliver(kApicLvt0));
  EXPECT_FALSE(apic_.local_deliver(kApicTmict));  // not an LVT
  EXPECT_FALSE(apic_.local_deliver(0xFFFFFFF0u));
  Write(apic_, kApicLvtErr, 0x000100E0);
  EXPECT_FALSE(apic_.local_deliver(kApicLvtErr));
  ASSERT_FALSE(apic_.set_apic_base(kApicDefaultBase, false).gp);
  EXPECT_FALSE(apic_.local_deliver(kApicLvtPc));
}

TEST(LapicPic, AcceptPicIntrFollowsLint0AndHardwareEnable) {
  Lapic ap(1, false, LapicConfig{});
  EXPECT_FALSE(ap.accept_pic_intr());  // LVT0 masked after reset
  SwEnable(ap);
  Write(ap, kApicLvt0, 0x00000700);
  EXPECT_TRUE(ap.accept_pic_intr());
  Write(ap, kApicLvt0, 0x00010700);
  EXPECT_FALSE(ap.accept_pic_intr());
  Write(ap, kApicLvt0, 0x00000030);
  EXPECT_FALSE(ap.accept_pic_intr());
  ASSERT_FALSE(ap.set_apic_base(kApicDefaultBase, false).gp);
  EXPECT_TRUE(ap.accept_pic_intr());  // a disabled APIC passes INTR straight through
}

// ---- Posting ----

TEST_F(LapicIrqTest, PostedVectorsReachIrrOnlyAtSync) {
  EXPECT_FALSE(apic_.has_posted());
  apic_.post(0x44, /*level=*/true);
  apic_.post(0xE0, /*level=*/false);
  EXPECT_TRUE(apic_.has_posted());
  EXPECT_EQ(apic_.highest_irr(), -1);
  EXPECT_TRUE(apic_.sync_pir_to_irr());
  EXPECT_FALSE(apic_.has_posted());
  EXPECT_EQ(apic_.highest_irr(), 0xE0);
  EXPECT_EQ(apic_.reg(kApicIrr + 0x20), 1u << 4);
  EXPECT_EQ(apic_.reg(kApicTmr + 0x20), 1u << 4);
  EXPECT_EQ(apic_.reg(kApicTmr + 0x70), 0u);
  apic_.post(0x44, true);  // already pending
  EXPECT_FALSE(apic_.sync_pir_to_irr());
  EXPECT_FALSE(apic_.sync_pir_to_irr());
}

TEST(LapicPost, PostedVectorsAreDroppedIfTheApicIsDisabledAtFoldTime) {
  Lapic apic(0, false, LapicConfig{});
  apic.post(0x50, false);
  EXPECT_FALSE(apic.sync_pir_to_irr());
  EXPECT_EQ(apic.highest_irr(), -1);
  SwEnable(apic);
  EXPECT_FALSE(apic.sync_pir_to_irr());  // the dropped vector does not come back
  EXPECT_EQ(apic.highest_irr(), -1);
}

TEST(LapicPost, SdmModeRefusesPostedVectorsBelow16) {
  LapicConfig c;
  c.esr_sdm_mode = true;
  Lapic apic(0, false, c);
  SwEnable(apic);
  apic.post(0x07, false);
  apic.post(0x20, false);
  EXPECT_TRUE(apic.sync_pir_to_irr());
  EXPECT_EQ(apic.reg(kApicIrr), 0u);
  EXPECT_EQ(apic.reg(kApicIrr + 0x10), 1u);
  Write(apic, kApicEsr, 0);
  EXPECT_EQ(Read(apic, kApicEsr), kEsrReceiveIllegalVector);
}

TEST(LapicPost, ResetDiscardsPostedVectors) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  apic.post(0x50, false);
  apic.reset(true);
  SwEnable(apic);
  EXPECT_FALSE(apic.has_posted());
  EXPECT_FALSE(apic.sync_pir_to_irr());
  EXPECT_EQ(apic.highest_irr(), -1);
}

// KVM queues NMIs (nmi_queued, limited to two by process_nmi()): two NMIs posted before the
// vCPU runs are two injections, a third collapses. INIT drops queued NMIs, keeps a latched SIPI.
TEST(LapicPost, NmisQueueUpToTwoAndInitDropsThem) {
  Lapic apic(0, false, LapicConfig{});
  for (int i = 0; i < 3; ++i) apic.post_nmi();
  EXPECT_TRUE(apic.nmi_pending());
  EXPECT_TRUE(apic.take_nmi());
  EXPECT_TRUE(apic.take_nmi());
  EXPECT_FALSE(apic.take_nmi());
  EXPECT_FALSE(apic.nmi_pending());

  apic.post_nmi();
  apic.post_sipi(0x12);
  apic.post_init();
  EXPECT_TRUE(apic.init_pending());
  ASSERT_TRUE(apic.take_init());
  apic.reset(/*init_only=*/true);
  EXPECT_FALSE(apic.nmi_pending());
  EXPECT_TRUE(apic.sipi_pending());
  uint8_t v = 0;
  EXPECT_TRUE(apic.take_sipi(&v));
  EXPECT_EQ(v, 0x12);
}

TEST(LapicPost, LatchesFromAnotherThread) {
  Lapic apic(0, false, LapicConfig{});
  std::thread t([&] {
    apic.post_nmi();
    apic.post_init();
    apic.post_sipi(0x10);
  });
  t.join();
  EXPECT_TRUE(apic.take_nmi());
  EXPECT_TRUE(apic.take_init());
  uint8_t v = 0;
  EXPECT_TRUE(apic.take_sipi(&v));
  EXPECT_EQ(v, 0x10);
}

// Several senders post while the owner folds, acknowledges and EOIs: every vector a sender posted
// after the owner last serviced it must be serviced again (no lost interrupts).
TEST(LapicPost, ConcurrentPostersNeverLoseAVector) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  constexpr int kSenders = 3;
  constexpr int kRounds = 20000;
  std::atomic<int> done{0};
  // Sender s owns vectors 0x20 + s*0x40 .. +0x3F and counts its posts per vector.
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (int r = 0; r < kRounds; ++r) {
        const uint8_t v = static_cast<uint8_t>(0x20 + s * 0x40 + (r % 0x40));
        apic.post(v, (r & 1) != 0);
      }
      done.fetch_add(1);
    });
  }
  std::bitset<256> seen;
  auto drain = [&] {
    apic.sync_pir_to_irr();
    for (int v = apic.get_interrupt(); v >= 0; v = apic.get_interrupt()) {
      seen.set(static_cast<size_t>(v));
      Write(apic, kApicEoi, 0);
    }
  };
  while (done.load() < kSenders) drain();
  for (auto& t : senders) t.join();
  drain();
  EXPECT_FALSE(apic.has_posted());
  EXPECT_EQ(apic.highest_irr(), -1);
  EXPECT_EQ(apic.highest_isr(), -1);
  for (int s = 0; s < kSenders; ++s) {
    for (int i = 0; i < 0x40; ++i) EXPECT_TRUE(seen.test(0x20 + s * 0x40 + i)) << s << " " << i;
  }
  EXPECT_EQ(seen.count(), static_cast<size_t>(kSenders * 0x40));
}

}  // namespace
}  // namespace apicv
