// Slow matcher: kvm_apic_match_dest semantics (spec §6.5, SDM 11.6.2, 11.12.9).
#include "irq/match_dest.h"

#include <gtest/gtest.h>

#include "topology.h"

namespace apicv::irq {
namespace {

using testing::ClusterLdr;
using testing::FlatLdr;
using testing::X2Apic;
using testing::XApic;
using x86::Shorthand;

bool Phys(const ApicView& t, uint32_t dest, const ApicView* src = nullptr, bool quirk_off = false) {
  return MatchDest(t, 5, src, 9, Shorthand::kNone, dest, false, quirk_off);
}
bool Logical(const ApicView& t, uint32_t dest, const ApicView* src = nullptr) {
  return MatchDest(t, 5, src, 9, Shorthand::kNone, dest, true);
}

TEST(MatchDestTest, PhysicalXApic) {
  ApicView t = XApic(5);
  ApicView src = XApic(9);
  EXPECT_TRUE(Phys(t, 5, &src));
  EXPECT_FALSE(Phys(t, 6, &src));
  EXPECT_TRUE(Phys(t, 0xFF, &src));  // xAPIC broadcast
  t.xapic_id = 0x20;                 // a written ID replaces the vcpu_id for 8-bit destinations
  EXPECT_TRUE(Phys(t, 0x20, &src));
  EXPECT_FALSE(Phys(t, 5, &src));
}

TEST(MatchDestTest, PhysicalHotplugHackAbove8Bits) {
  ApicView t = XApic(300);  // xAPIC ID 44
  EXPECT_TRUE(Phys(t, 44));
  EXPECT_TRUE(Phys(t, 300));  // destination > 0xFF compares the x2APIC ID
  EXPECT_FALSE(Phys(t, 301));
  EXPECT_FALSE(Phys(t, 0xFFFFFFFF));  // not an xAPIC broadcast
}

TEST(MatchDestTest, PhysicalX2Apic) {
  ApicView t = X2Apic(0x123);
  ApicView src = X2Apic(9);
  EXPECT_TRUE(Phys(t, 0x123, &src));
  EXPECT_FALSE(Phys(t, 0x23, &src));
  EXPECT_TRUE(Phys(t, 0xFFFFFFFF, &src));
  EXPECT_FALSE(Phys(t, 0xFF, &src));  // an IPI to 0xFF is just ID 255 in x2APIC mode
}

TEST(MatchDestTest, X2ApicBroadcastQuirkForIoApicAndMsi) {
  ApicView t = X2Apic(7);
  EXPECT_TRUE(Phys(t, 0xFF));  // no source: 0xFF is widened to 0xFFFFFFFF
  EXPECT_TRUE(Logical(t, 0xFF));
  EXPECT_FALSE(Phys(t, 0xFF, nullptr, /*quirk_off=*/true));
  EXPECT_EQ(ApicMda(t, 0xFF, false, false), 0xFFFFFFFFu);
  EXPECT_EQ(ApicMda(t, 0xFF, true, false), 0xFFu);
  EXPECT_EQ(ApicMda(XApic(7), 0xFF, false, false), 0xFFu);
  // vCPU 255 in x2APIC mode is still reachable by an IPI to 255.
  ApicView t255 = X2Apic(255);
  ApicView src = X2Apic(0);
  EXPECT_TRUE(Phys(t255, 0xFF, &src));
}

TEST(MatchDestTest, LogicalFlat) {
  ApicView t = XApic(5, FlatLdr(0) | FlatLdr(1));
  EXPECT_TRUE(Logical(t, 0x02));
  EXPECT_TRUE(Logical(t, 0x81));
  EXPECT_FALSE(Logical(t, 0x04));
  EXPECT_TRUE(Logical(t, 0xFF));
  ApicView zero = XApic(5, 0);
  EXPECT_FALSE(Logical(zero, 0x7F));
  EXPECT_TRUE(Logical(zero, 0xFF));  // broadcast reaches an APIC with no logical ID
}

TEST(MatchDestTest, LogicalCluster) {
  ApicView t = XApic(5, ClusterLdr(2, 0), kDfrCluster);
  EXPECT_TRUE(Logical(t, 0x21));
  EXPECT_TRUE(Logical(t, 0x2F));
  EXPECT_FALSE(Logical(t, 0x22));
  EXPECT_FALSE(Logical(t, 0x31));
  EXPECT_FALSE(Logical(t, 0x121));  // the cluster compare uses all destination bits
  EXPECT_TRUE(Logical(t, 0xFF));
}

TEST(MatchDestTest, LogicalUndefinedDfrModelMatchesOnlyBroadcast) {
  ApicView t = XApic(5, FlatLdr(0), 0x7FFFFFFF);
  EXPECT_FALSE(Logical(t, 0x01));
  EXPECT_FALSE(Logical(t, 0x71));
  EXPECT_TRUE(Logical(t, 0xFF));
}

TEST(MatchDestTest, LogicalX2Apic) {
  ApicView t = X2Apic(37);  // cluster 2, member bit 5
  EXPECT_TRUE(Logical(t, (2u << 16) | 0x20));
  EXPECT_TRUE(Logical(t, (2u << 16) | 0xFFFF));
  EXPECT_FALSE(Logical(t, (1u << 16) | 0x20));
  EXPECT_FALSE(Logical(t, (2u << 16) | 0x10));
  EXPECT_TRUE(Logical(t, 0xFFFFFFFF));
  // A stale raw LDR in the view is ignored: x2APIC LDR is derived from the ID.
  t.ldr = 0;
  EXPECT_TRUE(Logical(t, (2u << 16) | 0x20));
}

TEST(MatchDestTest, Shorthands) {
  ApicView a = XApic(0);
  ApicView b = XApic(1);
  EXPECT_TRUE(MatchDest(a, 0, &a, 0, Shorthand::kSelf, 0x55, false));
  EXPECT_FALSE(MatchDest(b, 1, &a, 0, Shorthand::kSelf, 0x55, false));
  EXPECT_FALSE(MatchDest(a, 0, nullptr, -1, Shorthand::kSelf, 0, false));
  EXPECT_TRUE(MatchDest(a, 0, &a, 0, Shorthand::kAllIncludingSelf, 0x55, false));
  EXPECT_TRUE(MatchDest(b, 1, &a, 0, Shorthand::kAllIncludingSelf, 0x55, true));
  EXPECT_FALSE(MatchDest(a, 0, &a, 0, Shorthand::kAllExcludingSelf, 0x55, false));
  EXPECT_TRUE(MatchDest(b, 1, &a, 0, Shorthand::kAllExcludingSelf, 0x55, false));
  // The destination field is ignored with a shorthand.
  EXPECT_TRUE(MatchDest(b, 1, &a, 0, Shorthand::kAllExcludingSelf, 0x0, true));
}

}  // namespace
}  // namespace apicv::irq
