// IOAPIC tests derived from the 82093AA datasheet (register map, IOREDTBL) and KVM's documented
// behaviour (apicv spec §5, §9; version 0x11, storm guard of 10000 EOIs / 10 ms).
#include "devices/ioapic.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace apicv {
namespace {

using x86::DeliveryMode;

class IoApicTest : public ::testing::Test {
 protected:
  void write_reg(uint8_t index, uint32_t value, IoApicOutput* out = nullptr) {
    uint32_t sel = index;
    ioapic.mmio_write(0x00, &sel, 4, now);
    IoApicOutput o = ioapic.mmio_write(0x10, &value, 4, now);
    if (out) *out = o;
  }
  uint32_t read_reg(uint8_t index) {
    uint32_t sel = index;
    ioapic.mmio_write(0x00, &sel, 4, now);
    uint32_t v = 0;
    ioapic.mmio_read(0x10, &v, 4, now);
    return v;
  }
  // Program RTE `pin` (high dword first, then low, as Linux does).
  IoApicOutput program(unsigned pin, uint32_t low, uint8_t dest) {
    IoApicOutput out;
    write_reg(static_cast<uint8_t>(0x11 + 2 * pin), static_cast<uint32_t>(dest) << 24);
    write_reg(static_cast<uint8_t>(0x10 + 2 * pin), low, &out);
    return out;
  }

  IoApic ioapic;
  uint64_t now = 1'000'000;
};

constexpr uint32_t kLevel = 1u << 15;
constexpr uint32_t kMask = 1u << 16;
constexpr uint32_t kRemoteIrr = 1u << 14;

TEST_F(IoApicTest, ResetValuesOfIdVersionAndRedirectionEntries) {
  EXPECT_EQ(read_reg(0x00), 0u);
  // Version 0x11, maximum redirection entry 23 in bits 23:16.
  EXPECT_EQ(read_reg(0x01), 0x00170011u);
  EXPECT_EQ(read_reg(0x02), 0u);
  for (unsigned pin = 0; pin < 24; ++pin) {
    EXPECT_EQ(read_reg(static_cast<uint8_t>(0x10 + 2 * pin)), kMask) << pin;
    EXPECT_EQ(read_reg(static_cast<uint8_t>(0x11 + 2 * pin)), 0u) << pin;
  }
}

TEST_F(IoApicTest, IdIsFourBitsAndArbitrationMirrorsIt) {
  write_reg(0x00, 0xFF00FFFF);
  EXPECT_EQ(read_reg(0x00), 0x0F000000u);
  EXPECT_EQ(read_reg(0x02), 0x0F000000u);
  write_reg(0x02, 0x05000000);  // read-only
  write_reg(0x01, 0);           // read-only
  EXPECT_EQ(read_reg(0x02), 0x0F000000u);
  EXPECT_EQ(read_reg(0x01), 0x00170011u);
}

TEST_F(IoApicTest, IoregselIsEightBitsAndUnknownIndicesReadAllOnes) {
  uint32_t sel = 0x12345678;
  ioapic.mmio_write(0x00, &sel, 4, now);
  uint32_t v = 0;
  ioapic.mmio_read(0x00, &v, 4, now);
  EXPECT_EQ(v, 0x78u);
  EXPECT_EQ(read_reg(0x03), 0xFFFFFFFFu);
  EXPECT_EQ(read_reg(0x0F), 0xFFFFFFFFu);
  EXPECT_EQ(read_reg(0x40), 0xFFFFFFFFu);  // would be RTE 24
  EXPECT_EQ(read_reg(0xFF), 0xFFFFFFFFu);
  EXPECT_EQ(read_reg(0x3E), kMask);  // RTE 23 exists
  write_reg(0x40, 0);                // ignored, no crash
}

TEST_F(IoApicTest, ReadOnlyAndReservedRteBitsIgnoreWrites) {
  write_reg(0x10, 0xFFFFFFFF);
  // Vector, delivery mode, dest mode, polarity, trigger, mask; not 12 (delivery status),
  // 14 (remote IRR) nor 31:17.
  EXPECT_EQ(read_reg(0x10), 0x0001AFFFu);
  write_reg(0x11, 0xFFFFFFFF);
  EXPECT_EQ(read_reg(0x11), 0xFF000000u);
}

TEST_F(IoApicTest, MmioAccessSizesAndOffsets) {
  uint8_t byte = 0x10;
  ioapic.mmio_write(0x00, &byte, 1, now);  // 1-byte writes are dropped
  EXPECT_EQ(ioapic.ioregsel(), 0u);
  uint64_t wide = 0xAAAAAAAA00000001ull;  // 8-byte write: low dword only
  ioapic.mmio_write(0x00, &wide, 8, now);
  EXPECT_EQ(ioapic.ioregsel(), 0x01u);
  uint64_t rd = ~0ull;
  ioapic.mmio_read(0x10, &rd, 8, now);
  EXPECT_EQ(rd, 0x00170011ull);
  uint16_t half = 0;
  ioapic.mmio_read(0x10, &half, 2, now);
  EXPECT_EQ(half, 0x0011u);
  uint32_t v = 0xDEADBEEF;
  ioapic.mmio_read(0x04, &v, 4, now);
  EXPECT_EQ(v, 0u);
  ioapic.mmio_read(0x40, &v, 4, now);  // no EOI register in version 0x11
  EXPECT_EQ(v, 0u);
}

TEST_F(IoApicTest, EdgeDeliveryNeedsARisingEdge) {
  program(1, 0x31, 3);
  IoApicOutput out = ioapic.set_irq(1, true, now);
  ASSERT_EQ(out.num_deliveries, 1);
  const IoApicDelivery& d = out.deliveries[0];
  EXPECT_EQ(d.pin, 1);
  EXPECT_EQ(d.irq.vector, 0x31);
  EXPECT_EQ(d.irq.delivery_mode, DeliveryMode::kFixed);
  EXPECT_FALSE(d.irq.dest_logical);
  EXPECT_FALSE(d.irq.trigger_level);
  EXPECT_TRUE(d.irq.level);
  EXPECT_EQ(d.irq.dest_id, 3u);
  EXPECT_EQ(d.irq.source_vcpu, -1);

  out = ioapic.set_irq(1, true, now);  // still high: no new edge
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_TRUE(out.coalesced);
  ioapic.set_irq(1, false, now);
  out = ioapic.set_irq(1, true, now);
  EXPECT_EQ(out.num_deliveries, 1);
  // Edge entries never get remote IRR.
  EXPECT_EQ(read_reg(0x12) & kRemoteIrr, 0u);
}

// kvm_ioapic_set_irq prints "(coalesced)" only for ioapic_set_irq() returning 0: an edge already
// pending. A masked pin or a level pin whose remote IRR is set returns -1 (not coalesced).
TEST_F(IoApicTest, OnlyARepeatedEdgeIsCoalesced) {
  program(2, 0x32 | kMask, 0);  // edge, masked
  IoApicOutput out = ioapic.set_irq(2, true, now);
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_FALSE(out.coalesced);
  ioapic.set_irq(2, false, now);
  program(4, 0x34 | kLevel, 0);
  out = ioapic.set_irq(4, true, now);
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_FALSE(out.coalesced);
  out = ioapic.set_irq(4, false, now);
  out = ioapic.set_irq(4, true, now);  // remote IRR still set: no delivery, not coalesced
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_FALSE(out.coalesced);
}

TEST_F(IoApicTest, RteFieldsReachTheRequest) {
  // Lowest priority, logical, level, destination 0xFF from bits 63:56.
  program(5, 0x45 | (1u << 8) | (1u << 11) | kLevel, 0xFF);
  IoApicOutput out = ioapic.set_irq(5, true, now);
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_EQ(out.deliveries[0].irq.delivery_mode, DeliveryMode::kLowestPriority);
  EXPECT_TRUE(out.deliveries[0].irq.dest_logical);
  EXPECT_TRUE(out.deliveries[0].irq.trigger_level);
  EXPECT_EQ(out.deliveries[0].irq.dest_id, 0xFFu);
  EXPECT_EQ(out.deliveries[0].irq.vector, 0x45);
}

TEST_F(IoApicTest, MaskedEdgeIsLostAndMaskChangesAreReported) {
  IoApicOutput out = program(2, 0x32 | kMask, 0);
  EXPECT_EQ(out.mask_changed_pins, 0u);  // was masked at reset, still masked
  EXPECT_TRUE(out.rte_changed);
  out = ioapic.set_irq(2, true, now);
  EXPECT_EQ(out.num_deliveries, 0);
  out = program(2, 0x32, 0);
  EXPECT_EQ(out.mask_changed_pins, 1u << 2);
  EXPECT_EQ(out.num_deliveries, 0);  // an edge seen while masked is not replayed
  out = program(2, 0x32 | kMask, 0);
  EXPECT_EQ(out.mask_changed_pins, 1u << 2);
}

TEST_F(IoApicTest, LevelSetsRemoteIrrAndEoiRedeliversWhileAsserted) {
  program(10, 0x40 | kLevel, 0);
  IoApicOutput out = ioapic.set_irq(10, true, now);
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_NE(read_reg(0x10 + 20) & kRemoteIrr, 0u);
  // Asserting again while remote IRR is set delivers nothing.
  EXPECT_EQ(ioapic.set_irq(10, true, now).num_deliveries, 0);

  out = ioapic.eoi(0x40, /*level_trigger=*/true, now);
  EXPECT_EQ(out.acked_pins, 1u << 10);
  ASSERT_EQ(out.num_deliveries, 1);  // line still high
  EXPECT_EQ(out.deliveries[0].pin, 10);
  EXPECT_NE(read_reg(0x10 + 20) & kRemoteIrr, 0u);

  ioapic.set_irq(10, false, now);
  out = ioapic.eoi(0x40, true, now);
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_EQ(read_reg(0x10 + 20) & kRemoteIrr, 0u);
}

TEST_F(IoApicTest, EoiOfOtherVectorOrEdgeTmrLeavesRemoteIrr) {
  program(10, 0x40 | kLevel, 0);
  ioapic.set_irq(10, true, now);
  IoApicOutput out = ioapic.eoi(0x41, true, now);
  EXPECT_EQ(out.acked_pins, 0u);
  EXPECT_NE(read_reg(0x10 + 20) & kRemoteIrr, 0u);
  // The LAPIC's TMR said edge: ack notifiers still run, remote IRR stays.
  out = ioapic.eoi(0x40, false, now);
  EXPECT_EQ(out.acked_pins, 1u << 10);
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_NE(read_reg(0x10 + 20) & kRemoteIrr, 0u);
}

TEST_F(IoApicTest, EoiAcksEveryPinSharingTheVectorIncludingEdge) {
  program(0, 0x30, 0);           // edge (PIT on GSI 0)
  program(4, 0x30 | kLevel, 0);  // level, same vector
  program(7, 0x30 | kMask, 0);   // masked, same vector
  IoApicOutput out = ioapic.eoi(0x30, false, now);
  EXPECT_EQ(out.acked_pins, (1u << 0) | (1u << 4) | (1u << 7));
}

TEST_F(IoApicTest, UnmaskingAnAssertedLevelLineDelivers) {
  program(9, 0x49 | kLevel | kMask, 1);
  EXPECT_EQ(ioapic.set_irq(9, true, now).num_deliveries, 0);
  IoApicOutput out = program(9, 0x49 | kLevel, 1);
  EXPECT_EQ(out.mask_changed_pins, 1u << 9);
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_EQ(out.deliveries[0].irq.vector, 0x49);
}

TEST_F(IoApicTest, MaskedLevelEoiDoesNotRedeliverUntilUnmasked) {
  program(9, 0x49 | kLevel, 1);
  ioapic.set_irq(9, true, now);
  program(9, 0x49 | kLevel | kMask, 1);
  IoApicOutput out = ioapic.eoi(0x49, true, now);
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_EQ(read_reg(0x10 + 18) & kRemoteIrr, 0u);
  out = program(9, 0x49 | kLevel, 1);
  EXPECT_EQ(out.num_deliveries, 1);
}

TEST_F(IoApicTest, SwitchingToEdgeClearsRemoteIrr) {
  program(3, 0x33 | kLevel, 0);
  ioapic.set_irq(3, true, now);
  EXPECT_NE(read_reg(0x16) & kRemoteIrr, 0u);
  program(3, 0x33, 0);
  EXPECT_EQ(read_reg(0x16) & kRemoteIrr, 0u);
}

TEST_F(IoApicTest, RemoteIrrCannotBeWrittenByTheGuest) {
  program(3, 0x33 | kLevel | kRemoteIrr, 0);
  EXPECT_EQ(read_reg(0x16) & kRemoteIrr, 0u);
  ioapic.set_irq(3, true, now);
  program(3, 0x33 | kLevel, 0);  // rewrite without bit 14: stays set
  EXPECT_NE(read_reg(0x16) & kRemoteIrr, 0u);
}

TEST_F(IoApicTest, StormGuardDefersTheTenThousandthRedelivery) {
  program(11, 0x51 | kLevel, 0);
  ASSERT_EQ(ioapic.set_irq(11, true, now).num_deliveries, 1);
  for (int i = 1; i < 10000; ++i) {
    IoApicOutput out = ioapic.eoi(0x51, true, now);
    ASSERT_EQ(out.num_deliveries, 1) << "EOI " << i;
  }
  IoApicOutput out = ioapic.eoi(0x51, true, now);
  EXPECT_EQ(out.num_deliveries, 0);
  EXPECT_EQ(out.acked_pins, 1u << 11);
  EXPECT_EQ(ioapic.next_deadline_ns(), now + 10'000'000);
  EXPECT_EQ(ioapic.poll(now + 9'999'999).num_deliveries, 0);
  out = ioapic.poll(now + 10'000'000);
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_EQ(out.deliveries[0].pin, 11);
  EXPECT_EQ(ioapic.next_deadline_ns(), UINT64_MAX);
  // The count starts over: the next 9999 EOIs re-deliver at once again.
  for (int i = 1; i < 10000; ++i) ASSERT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 1);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 0);
}

TEST_F(IoApicTest, StormCountResetsWhenTheLineDrops) {
  IoApic small(IoApicConfig{.storm_threshold = 3, .storm_delay_ns = 500});
  ioapic = small;
  program(11, 0x51 | kLevel, 0);
  ioapic.set_irq(11, true, now);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 1);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 1);
  ioapic.set_irq(11, false, now);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 0);  // count back to 0
  ioapic.set_irq(11, true, now);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 1);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 1);
  EXPECT_EQ(ioapic.eoi(0x51, true, now).num_deliveries, 0);  // third successive: deferred
  EXPECT_EQ(ioapic.next_deadline_ns(), now + 500);
  // Line dropped before the deadline: nothing to deliver then.
  ioapic.set_irq(11, false, now);
  EXPECT_EQ(ioapic.poll(now + 500).num_deliveries, 0);
}

TEST_F(IoApicTest, PolarityIsStoredButIgnoredByDefaultLikeKvm) {
  program(6, 0x36 | (1u << 13) | kLevel, 0);
  EXPECT_NE(read_reg(0x1C) & (1u << 13), 0u);
  EXPECT_EQ(ioapic.set_irq(6, true, now).num_deliveries, 1);
}

TEST_F(IoApicTest, HonorPolarityTreatsLevelsAsElectrical) {
  ioapic = IoApic(IoApicConfig{.honor_polarity = true});
  // Active-low line idles high: report that before unmasking.
  program(6, 0x36 | (1u << 13) | kLevel | kMask, 0);
  EXPECT_EQ(ioapic.set_irq(6, true, now).num_deliveries, 0);
  EXPECT_EQ(program(6, 0x36 | (1u << 13) | kLevel, 0).num_deliveries, 0);
  IoApicOutput out = ioapic.set_irq(6, false, now);  // pulled low = asserted
  ASSERT_EQ(out.num_deliveries, 1);
  EXPECT_EQ(ioapic.set_irq(6, true, now).num_deliveries, 0);  // deasserted
  EXPECT_EQ(ioapic.eoi(0x36, true, now).num_deliveries, 0);
  EXPECT_EQ(ioapic.set_irq(6, false, now).num_deliveries, 1);
  // Flipping the polarity of a low line to active-high deasserts it: the EOI finds it idle.
  program(6, 0x36 | kLevel, 0);
  EXPECT_EQ(ioapic.eoi(0x36, true, now).num_deliveries, 0);
  EXPECT_EQ(ioapic.irr() & (1u << 6), 0u);
}

TEST_F(IoApicTest, HandledVectorsCoverLevelAndNotifiedPins) {
  program(0, 0x30, 0);           // edge, PIT
  program(1, 0x31, 0);           // edge, no notifier
  program(4, 0x34 | kLevel, 1);  // level
  program(5, 0x35 | kLevel, 2);  // level, other destination
  std::bitset<256> v;
  ioapic.handled_vectors(v, 1u << 0, [](const x86::InterruptRequest& r) { return r.dest_id != 2; });
  EXPECT_TRUE(v.test(0x30));
  EXPECT_FALSE(v.test(0x31));
  EXPECT_TRUE(v.test(0x34));
  EXPECT_FALSE(v.test(0x35));
  EXPECT_EQ(v.count(), 2u);
}

TEST_F(IoApicTest, ResetMasksEverything) {
  program(4, 0x34 | kLevel, 1);
  ioapic.set_irq(4, true, now);
  ioapic.reset();
  EXPECT_EQ(ioapic.rte(4), 1ull << 16);
  EXPECT_EQ(ioapic.irr(), 0u);
}

TEST_F(IoApicTest, HostileMmioAndPinsNeverBreakInvariants) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 200000; ++i) {
    uint64_t value = rng();
    unsigned len = static_cast<unsigned>(rng() % 10);
    uint32_t offset = static_cast<uint32_t>(rng() % 0x120);
    IoApicOutput out;
    switch (rng() % 5) {
      case 0:
        out = ioapic.mmio_write(offset & (rng() & 1 ? 0xFF : 0x10), &value, len, now);
        break;
      case 1: {
        uint64_t buf = 0;
        out = ioapic.mmio_read(offset, &buf, len > 8 ? 8 : len, now);
        break;
      }
      case 2:
        out = ioapic.set_irq(static_cast<unsigned>(rng() % 40), rng() & 1, now);
        break;
      case 3:
        out = ioapic.eoi(static_cast<uint8_t>(rng()), rng() & 1, now);
        break;
      default:
        now += rng() % 1'000'000;
        out = ioapic.poll(now);
        break;
    }
    ASSERT_LE(out.num_deliveries, 24);
    ASSERT_EQ(out.acked_pins >> 24, 0u);
  }
  for (unsigned pin = 0; pin < 24; ++pin) {
    // Reserved bits 55:17 and delivery status never become set.
    EXPECT_EQ(ioapic.rte(pin) & 0x00FFFFFFFFFE1000ull, 0u) << pin;
  }
  EXPECT_EQ(read_reg(0x01), 0x00170011u);
}

}  // namespace
}  // namespace apicv
