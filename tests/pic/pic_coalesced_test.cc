// PicOutput::coalesced: whether an input assertion merged with a request already latched in IRR.
// 8259A datasheet: an edge-triggered input latches IRR on a low-to-high transition and IRR stays
// set until INTA; a level input keeps IRR set while high. KVM's pic_set_irq1() returns 0 for such
// a merge, -1 when the input is masked in IMR (whatever IRR holds) and 1 otherwise; its
// kvm_pic_set_irq tracepoint prints " (coalesced)" for 0 only.
#include <gtest/gtest.h>

#include "devices/pic.h"

namespace apicv {
namespace {

constexpr uint16_t kMasterData = 0x21;
constexpr uint16_t kElcrMaster = 0x4D0;

TEST(PicCoalescedTest, SecondEdgeBeforeAcknowledgeIsCoalesced) {
  Pic pic;
  EXPECT_FALSE(pic.set_irq(3, true).coalesced);   // first rising edge latches IRR3
  EXPECT_FALSE(pic.set_irq(3, false).coalesced);  // falling edge: IRR3 stays set
  EXPECT_EQ(pic.irr(0), 0x08);
  EXPECT_TRUE(pic.set_irq(3, true).coalesced);  // rising again while IRR3 is still set
  EXPECT_FALSE(pic.set_irq(3, false).coalesced);
}

TEST(PicCoalescedTest, HeldHighLineIsNoNewEdge) {
  Pic pic;
  EXPECT_FALSE(pic.set_irq(4, true).coalesced);
  // No low-to-high transition: nothing is latched, so nothing merges.
  EXPECT_FALSE(pic.set_irq(4, true).coalesced);
}

TEST(PicCoalescedTest, EdgeAfterAcknowledgeIsNotCoalesced) {
  Pic pic;
  pic.set_irq(0, true);
  pic.set_irq(0, false);
  // Uninitialised chip: base 0, IRQ0 is the only request; INTA moves it from IRR to ISR.
  EXPECT_EQ(pic.acknowledge(), 0x00);
  EXPECT_EQ(pic.irr(0), 0x00);
  EXPECT_FALSE(pic.set_irq(0, true).coalesced);
}

TEST(PicCoalescedTest, MaskedInputIsNeverCoalesced) {
  Pic pic;
  pic.pio_write(kMasterData, 0x20);  // OCW1: mask IRQ5
  EXPECT_FALSE(pic.set_irq(5, true).coalesced);
  pic.set_irq(5, false);
  EXPECT_EQ(pic.irr(0), 0x20);  // latched even though masked
  EXPECT_FALSE(pic.set_irq(5, true).coalesced);
  // Unmasked again, the same merge is reported.
  pic.pio_write(kMasterData, 0x00);
  pic.set_irq(5, false);
  EXPECT_TRUE(pic.set_irq(5, true).coalesced);
}

TEST(PicCoalescedTest, LevelInputAssertedTwiceIsCoalesced) {
  Pic pic;
  pic.pio_write(kElcrMaster, 0x08);  // IRQ3 level-triggered
  EXPECT_FALSE(pic.set_irq(3, true).coalesced);
  EXPECT_TRUE(pic.set_irq(3, true).coalesced);  // IRR3 already set by the high level
  EXPECT_FALSE(pic.set_irq(3, false).coalesced);
  EXPECT_FALSE(pic.set_irq(3, true).coalesced);
}

TEST(PicCoalescedTest, SlaveInputsReportToo) {
  Pic pic;
  pic.set_irq(12, true);
  pic.set_irq(12, false);
  EXPECT_EQ(pic.irr(1), 0x10);
  EXPECT_TRUE(pic.set_irq(12, true).coalesced);
}

}  // namespace
}  // namespace apicv
