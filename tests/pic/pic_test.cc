// 8259A pair tests, derived from the Intel 8259A datasheet (ICW/OCW formats, priority resolver,
// rotation, special mask, poll, AEOI, cascade, spurious IR7) and the PC's ELCR masks.
#include "devices/pic.h"

#include <gtest/gtest.h>

#include <random>

namespace apicv {
namespace {

class PicTest : public ::testing::Test {
 protected:
  PicOutput out(uint16_t port, uint8_t v) { return pic.pio_write(port, v); }
  uint8_t in(uint16_t port) {
    uint8_t v = 0;
    pic.pio_read(port, &v);
    return v;
  }
  // The sequence SeaBIOS's pic_setup() issues: ICW1 0x11, ICW2 0x08/0x70, ICW3 4/2, ICW4 1.
  void init_like_seabios(uint8_t master_icw4 = 0x01, uint8_t slave_icw4 = 0x01) {
    out(0x20, 0x11);
    out(0x21, 0x08);
    out(0x21, 0x04);
    out(0x21, master_icw4);
    out(0xA0, 0x11);
    out(0xA1, 0x70);
    out(0xA1, 0x02);
    out(0xA1, slave_icw4);
  }
  void pulse(unsigned irq) {
    pic.set_irq(irq, true);
    pic.set_irq(irq, false);
  }

  Pic pic;
};

TEST_F(PicTest, SeaBiosInitThenTimerInterrupt) {
  init_like_seabios();
  out(0x21, 0xFB);  // SeaBIOS: everything masked but the cascade
  out(0xA1, 0xFF);
  EXPECT_EQ(pic.irq_base(0), 0x08);
  EXPECT_EQ(pic.irq_base(1), 0x70);
  EXPECT_EQ(in(0x21), 0xFB);
  EXPECT_EQ(in(0xA1), 0xFF);
  pulse(0);
  EXPECT_FALSE(pic.output());  // IRQ0 masked
  EXPECT_EQ(pic.irr(0), 0x01);
  PicOutput o = out(0x21, 0xFA);  // unmask IRQ0
  EXPECT_EQ(o.mask_changed_irqs, 0x0001);
  EXPECT_TRUE(o.output_changed);
  EXPECT_TRUE(pic.output());
  PicOutput ack;
  EXPECT_EQ(pic.acknowledge(&ack), 0x08);
  EXPECT_TRUE(ack.output_changed);
  EXPECT_FALSE(pic.output());
  EXPECT_EQ(pic.isr(0), 0x01);
  EXPECT_EQ(pic.irr(0), 0x00);
  o = out(0x20, 0x20);  // non-specific EOI
  EXPECT_EQ(pic.isr(0), 0x00);
  EXPECT_EQ(o.acked_irqs, 0x0001);
}

TEST_F(PicTest, SlaveIrqCascadesThroughMasterIr2) {
  init_like_seabios();
  pulse(12);
  EXPECT_TRUE(pic.output());
  EXPECT_EQ(pic.irr(0), 0x04);
  EXPECT_EQ(pic.acknowledge(), 0x74);
  EXPECT_EQ(pic.isr(0), 0x04);
  EXPECT_EQ(pic.isr(1), 0x10);
  EXPECT_EQ(out(0xA0, 0x20).acked_irqs, 1u << 12);
  EXPECT_EQ(out(0x20, 0x20).acked_irqs, 1u << 2);
  EXPECT_EQ(pic.isr(0), 0);
  EXPECT_EQ(pic.isr(1), 0);
}

TEST_F(PicTest, FullyNestedPriorities) {
  init_like_seabios();
  pulse(3);
  pulse(5);
  EXPECT_EQ(pic.acknowledge(), 0x0B);  // IR3 beats IR5
  EXPECT_FALSE(pic.output());          // IR5 is lower than the in-service IR3
  pulse(1);
  EXPECT_TRUE(pic.output());  // IR1 is higher: it nests
  EXPECT_EQ(pic.acknowledge(), 0x09);
  EXPECT_EQ(pic.isr(0), 0x0A);
  out(0x20, 0x20);  // clears IR1, the highest in service
  EXPECT_EQ(pic.isr(0), 0x08);
  EXPECT_FALSE(pic.output());
  out(0x20, 0x20);
  EXPECT_TRUE(pic.output());
  EXPECT_EQ(pic.acknowledge(), 0x0D);
}

TEST_F(PicTest, SetPriorityAndRotateOnEoi) {
  init_like_seabios();
  out(0x20, 0xC4);  // set priority: IR4 lowest, so IR5 highest
  EXPECT_EQ(pic.lowest_priority(0), 4);
  pulse(3);
  pulse(6);
  EXPECT_EQ(pic.acknowledge(), 0x0E);  // IR6 ranks above IR3 now
  out(0x20, 0xA0);                     // rotate on non-specific EOI: IR6 becomes lowest
  EXPECT_EQ(pic.lowest_priority(0), 6);
  EXPECT_EQ(pic.acknowledge(), 0x0B);
  out(0x20, 0xE0 | 1);  // rotate on specific EOI for IR1 (ISR bit 1 was not set)
  EXPECT_EQ(pic.lowest_priority(0), 1);
  EXPECT_EQ(pic.isr(0), 0x08);
  out(0x20, 0x60 | 3);  // specific EOI IR3
  EXPECT_EQ(pic.isr(0), 0x00);
}

TEST_F(PicTest, RotatingPriorityRoundRobinsEqualDevices) {
  init_like_seabios();
  // With "rotate on non-specific EOI" each serviced IR drops to the bottom.
  std::vector<uint8_t> order;
  pulse(0);
  pulse(1);
  pulse(2 + 1);  // IR3
  for (int i = 0; i < 3; ++i) {
    order.push_back(pic.acknowledge());
    out(0x20, 0xA0);
    if (i == 0) pulse(0);  // IR0 again: now it ranks behind IR1 and IR3
  }
  EXPECT_EQ(order, (std::vector<uint8_t>{0x08, 0x09, 0x0B}));
  EXPECT_EQ(pic.acknowledge(), 0x08);
}

TEST_F(PicTest, SpecialMaskModeLetsLowerPrioritiesIn) {
  init_like_seabios();
  pulse(5);
  EXPECT_EQ(pic.acknowledge(), 0x0D);
  pulse(6);
  EXPECT_FALSE(pic.output());
  out(0x21, 0x20);  // mask IR5 (in service)
  EXPECT_FALSE(pic.output());
  out(0x20, 0x68);  // OCW3: ESMM + SMM
  EXPECT_TRUE(pic.special_mask_mode(0));
  EXPECT_TRUE(pic.output());
  EXPECT_EQ(pic.acknowledge(), 0x0E);
  out(0x20, 0x48);  // OCW3: ESMM, SMM cleared
  EXPECT_FALSE(pic.special_mask_mode(0));
  out(0x20, 0x28);  // OCW3 without ESMM leaves the mode alone
  EXPECT_FALSE(pic.special_mask_mode(0));
}

TEST_F(PicTest, PollCommandActsAsAcknowledge) {
  init_like_seabios();
  out(0x21, 0xFF);  // polled systems run with INT ignored; masks block polls too
  out(0x21, 0x00);
  pulse(4);
  out(0x20, 0x0C);  // OCW3 poll
  EXPECT_EQ(in(0x20), 0x84);
  EXPECT_EQ(pic.isr(0), 0x10);
  EXPECT_EQ(pic.irr(0), 0x00);
  out(0x20, 0x0C);
  EXPECT_EQ(in(0x20), 0x07);  // nothing requesting: bit 7 clear
  out(0x20, 0x20);
  // Poll is one-shot: the next read is the IRR again.
  pulse(6);
  EXPECT_EQ(in(0x20), 0x40);
}

TEST_F(PicTest, PollingTheSlaveWithdrawsTheCascadeRequest) {
  init_like_seabios();
  pulse(9);
  EXPECT_TRUE(pic.output());
  out(0xA0, 0x0C);
  EXPECT_EQ(in(0xA0), 0x81);
  EXPECT_EQ(pic.isr(1), 0x02);
  EXPECT_FALSE(pic.output());
}

TEST_F(PicTest, ReadRegisterSelectsIrrOrIsr) {
  init_like_seabios();
  pulse(1);
  pulse(7);
  pic.acknowledge();
  EXPECT_EQ(in(0x20), 0x80);  // IRR by default after init
  out(0x20, 0x0B);
  EXPECT_EQ(in(0x20), 0x02);  // ISR
  out(0x20, 0x08);            // RR=0: no change
  EXPECT_EQ(in(0x20), 0x02);
  out(0x20, 0x0A);
  EXPECT_EQ(in(0x20), 0x80);
}

TEST_F(PicTest, AutoEoiAndRotateInAutoEoi) {
  init_like_seabios(0x03, 0x03);  // uPM + AEOI
  pulse(2 + 2);                   // IR4
  PicOutput ack;
  EXPECT_EQ(pic.acknowledge(&ack), 0x0C);
  EXPECT_EQ(pic.isr(0), 0x00);
  EXPECT_EQ(ack.acked_irqs, 1u << 4);
  EXPECT_EQ(pic.lowest_priority(0), 7);
  out(0x20, 0x80);  // rotate in AEOI: set
  pulse(4);
  pic.acknowledge();
  EXPECT_EQ(pic.lowest_priority(0), 4);
  out(0x20, 0x00);  // rotate in AEOI: clear
  pulse(6);
  pic.acknowledge();
  EXPECT_EQ(pic.lowest_priority(0), 4);
  // Slave IRQ with AEOI on both chips.
  pulse(13);
  ack = {};
  EXPECT_EQ(pic.acknowledge(&ack), 0x75);
  EXPECT_EQ(ack.acked_irqs, (1u << 13) | (1u << 2));
  EXPECT_EQ(pic.isr(0) | pic.isr(1), 0);
}

TEST_F(PicTest, SpuriousIrq7WhenTheRequestVanishes) {
  init_like_seabios();
  EXPECT_EQ(pic.acknowledge(), 0x0F);  // nothing at all
  EXPECT_EQ(pic.isr(0), 0);
  out(0x4D0, 0x08);  // IRQ3 level
  pic.set_irq(3, true);
  EXPECT_TRUE(pic.output());
  pic.set_irq(3, false);  // line drops before INTA
  EXPECT_FALSE(pic.output());
  EXPECT_EQ(pic.acknowledge(), 0x0F);
  EXPECT_EQ(pic.isr(0), 0);
}

TEST_F(PicTest, SpuriousIrq15WhenTheSlaveRequestVanishes) {
  init_like_seabios();
  out(0x4D1, 0x04);  // IRQ10 level
  pic.set_irq(10, true);
  EXPECT_TRUE(pic.output());
  pic.set_irq(10, false);
  // Master IR2 latched the slave's edge: the master still interrupts.
  EXPECT_TRUE(pic.output());
  EXPECT_EQ(pic.acknowledge(), 0x77);
  EXPECT_EQ(pic.isr(0), 0x04);  // the master must still see an EOI
  EXPECT_EQ(pic.isr(1), 0x00);
}

TEST_F(PicTest, ElcrMasksKeepTimerKeyboardCascadeRtcFpuEdge) {
  out(0x4D0, 0xFF);
  out(0x4D1, 0xFF);
  EXPECT_EQ(in(0x4D0), 0xF8);
  EXPECT_EQ(in(0x4D1), 0xDE);
}

TEST_F(PicTest, LevelTriggeredIrqStaysPendingUntilTheLineDrops) {
  init_like_seabios();
  out(0x4D1, 0x02);  // IRQ9 level
  pic.set_irq(9, true);
  EXPECT_EQ(pic.acknowledge(), 0x71);
  EXPECT_EQ(pic.irr(1), 0x02);  // level request not cleared by INTA
  out(0xA0, 0x20);
  out(0x20, 0x20);
  EXPECT_TRUE(pic.output());  // still asserted
  EXPECT_EQ(pic.acknowledge(), 0x71);
  pic.set_irq(9, false);
  out(0xA0, 0x20);
  out(0x20, 0x20);
  EXPECT_FALSE(pic.output());
}

TEST_F(PicTest, EdgeNeedsLowToHighTransition) {
  init_like_seabios();
  pic.set_irq(1, true);
  EXPECT_EQ(pic.acknowledge(), 0x09);
  out(0x20, 0x20);
  pic.set_irq(1, true);  // still high
  EXPECT_FALSE(pic.output());
  pic.set_irq(1, false);
  pic.set_irq(1, true);
  EXPECT_TRUE(pic.output());
}

TEST_F(PicTest, MaskNotificationsCarryIrqNumbers) {
  init_like_seabios();
  EXPECT_EQ(out(0x21, 0x81).mask_changed_irqs, 0x0081);
  EXPECT_EQ(out(0xA1, 0x80).mask_changed_irqs, 0x8000);
  EXPECT_EQ(out(0xA1, 0x80).mask_changed_irqs, 0x0000);
  EXPECT_EQ(out(0x21, 0x80).mask_changed_irqs, 0x0001);
}

TEST_F(PicTest, Icw1ResetsStateAndAcksDroppedEdges) {
  init_like_seabios();
  out(0x21, 0x01);
  pulse(0);
  pulse(5);
  pic.acknowledge();  // IR5 in service, IR0 masked and pending
  out(0x20, 0xC2);    // some rotation
  PicOutput o = out(0x20, 0x11);
  EXPECT_EQ(o.acked_irqs, 0x0001);  // pending edge IR0 dropped
  EXPECT_EQ(o.mask_changed_irqs, 0x0001);
  EXPECT_EQ(pic.irr(0), 0);
  EXPECT_EQ(pic.isr(0), 0);
  EXPECT_EQ(pic.imr(0), 0);
  EXPECT_EQ(pic.lowest_priority(0), 7);
  EXPECT_FALSE(pic.output());
  out(0x21, 0x20);
  out(0x21, 0x04);
  out(0x21, 0x01);
  EXPECT_EQ(pic.irq_base(0), 0x20);
}

TEST_F(PicTest, SingleModeSkipsIcw3AndNoIcw4ClearsAeoi) {
  init_like_seabios(0x03);
  out(0x20, 0x12);  // ICW1: single, no ICW4
  out(0x21, 0x40);  // ICW2
  out(0x21, 0x01);  // already OCW1: masks IR0
  EXPECT_EQ(pic.imr(0), 0x01);
  pulse(1);
  EXPECT_EQ(pic.acknowledge(), 0x41);
  EXPECT_EQ(pic.isr(0), 0x02);  // AEOI cleared because IC4 = 0
}

TEST_F(PicTest, SpecialFullyNestedModeNestsSlaveRequests) {
  init_like_seabios(0x11);  // master SFNM
  pulse(12);
  EXPECT_EQ(pic.acknowledge(), 0x74);
  pulse(9);  // higher than IRQ12 on the slave
  EXPECT_TRUE(pic.output());
  EXPECT_EQ(pic.acknowledge(), 0x71);

  Pic plain;
  plain.pio_write(0x20, 0x11);
  plain.pio_write(0x21, 0x08);
  plain.pio_write(0x21, 0x04);
  plain.pio_write(0x21, 0x01);
  plain.set_irq(12, true);
  plain.acknowledge();
  plain.set_irq(9, true);
  EXPECT_FALSE(plain.output());  // IR2 in service blocks the cascade without SFNM
}

TEST_F(PicTest, UnsupportedModesAreReported) {
  PicOutput o = out(0x20, 0x19);  // LTIM
  ASSERT_NE(o.unsupported, nullptr);
  EXPECT_NE(std::string(o.unsupported).find("unsupported"), std::string::npos);
  out(0x21, 0x08);
  out(0x21, 0x04);
  o = out(0x21, 0x00);  // ICW4 with uPM = 0
  ASSERT_NE(o.unsupported, nullptr);
}

TEST_F(PicTest, HostileBytesOnEveryPort) {
  const uint16_t ports[] = {0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x22, 0x4D2};
  std::mt19937 rng(7);
  for (int i = 0; i < 300000; ++i) {
    uint16_t port = ports[rng() % 8];
    switch (rng() % 4) {
      case 0:
        pic.pio_write(port, static_cast<uint8_t>(rng()));
        break;
      case 1:
        in(port);
        break;
      case 2:
        pic.set_irq(rng() % 20, rng() & 1);
        break;
      default: {
        bool had_output = pic.output();
        uint8_t v = pic.acknowledge();
        uint8_t b0 = pic.irq_base(0), b1 = pic.irq_base(1);
        bool from_master = v >= b0 && v <= b0 + 7;
        bool from_slave = v >= b1 && v <= b1 + 7;
        ASSERT_TRUE(from_master || from_slave) << int(v);
        if (!had_output) {
          ASSERT_EQ(v, static_cast<uint8_t>(b0 + 7));
        }
        break;
      }
    }
    ASSERT_EQ(pic.elcr(0) & ~0xF8, 0);
    ASSERT_EQ(pic.elcr(1) & ~0xDE, 0);
  }
}

}  // namespace
}  // namespace apicv
