// xAPIC register file through MMIO: reset values (SDM Table 11-1, 11.4.7.1 / spec §9.6), access
// sizes and alignment (spec §9.1), write masks (spec §9.3), SPIV software disable (SDM 11.4.7.2),
// and a hostile-input sweep.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <string>

#include "devices/lapic.h"
#include "lapic_test_util.h"

namespace apicv {
namespace {

using namespace x86;
using lapic_test::Read;
using lapic_test::SwEnable;
using lapic_test::Write;

constexpr uint32_t kLvts[] = {kApicLvtt, kApicLvtThmr, kApicLvtPc,
                              kApicLvt0, kApicLvt1,    kApicLvtErr};

TEST(LapicReset, PowerOnValuesOfAnApplicationProcessor) {
  Lapic apic(3, /*bsp=*/false, LapicConfig{});
  EXPECT_EQ(apic.get_apic_base(), 0xFEE00800u);  // enabled, not BSP, default base
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
  EXPECT_EQ(Read(apic, kApicId), 0x03000000u);
  EXPECT_EQ(Read(apic, kApicLvr), 0x00050014u);  // version 0x14, max LVT entry 5
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
  EXPECT_EQ(Read(apic, kApicApr), 0u);
  EXPECT_EQ(Read(apic, kApicPpr), 0u);
  EXPECT_EQ(Read(apic, kApicLdr), 0u);
  EXPECT_EQ(Read(apic, kApicDfr), 0xFFFFFFFFu);
  EXPECT_EQ(Read(apic, kApicSpiv), 0xFFu);  // software-disabled
  for (uint32_t off = 0x100; off < 0x280; off += 0x10) EXPECT_EQ(Read(apic, off), 0u) << off;
  EXPECT_EQ(Read(apic, kApicEsr), 0u);
  EXPECT_EQ(Read(apic, kApicIcr), 0u);
  EXPECT_EQ(Read(apic, kApicIcr2), 0u);
  for (uint32_t off : kLvts) EXPECT_EQ(Read(apic, off), 0x00010000u) << std::hex << off;
  EXPECT_EQ(Read(apic, kApicTmict), 0u);
  EXPECT_EQ(Read(apic, kApicTmcct), 0u);
  EXPECT_EQ(Read(apic, kApicTdcr), 0u);
  EXPECT_FALSE(apic.sw_enabled());
}

TEST(LapicReset, BspHasBspBitAndLint0ExtIntQuirk) {
  Lapic apic(0, /*bsp=*/true, LapicConfig{});
  EXPECT_EQ(apic.get_apic_base(), 0xFEE00900u);
  EXPECT_EQ(Read(apic, kApicLvt0), 0x700u);  // ExtINT, unmasked
  EXPECT_TRUE(apic.accept_pic_intr());

  LapicConfig no_quirk;
  no_quirk.lint0_reenabled_quirk = false;
  Lapic plain(0, true, no_quirk);
  EXPECT_EQ(Read(plain, kApicLvt0), 0x00010000u);
  EXPECT_FALSE(plain.accept_pic_intr());
}

TEST(LapicReset, XApicIdIsVcpuIdTruncatedTo8Bits) {
  Lapic apic(300, false, LapicConfig{});
  EXPECT_EQ(Read(apic, kApicId), 0x2C000000u);  // 300 & 0xFF = 0x2C
  EXPECT_EQ(apic.identity().xapic_id, 0x2C);
  EXPECT_EQ(apic.identity().x2apic_id, 300u);
}

TEST(LapicReset, LvrAdvertisesDirectedEoiOnlyWhenConfigured) {
  LapicConfig c;
  c.directed_eoi = true;
  Lapic apic(0, false, c);
  EXPECT_EQ(Read(apic, kApicLvr), 0x01050014u);
}

TEST(LapicConfigCheck, UnmodellableConfigurationsAreRefusedLoudly) {
  auto make = [](LapicConfig c) { Lapic apic(0, false, c); };
  LapicConfig c;
  c.maxphyaddr = 53;
  EXPECT_THROW(make(c), std::invalid_argument);
  c.maxphyaddr = 31;
  EXPECT_THROW(make(c), std::invalid_argument);
  c = LapicConfig{};
  c.bus_cycle_ns = 0;
  EXPECT_THROW(make(c), std::invalid_argument);
  c = LapicConfig{};
  c.directed_eoi = true;
  c.x2apic_supported = false;
  try {
    make(c);
    ADD_FAILURE() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos);
  }
  c = LapicConfig{};
  c.maxphyaddr = 52;
  EXPECT_NO_THROW(make(c));
}

TEST(LapicMmio, SubWordReadsInsideTheFirstFourBytes) {
  Lapic apic(0, false, LapicConfig{});
  uint8_t b[4] = {};
  apic.mmio_read(kApicLvr, b, 1, 0);
  EXPECT_EQ(b[0], 0x14);
  apic.mmio_read(kApicLvr + 2, b, 1, 0);
  EXPECT_EQ(b[0], 0x05);
  uint16_t h = 0xFFFF;
  apic.mmio_read(kApicLvr + 2, &h, 2, 0);
  EXPECT_EQ(h, 0x0005);
  apic.mmio_read(kApicLvr, &h, 2, 0);
  EXPECT_EQ(h, 0x0014);
  Write(apic, kApicTpr, 0x000000A5);
  apic.mmio_read(kApicTpr + 1, b, 1, 0);
  EXPECT_EQ(b[0], 0x00);
  apic.mmio_read(kApicTpr + 3, b, 1, 0);
  EXPECT_EQ(b[0], 0x00);
  apic.mmio_read(kApicTpr, b, 1, 0);
  EXPECT_EQ(b[0], 0xA5);
}

TEST(LapicMmio, ReadsCrossingTheRegisterWordOrOddSizedReturnZeros) {
  Lapic apic(0, false, LapicConfig{});
  uint32_t v = 0xDEADBEEF;
  apic.mmio_read(kApicLvr + 1, &v, 4, 0);  // crosses byte 3
  EXPECT_EQ(v, 0u);
  uint16_t h = 0xBEEF;
  apic.mmio_read(kApicLvr + 3, &h, 2, 0);
  EXPECT_EQ(h, 0u);
  uint8_t b = 0xEE;
  apic.mmio_read(kApicLvr + 4, &b, 1, 0);  // bytes 4..15 of a register slot are not decoded
  EXPECT_EQ(b, 0u);
  uint64_t q = ~0ull;
  apic.mmio_read(kApicLvr, &q, 8, 0);
  EXPECT_EQ(q, 0u);
  uint8_t three[3] = {1, 2, 3};
  apic.mmio_read(kApicLvr, three, 3, 0);
  EXPECT_EQ(three[0] | three[1] | three[2], 0);
}

TEST(LapicMmio, UnreadableAndOutOfRangeOffsetsReadZero) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_EQ(Read(apic, kApicEoi), 0u);
  EXPECT_EQ(Read(apic, kApicRrr), 0u);
  EXPECT_EQ(Read(apic, kApicLvtCmci), 0u);  // no CMCI
  EXPECT_EQ(Read(apic, kApicSelfIpi), 0u);  // x2APIC only
  EXPECT_EQ(Read(apic, 0x400), 0u);
  EXPECT_EQ(Read(apic, 0xFF0), 0u);
  EXPECT_EQ(Read(apic, 0x1000), 0u);
  EXPECT_EQ(Read(apic, 0xFFFFFFF0u), 0u);
}

TEST(LapicMmio, OnlyAlignedFourByteWritesTakeEffect) {
  Lapic apic(0, false, LapicConfig{});
  uint16_t h = 0x50;
  apic.mmio_write(kApicTpr, &h, 2, 0);
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
  uint8_t b = 0x50;
  apic.mmio_write(kApicTpr, &b, 1, 0);
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
  uint64_t q = 0x50;
  apic.mmio_write(kApicTpr, &q, 8, 0);
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
  Write(apic, kApicTpr + 4, 0x50);
  Write(apic, kApicTpr + 1, 0x50);
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
  Write(apic, kApicTpr, 0x50);
  EXPECT_EQ(Read(apic, kApicTpr), 0x50u);
}

TEST(LapicMmio, HardwareDisabledApicReadsAllOnesAndDropsWrites) {
  Lapic apic(1, false, LapicConfig{});
  ASSERT_FALSE(apic.set_apic_base(kApicDefaultBase, false).gp);  // EN=0
  EXPECT_EQ(Read(apic, kApicLvr), 0xFFFFFFFFu);
  uint8_t b = 0;
  apic.mmio_read(kApicTpr, &b, 1, 0);
  EXPECT_EQ(b, 0xFF);
  Write(apic, kApicTpr, 0x70);
  ASSERT_FALSE(apic.set_apic_base(kApicDefaultBase | kApicBaseEnable, false).gp);
  EXPECT_EQ(Read(apic, kApicTpr), 0u);
}

TEST(LapicMmio, X2ApicModeHidesTheMmioPage) {
  Lapic apic(1, false, LapicConfig{});
  lapic_test::EnterX2Apic(apic);
  EXPECT_EQ(Read(apic, kApicId), 0xFFFFFFFFu);
  Write(apic, kApicTpr, 0x70);
  EXPECT_EQ(apic.rdmsr_x2apic(0x808, 0).value, 0u);
}

TEST(LapicRegs, IdLdrDfrIcr2StoreOnlyTheirDefinedBits) {
  Lapic apic(0, false, LapicConfig{});
  LapicOutput o = Write(apic, kApicId, 0xFFFFFFFF);
  EXPECT_TRUE(o.map_dirty);
  EXPECT_EQ(Read(apic, kApicId), 0xFF000000u);
  EXPECT_EQ(apic.identity().xapic_id, 0xFF);
  o = Write(apic, kApicLdr, 0xFFFFFFFF);
  EXPECT_TRUE(o.map_dirty);
  EXPECT_EQ(Read(apic, kApicLdr), 0xFF000000u);
  o = Write(apic, kApicDfr, 0);
  EXPECT_TRUE(o.map_dirty);
  EXPECT_EQ(Read(apic, kApicDfr), 0x0FFFFFFFu);  // cluster model, reserved bits read 1
  EXPECT_EQ(apic.identity().dfr, 0x0FFFFFFFu);
  Write(apic, kApicDfr, 0xF0000000);
  EXPECT_EQ(Read(apic, kApicDfr), 0xFFFFFFFFu);
  Write(apic, kApicIcr2, 0xFFFFFFFF);
  EXPECT_EQ(Read(apic, kApicIcr2), 0xFF000000u);
  o = Write(apic, kApicTpr, 0xFFFFFFFF);
  EXPECT_FALSE(o.map_dirty);
  EXPECT_EQ(Read(apic, kApicTpr), 0xFFu);
}

TEST(LapicRegs, ReadOnlyRegistersIgnoreWrites) {
  Lapic apic(0, false, LapicConfig{});
  Write(apic, kApicLvr, 0);
  EXPECT_EQ(Read(apic, kApicLvr), 0x00050014u);
  Write(apic, kApicApr, 0xFF);
  EXPECT_EQ(Read(apic, kApicApr), 0u);
  Write(apic, kApicPpr, 0xFF);
  EXPECT_EQ(Read(apic, kApicPpr), 0u);
  Write(apic, kApicIrr, 0xFFFFFFFF);
  Write(apic, kApicIsr + 0x70, 0xFFFFFFFF);
  Write(apic, kApicTmr + 0x10, 0xFFFFFFFF);
  EXPECT_EQ(Read(apic, kApicIrr), 0u);
  EXPECT_EQ(Read(apic, kApicIsr + 0x70), 0u);
  EXPECT_EQ(Read(apic, kApicTmr + 0x10), 0u);
  Write(apic, kApicTmcct, 1234);
  EXPECT_EQ(Read(apic, kApicTmcct), 0u);
}

TEST(LapicRegs, SpivWriteMaskDependsOnDirectedEoi) {
  Lapic plain(0, false, LapicConfig{});
  Write(plain, kApicSpiv, 0xFFFFFFFF);
  EXPECT_EQ(Read(plain, kApicSpiv), 0x3FFu);
  LapicConfig c;
  c.directed_eoi = true;
  Lapic deoi(0, false, c);
  Write(deoi, kApicSpiv, 0xFFFFFFFF);
  EXPECT_EQ(Read(deoi, kApicSpiv), 0x13FFu);
}

TEST(LapicRegs, SpivEnableToggleMarksTheMapDirty) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_TRUE(Write(apic, kApicSpiv, 0x1FF).map_dirty);
  EXPECT_FALSE(Write(apic, kApicSpiv, 0x1FE).map_dirty);  // still enabled
  EXPECT_TRUE(Write(apic, kApicSpiv, 0x0FF).map_dirty);
}

TEST(LapicRegs, LvtWriteMasksWhileSoftwareEnabled) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  for (uint32_t off : kLvts) Write(apic, off, 0xFFFFFFFF);
  // vector | delivery status | mask, plus per-LVT fields (SDM Figure 11-8).
  EXPECT_EQ(Read(apic, kApicLvtt), 0x000710FFu);     // + timer mode 18:17
  EXPECT_EQ(Read(apic, kApicLvtThmr), 0x000117FFu);  // + delivery mode
  EXPECT_EQ(Read(apic, kApicLvtPc), 0x000117FFu);
  EXPECT_EQ(Read(apic, kApicLvt0), 0x0001F7FFu);  // + polarity, remote IRR, trigger
  EXPECT_EQ(Read(apic, kApicLvt1), 0x0001F7FFu);
  EXPECT_EQ(Read(apic, kApicLvtErr), 0x000110FFu);
  for (uint32_t off : kLvts) Write(apic, off, 0x00000031);
  for (uint32_t off : kLvts) EXPECT_EQ(Read(apic, off), 0x31u) << std::hex << off;
}

TEST(LapicRegs, LvttModeBitsWithoutTscDeadlineSupport) {
  LapicConfig c;
  c.tsc_deadline_supported = false;
  Lapic apic(0, false, c);
  SwEnable(apic);
  Write(apic, kApicLvtt, 0xFFFFFFFF);
  EXPECT_EQ(Read(apic, kApicLvtt), 0x000310FFu);  // only the periodic bit 17
}

TEST(LapicRegs, SoftwareDisableMasksEveryLvtAndForcesMaskOnWrites) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  for (uint32_t off : kLvts) Write(apic, off, 0x40);
  Write(apic, kApicSpiv, 0x0FF);
  for (uint32_t off : kLvts) EXPECT_EQ(Read(apic, off), 0x00010040u) << std::hex << off;
  Write(apic, kApicLvt1, 0x000004EF);  // NMI, unmasked: forced masked
  EXPECT_EQ(Read(apic, kApicLvt1), 0x000104EFu);
  // Re-enabling does not unmask anything by itself.
  SwEnable(apic);
  EXPECT_EQ(Read(apic, kApicLvt1), 0x000104EFu);
}

TEST(LapicRegs, TdcrStoresBits0To1And3) {
  Lapic apic(0, false, LapicConfig{});
  Write(apic, kApicTdcr, 0xFFFFFFFF);
  EXPECT_EQ(Read(apic, kApicTdcr), 0xBu);
  Write(apic, kApicTdcr, 0x4);
  EXPECT_EQ(Read(apic, kApicTdcr), 0x0u);
}

TEST(LapicRegs, IcrWriteSendsAndClearsDeliveryStatus) {
  Lapic apic(7, false, LapicConfig{});
  Write(apic, kApicIcr2, 0x5A123456);
  // Fixed, logical, assert, level trigger, vector 0xF1, delivery-status bit set by the guest.
  LapicOutput o = Write(apic, kApicIcr, 0x0000D9F1 | kIcrBusy);
  ASSERT_TRUE(o.ipi.has_value());
  EXPECT_EQ(o.ipi->vector, 0xF1);
  EXPECT_EQ(o.ipi->delivery_mode, DeliveryMode::kLowestPriority);
  EXPECT_TRUE(o.ipi->dest_logical);
  EXPECT_TRUE(o.ipi->level);
  EXPECT_TRUE(o.ipi->trigger_level);
  EXPECT_EQ(o.ipi->dest_id, 0x5Au);
  EXPECT_EQ(o.ipi->source_vcpu, 7);
  EXPECT_FALSE(o.ipi->source_x2apic);
  EXPECT_EQ(Read(apic, kApicIcr), 0x0000C9F1u);
  // Writing ICR2 alone sends nothing.
  EXPECT_FALSE(Write(apic, kApicIcr2, 0x01000000).ipi.has_value());
}

TEST(LapicRegs, IcrShorthandsAreDecoded) {
  Lapic apic(0, false, LapicConfig{});
  LapicOutput o = Write(apic, kApicIcr, 0x000C4500);  // all-excluding-self, INIT
  ASSERT_TRUE(o.ipi.has_value());
  EXPECT_EQ(o.ipi->shorthand, Shorthand::kAllExcludingSelf);
  EXPECT_EQ(o.ipi->delivery_mode, DeliveryMode::kInit);
  o = Write(apic, kApicIcr, 0x00040030);
  EXPECT_EQ(o.ipi->shorthand, Shorthand::kSelf);
}

TEST(LapicRegs, VectorBanksReadBackTheirWords) {
  Lapic apic(0, false, LapicConfig{});
  SwEnable(apic);
  ASSERT_TRUE(apic.accept_irq(lapic_test::Fixed(0x41, /*level_trigger=*/true)));
  ASSERT_TRUE(apic.accept_irq(lapic_test::Fixed(0xFF)));
  EXPECT_EQ(Read(apic, kApicIrr + 0x20), 0x2u);         // vector 0x41 = word 2 bit 1
  EXPECT_EQ(Read(apic, kApicIrr + 0x70), 0x80000000u);  // vector 0xFF = word 7 bit 31
  EXPECT_EQ(Read(apic, kApicTmr + 0x20), 0x2u);
  EXPECT_EQ(Read(apic, kApicTmr + 0x70), 0u);
  EXPECT_EQ(apic.get_interrupt(), 0xFF);
  EXPECT_EQ(Read(apic, kApicIsr + 0x70), 0x80000000u);
  EXPECT_EQ(Read(apic, kApicIrr + 0x70), 0u);
  EXPECT_EQ(apic.reg(kApicIsr + 0x70), 0x80000000u);
  EXPECT_EQ(apic.reg(kApicIrr + 0x20), 0x2u);
}

TEST(LapicIdentityView, ReflectsXApicRegistersAndModes) {
  Lapic apic(0x105, false, LapicConfig{});
  LapicIdentity id = apic.identity();
  EXPECT_EQ(id.vcpu_id, 0x105u);
  EXPECT_TRUE(id.hw_enabled);
  EXPECT_FALSE(id.sw_enabled);
  EXPECT_FALSE(id.x2apic);
  EXPECT_EQ(id.xapic_id, 0x05);
  EXPECT_EQ(id.x2apic_id, 0x105u);
  EXPECT_EQ(id.ldr, 0u);
  EXPECT_EQ(id.dfr, 0xFFFFFFFFu);
  SwEnable(apic);
  Write(apic, kApicLdr, 0x84000000);
  Write(apic, kApicDfr, 0x0FFFFFFF);
  id = apic.identity();
  EXPECT_TRUE(id.sw_enabled);
  EXPECT_EQ(id.ldr, 0x84000000u);
  EXPECT_EQ(id.dfr, 0x0FFFFFFFu);
  lapic_test::EnterX2Apic(apic);
  id = apic.identity();
  EXPECT_TRUE(id.x2apic);
  EXPECT_EQ(id.ldr, 0x00100020u);  // cluster 0x10, bit 5
  ASSERT_FALSE(apic.set_apic_base(kApicDefaultBase, false).gp);
  EXPECT_FALSE(apic.identity().hw_enabled);
}

TEST(LapicRegs, RawRegAccessorRejectsUnalignedAndOutOfRange) {
  Lapic apic(0, false, LapicConfig{});
  EXPECT_EQ(apic.reg(kApicLvr), 0x00050014u);
  EXPECT_EQ(apic.reg(kApicLvr + 4), 0u);
  EXPECT_EQ(apic.reg(0x400), 0u);
  EXPECT_EQ(apic.reg(0xFFFFFFFFu), 0u);
}

// Guest input is hostile: any sequence of accesses must leave a consistent APIC.
TEST(LapicHostile, RandomAccessesNeverBreakInvariants) {
  std::mt19937_64 rng(12345);
  LapicConfig c;
  c.directed_eoi = true;
  for (int round = 0; round < 4; ++round) {
    c.esr_sdm_mode = round & 1;
    c.tsc_deadline_supported = round & 2;
    Lapic apic(static_cast<uint32_t>(rng() & 0x3FF), /*bsp=*/false, c);
    uint64_t now = 0;
    int sw_enabled_steps = 0, x2apic_steps = 0, pending_steps = 0;
    for (int i = 0; i < 200000; ++i) {
      sw_enabled_steps += apic.sw_enabled();
      x2apic_steps += apic.x2apic_mode();
      pending_steps += apic.highest_irr() >= 0;
      now += rng() % 1000;
      const uint64_t r = rng();
      const uint32_t value = static_cast<uint32_t>(rng());
      switch (r % 8) {
        case 0:
        case 1: {
          uint8_t buf[16];
          apic.mmio_read(static_cast<uint32_t>(rng() % 0x1100), buf, (r >> 8) % 10, now);
          break;
        }
        case 2:
        case 3:
        case 4: {
          // Mostly the real registers, with the usual 4-byte size.
          const uint32_t off =
              (r >> 8) & 1 ? static_cast<uint32_t>((rng() % 0x40) << 4) : rng() % 0x1100;
          apic.mmio_write(off, &value, (r >> 16) & 3 ? 4 : (r >> 20) % 9, now);
          break;
        }
        case 5:
          apic.wrmsr_x2apic(0x800 + static_cast<uint32_t>(rng() % 0x110),
                            rng() & (r & 1 ? ~0ull : 0xFFFFFFFF), now);
          apic.rdmsr_x2apic(0x7F0 + static_cast<uint32_t>(rng() % 0x120), now);
          break;
        case 6:
          apic.set_apic_base(rng() & 0xFFFFFFFFFFFFFD00ull >> (rng() % 40), (r >> 8) & 1);
          apic.wrmsr_tsc_deadline(rng() % (now + 1000), now, now);
          break;
        case 7: {
          x86::InterruptRequest irq;
          irq.vector = static_cast<uint8_t>(value);
          irq.delivery_mode = static_cast<DeliveryMode>((value >> 8) & 7);
          irq.trigger_level = value & 0x8000;
          irq.level = value & 0x4000;
          apic.accept_irq(irq);
          apic.get_interrupt();
          apic.on_timer(now);
          break;
        }
      }
      // Invariants: LVR constant; software-disabled => every LVT masked; PPR matches TPR/ISR.
      ASSERT_EQ(apic.reg(kApicLvr), 0x01050014u);
      if (!apic.sw_enabled()) {
        for (uint32_t off : kLvts) ASSERT_TRUE(apic.reg(off) & kLvtMasked);
      }
      const uint32_t tpr = apic.reg(kApicTpr);
      const uint32_t isrv = apic.highest_isr() < 0 ? 0 : apic.highest_isr() & 0xF0;
      ASSERT_EQ(apic.ppr(), (tpr & 0xF0) >= isrv ? tpr : isrv);
      ASSERT_LE(tpr, 0xFFu);
      ASSERT_NE(apic.mode(), ApicMode::kInvalid);
      // TMCCT never exceeds TMICT (SDM 11.5.4), whatever the timer mode and divisor.
      if (apic.mode() == ApicMode::kXApic) {
        ASSERT_LE(Read(apic, kApicTmcct, now), apic.reg(kApicTmict));
      }
    }
    // The sweep must actually reach the interesting states.
    EXPECT_GT(sw_enabled_steps, 1000);
    EXPECT_GT(x2apic_steps, 1000);
    EXPECT_GT(pending_steps, 1000);
  }
}

}  // namespace
}  // namespace apicv
