// MSI address/data decode (SDM 11.11).
#include "irq/msi.h"

#include <gtest/gtest.h>

namespace apicv::irq {
namespace {

TEST(MsiTest, AddressRange) {
  EXPECT_TRUE(IsMsiAddress(0xFEE00000));
  EXPECT_TRUE(IsMsiAddress(0xFEEFFFFC));
  EXPECT_FALSE(IsMsiAddress(0xFED00000));
  EXPECT_FALSE(IsMsiAddress(0xFEF00000));
}

TEST(MsiTest, PhysicalFixedEdge) {
  x86::InterruptRequest r = DecodeMsi(0xFEE03000, 0x0041);
  EXPECT_EQ(r.dest_id, 3u);
  EXPECT_FALSE(r.dest_logical);
  EXPECT_FALSE(r.msi_redir_hint);
  EXPECT_EQ(r.vector, 0x41);
  EXPECT_EQ(r.delivery_mode, x86::DeliveryMode::kFixed);
  EXPECT_FALSE(r.trigger_level);
  EXPECT_TRUE(r.level);
  EXPECT_FALSE(r.from_ipi);
  EXPECT_EQ(r.source_vcpu, -1);
  EXPECT_EQ(r.shorthand, x86::Shorthand::kNone);
}

TEST(MsiTest, LogicalLowestPriorityLevel) {
  // dest 0xA5, RH (bit 3), DM logical (bit 2); data: vector 0xEC, mode 001, level, trigger.
  x86::InterruptRequest r = DecodeMsi(0xFEEA500C, 0xC1EC);
  EXPECT_EQ(r.dest_id, 0xA5u);
  EXPECT_TRUE(r.dest_logical);
  EXPECT_TRUE(r.msi_redir_hint);
  EXPECT_EQ(r.vector, 0xEC);
  EXPECT_EQ(r.delivery_mode, x86::DeliveryMode::kLowestPriority);
  EXPECT_TRUE(r.trigger_level);
}

TEST(MsiTest, AllDeliveryModes) {
  for (uint32_t m = 0; m < 8; ++m) {
    EXPECT_EQ(static_cast<uint32_t>(DecodeMsi(0xFEE00000, m << 8).delivery_mode), m);
  }
}

TEST(MsiTest, ExtendedDestinationId) {
  const uint64_t addr = 0xFEE00000 | (0x12u << 12) | (0x55u << 5);
  EXPECT_EQ(DecodeMsi(addr, 0).dest_id, 0x12u);  // bits 11:5 ignored by default
  EXPECT_EQ(DecodeMsi(addr, 0, MsiOptions{.extended_dest_id = true}).dest_id, 0x5512u);
}

TEST(MsiTest, X2ApicFormatHighAddress) {
  const uint64_t addr = (0xABCDEFull << 40) | 0xFEE34000;
  EXPECT_EQ(DecodeMsi(addr, 0).dest_id, 0x34u);
  EXPECT_EQ(DecodeMsi(addr, 0, MsiOptions{.x2apic_format = true}).dest_id, 0xABCDEF34u);
}

TEST(MsiTest, HostileBitsDoNotLeak) {
  x86::InterruptRequest r = DecodeMsi(~0ull, ~0u);
  EXPECT_EQ(r.dest_id, 0xFFu);
  EXPECT_EQ(r.vector, 0xFF);
  EXPECT_EQ(r.delivery_mode, x86::DeliveryMode::kExtInt);
}

}  // namespace
}  // namespace apicv::irq
