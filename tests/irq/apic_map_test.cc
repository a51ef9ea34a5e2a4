// ApicMap: physical and logical lookups and the aliasing results (spec §6.2-§6.4).
#include "irq/apic_map.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "topology.h"

namespace apicv::irq {
namespace {

using testing::ClusterLdr;
using testing::FlatLdr;
using testing::X2Apic;
using testing::X2ApicVcpus;
using testing::XApic;

TEST(ApicMapTest, PhysicalXApicAtResetIds) {
  std::vector<ApicView> v = {XApic(0), XApic(1), XApic(2), XApic(3)};
  ApicMap map(v);
  ASSERT_TRUE(map.valid());
  EXPECT_EQ(map.max_apic_id(), 255u);  // always room for every xAPIC ID
  for (int i = 0; i < 4; ++i) EXPECT_EQ(map.PhysicalLookup(i), i);
  EXPECT_EQ(map.PhysicalLookup(4), ApicMap::kNone);
  EXPECT_EQ(map.PhysicalLookup(0x100), ApicMap::kNone);
  EXPECT_EQ(map.PhysicalLookup(0xFFFFFFFF), ApicMap::kNone);
  EXPECT_EQ(map.flags(), ApicMapFlags{});
  EXPECT_EQ(map.logical_mode(), LogicalMode::kSwDisabled);  // every LDR is 0
}

TEST(ApicMapTest, PhysicalUsesWrittenXApicId) {
  std::vector<ApicView> v = {XApic(0), XApic(1)};
  v[1].xapic_id = 9;
  ApicMap map(v);
  EXPECT_EQ(map.PhysicalLookup(9), 1);
  EXPECT_EQ(map.PhysicalLookup(1), ApicMap::kNone);
  EXPECT_TRUE(map.flags().xapic_id_mismatch);
  EXPECT_FALSE(map.flags().phys_id_aliased);
}

TEST(ApicMapTest, X2ApicMapGrowsToLargestPresentId) {
  std::vector<ApicView> v = X2ApicVcpus(300);
  ApicMap map(v);
  EXPECT_EQ(map.max_apic_id(), 299u);
  EXPECT_EQ(map.PhysicalLookup(299), 299);
  EXPECT_EQ(map.PhysicalLookup(300), ApicMap::kNone);
  v.push_back(X2Apic(5000));
  v.back().present = false;  // a disabled APIC does not size the map
  map.Rebuild(v);
  EXPECT_EQ(map.max_apic_id(), 299u);
}

TEST(ApicMapTest, DuplicateXApicIdDisablesMap) {
  std::vector<ApicView> v = {XApic(0), XApic(1), XApic(2)};
  v[2].xapic_id = 1;
  ApicMap map(v);
  EXPECT_FALSE(map.valid());
  EXPECT_TRUE(map.flags().phys_id_aliased);
  EXPECT_TRUE(map.flags().logical_id_aliased);
  EXPECT_TRUE(map.flags().xapic_id_mismatch);
}

TEST(ApicMapTest, NotPresentApicDoesNotAlias) {
  std::vector<ApicView> v = {XApic(0), XApic(1)};
  v[1].xapic_id = 0;
  v[1].present = false;
  ApicMap map(v);
  EXPECT_TRUE(map.valid());
  EXPECT_FALSE(map.flags().xapic_id_mismatch);  // only present APICs are examined
}

TEST(ApicMapTest, XApicIdTruncationIsNotAMismatch) {
  // vCPU 256 resets to xAPIC ID (u8)256 = 0.
  std::vector<ApicView> v = {XApic(256), XApic(1)};
  ApicMap map(v);
  EXPECT_TRUE(map.valid());
  EXPECT_FALSE(map.flags().xapic_id_mismatch);
  EXPECT_EQ(map.PhysicalLookup(0), 0);
  EXPECT_EQ(map.max_apic_id(), 256u);
  EXPECT_EQ(map.PhysicalLookup(256), ApicMap::kNone);  // strict: no hotplug hack
  // ...but with vCPU 0 also in xAPIC mode the truncated IDs alias.
  v.push_back(XApic(0));
  map.Rebuild(v);
  EXPECT_TRUE(map.flags().phys_id_aliased);
  EXPECT_FALSE(map.flags().xapic_id_mismatch);
}

TEST(ApicMapTest, X2ApicModeClearsMismatch) {
  std::vector<ApicView> v = {XApic(0), XApic(1)};
  v[1].xapic_id = 7;
  ApicMap map;
  EXPECT_TRUE(map.Rebuild(v));
  EXPECT_TRUE(map.flags().xapic_id_mismatch);
  EXPECT_FALSE(map.Rebuild(v));  // same answer: no flag change reported
  v[1].x2apic = true;            // the x2APIC ID is the vcpu_id; the xAPIC ID no longer counts
  EXPECT_TRUE(map.Rebuild(v));
  EXPECT_FALSE(map.flags().xapic_id_mismatch);
  EXPECT_EQ(map.PhysicalLookup(1), 1);
}

TEST(ApicMapTest, FlatLogical) {
  std::vector<ApicView> v;
  for (unsigned i = 0; i < 8; ++i) v.push_back(XApic(i, FlatLdr(7 - i)));
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kXApicFlat);
  ApicMap::LogicalDest d;
  ASSERT_TRUE(map.GetLogicalDest(0x05, &d));
  EXPECT_EQ(d.mask, 0x05);
  EXPECT_EQ(d.cluster[0], 7);
  EXPECT_EQ(d.cluster[2], 5);
  ASSERT_TRUE(map.GetLogicalDest(0x1180, &d));  // only bits 7:0 count in flat mode
  EXPECT_EQ(d.mask, 0x80);
  EXPECT_EQ(d.cluster[7], 0);
  EXPECT_FALSE(map.flags().logical_id_aliased);
}

TEST(ApicMapTest, ClusterLogical) {
  std::vector<ApicView> v;
  for (unsigned i = 0; i < 60; ++i) v.push_back(XApic(i, ClusterLdr(i / 4, i % 4), kDfrCluster));
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kXApicCluster);
  ApicMap::LogicalDest d;
  ASSERT_TRUE(map.GetLogicalDest(0x3A, &d));  // cluster 3, members 1 and 3
  EXPECT_EQ(d.mask, 0xA);
  EXPECT_EQ(d.cluster[1], 13);
  EXPECT_EQ(d.cluster[3], 15);
  ASSERT_TRUE(map.GetLogicalDest(0xF1, &d));  // cluster 15 is empty
  EXPECT_EQ(d.cluster[0], ApicMap::kNone);
}

TEST(ApicMapTest, MultiBitLdrDisablesLogicalMapOnly) {
  std::vector<ApicView> v = {XApic(0, FlatLdr(0)), XApic(1, FlatLdr(1) | FlatLdr(2))};
  ApicMap map(v);
  EXPECT_TRUE(map.valid());
  EXPECT_EQ(map.logical_mode(), LogicalMode::kMapDisabled);
  EXPECT_TRUE(map.flags().logical_id_aliased);
  EXPECT_FALSE(map.flags().phys_id_aliased);
  ApicMap::LogicalDest d;
  EXPECT_FALSE(map.GetLogicalDest(0x01, &d));
  EXPECT_EQ(map.PhysicalLookup(1), 1);
}

TEST(ApicMapTest, SameLogicalIdTwiceDisablesLogicalMap) {
  std::vector<ApicView> v = {XApic(0, FlatLdr(3)), XApic(1, FlatLdr(3))};
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kMapDisabled);
  EXPECT_TRUE(map.flags().logical_id_aliased);
}

TEST(ApicMapTest, MixedFlatAndClusterDisablesLogicalMap) {
  std::vector<ApicView> v = {XApic(0, FlatLdr(0)), XApic(1, ClusterLdr(0, 1), kDfrCluster)};
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kMapDisabled);
  EXPECT_TRUE(map.flags().logical_id_aliased);
}

TEST(ApicMapTest, MixedXApicAndX2ApicDisablesLogicalMap) {
  std::vector<ApicView> v = {X2Apic(0), XApic(1, FlatLdr(1))};
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kMapDisabled);
  EXPECT_FALSE(map.flags().phys_id_aliased);
}

TEST(ApicMapTest, SoftwareDisabledOrZeroLdrDoesNotCount) {
  std::vector<ApicView> v = {XApic(0, FlatLdr(0)), XApic(1, ClusterLdr(0, 1), kDfrCluster),
                             XApic(2, 0, kDfrCluster), XApic(3, FlatLdr(0))};
  v[1].sw_enabled = false;  // a different mode, but software-disabled
  v[3].sw_enabled = false;  // would alias vCPU 0's logical ID
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kXApicFlat);
  EXPECT_FALSE(map.flags().logical_id_aliased);
}

TEST(ApicMapTest, X2ApicLogicalReusesPhysicalMap) {
  std::vector<ApicView> v = X2ApicVcpus(40);
  ApicMap map(v);
  EXPECT_EQ(map.logical_mode(), LogicalMode::kX2Apic);
  ApicMap::LogicalDest d;
  ASSERT_TRUE(map.GetLogicalDest((2u << 16) | 0x5, &d));
  EXPECT_EQ(d.mask, 0x5);
  EXPECT_EQ(d.cluster[0], 32);
  EXPECT_EQ(d.cluster[2], 34);
  // The map always spans IDs 0..255, so cluster 2 keeps all 16 slots (32..47, 40+ empty).
  ASSERT_TRUE(map.GetLogicalDest((2u << 16) | 0xFFFF, &d));
  EXPECT_EQ(d.mask, 0xFFFF);
  EXPECT_EQ(d.cluster[8], ApicMap::kNone);
  // Cluster 0xFFFF lies beyond the map.
  ASSERT_TRUE(map.GetLogicalDest(0xFFFFFFFF, &d));
  EXPECT_EQ(d.mask, 0);
  // The last cluster of the 256-entry floor is 15 (IDs 240..255).
  ASSERT_TRUE(map.GetLogicalDest((15u << 16) | 0x8000, &d));
  EXPECT_EQ(d.mask, 0x8000);
  EXPECT_EQ(d.cluster[15], ApicMap::kNone);
}

TEST(ApicMapTest, X2ApicLogicalClipsLastCluster) {
  std::vector<ApicView> v = X2ApicVcpus(300);  // max ID 299: cluster 18 holds 288..299 only
  ApicMap map(v);
  ApicMap::LogicalDest d;
  ASSERT_TRUE(map.GetLogicalDest((18u << 16) | 0xFFFF, &d));
  EXPECT_EQ(d.mask, 0x0FFF);
  EXPECT_EQ(d.cluster[11], 299);
  ASSERT_TRUE(map.GetLogicalDest((19u << 16) | 0x1, &d));
  EXPECT_EQ(d.mask, 0);
}

TEST(ApicMapTest, X2ApicFormatHotplugHack) {
  std::vector<ApicView> v = {XApic(0), XApic(300), XApic(44)};
  // vCPU 300 resets to xAPIC ID 44 and aliases vCPU 2: strict mode gives up...
  ApicMap strict(v);
  EXPECT_FALSE(strict.valid());
  // ...the hotplug hack maps it by x2APIC ID and ignores the xAPIC alias (first one wins).
  ApicMap hack(v, ApicMapOptions{.x2apic_format = true});
  ASSERT_TRUE(hack.valid());
  EXPECT_EQ(hack.PhysicalLookup(300), 1);
  EXPECT_EQ(hack.PhysicalLookup(44), 1);
  EXPECT_EQ(hack.PhysicalLookup(0), 0);
  EXPECT_FALSE(hack.flags().phys_id_aliased);
}

TEST(ApicMapTest, OversizedVcpuIdIsRejected) {
  std::vector<ApicView> v = {X2Apic(0), X2Apic(ApicMap::kMaxApicId + 1)};
  ApicMap map;
  try {
    map.Rebuild(v);
    FAIL() << "expected length_error";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported"), std::string::npos);
  }
}

}  // namespace
}  // namespace apicv::irq
