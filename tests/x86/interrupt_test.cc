#include "x86/interrupt.h"

#include <gtest/gtest.h>

namespace apicv::x86 {
namespace {

TEST(X2ApicLdr, ClusterInHighHalfOneHotBitInLowHalf) {
  // SDM 11.12.10.2: LDR[31:16] = x2APIC ID[19:4], LDR[15:0] = 1 << x2APIC ID[3:0].
  EXPECT_EQ(X2ApicLdr(0), 0x00000001u);
  EXPECT_EQ(X2ApicLdr(15), 0x00008000u);
  EXPECT_EQ(X2ApicLdr(16), 0x00010001u);
  EXPECT_EQ(X2ApicLdr(0x123), 0x00120008u);
}

TEST(DecodeIcr, XApicTakesDestinationFromIcr2Bits31To24) {
  // Fixed, logical, level-assert, edge, no shorthand, vector 0x41, dest 0x0F.
  InterruptRequest r = DecodeIcr(0x00004841, 0x0F000000, /*x2apic=*/false, 3);
  EXPECT_EQ(r.vector, 0x41);
  EXPECT_EQ(r.delivery_mode, DeliveryMode::kFixed);
  EXPECT_TRUE(r.dest_logical);
  EXPECT_TRUE(r.level);
  EXPECT_FALSE(r.trigger_level);
  EXPECT_EQ(r.dest_id, 0x0Fu);
  EXPECT_EQ(r.source_vcpu, 3);
}

TEST(DecodeIcr, X2ApicUsesFull32BitDestinationAndShorthand) {
  InterruptRequest r = DecodeIcr(0x000C0400 | 0x22, 0x00012345, /*x2apic=*/true, 0);
  EXPECT_EQ(r.delivery_mode, DeliveryMode::kNmi);
  EXPECT_EQ(r.shorthand, Shorthand::kAllExcludingSelf);
  EXPECT_EQ(r.dest_id, 0x00012345u);
}

TEST(X2ApicMsr, OffsetMapping) {
  EXPECT_EQ(X2ApicMsrFromOffset(kApicIcr), kMsrX2ApicIcr);
  EXPECT_EQ(X2ApicMsrFromOffset(kApicSelfIpi), kMsrX2ApicSelfIpi);
  EXPECT_EQ(OffsetFromX2ApicMsr(0x802), static_cast<uint32_t>(kApicId));
}

}  // namespace
}  // namespace apicv::x86
