// APIC bus routing: fast path, slow path, lowest priority, downgrade, hostile input (spec §6.6).
#include "irq/apic_bus.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "topology.h"

namespace apicv::irq {
namespace {

using testing::ClusterLdr;
using testing::FlatLdr;
using testing::X2Apic;
using testing::X2ApicVcpus;
using testing::XApic;
using x86::DeliveryMode;
using x86::InterruptRequest;
using x86::Shorthand;

InterruptRequest Ipi(int source, uint32_t dest, bool logical, uint8_t vector = 0x40,
                     DeliveryMode mode = DeliveryMode::kFixed, bool x2apic = false) {
  InterruptRequest r;
  r.vector = vector;
  r.delivery_mode = mode;
  r.dest_logical = logical;
  r.dest_id = dest;
  r.from_ipi = true;
  r.source_x2apic = x2apic;
  r.source_vcpu = source;
  return r;
}

InterruptRequest Msi(uint32_t dest, bool logical, uint8_t vector = 0x40,
                     DeliveryMode mode = DeliveryMode::kFixed) {
  InterruptRequest r = Ipi(-1, dest, logical, vector, mode);
  r.from_ipi = false;
  return r;
}

std::vector<int> Targets(const TargetList& t) {
  return {t.targets().begin(), t.targets().end()};
}

// Eight flat-mode APICs; vCPU i owns logical bit 7-i so slot order differs from vCPU order.
std::vector<ApicView> ReversedFlat() {
  std::vector<ApicView> v;
  for (unsigned i = 0; i < 8; ++i) v.push_back(XApic(i, FlatLdr(7 - i)));
  return v;
}

TEST(ApicBusTest, FastPhysicalSingleTarget) {
  auto v = X2ApicVcpus(16);
  ApicMap map(v);
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 9, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out), 1);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(Targets(out), std::vector<int>{9});
}

// The cost model `apicv bench route` checks: the fast path looks at one map slot whatever the
// VM size, the slow path matches the destination against every vCPU.
TEST(ApicBusTest, FastPathExaminesOneEntrySlowPathEveryVcpu) {
  for (int n : {1, 16, 256}) {
    auto v = X2ApicVcpus(n);
    ApicMap map(v);
    TargetList out;
    const auto req = Ipi(0, static_cast<uint32_t>(n - 1), false, 0x40, DeliveryMode::kFixed, true);
    EXPECT_EQ(Route(req, &map, v, {}, out), 1);
    EXPECT_TRUE(out.fast_path);
    EXPECT_EQ(out.examined, 1) << n << " vCPUs";
    EXPECT_EQ(Route(req, nullptr, v, {}, out), 1);
    EXPECT_FALSE(out.fast_path);
    EXPECT_EQ(out.examined, n) << n << " vCPUs";
  }
  // x2APIC logical, one destination bit: one cluster slot.
  auto v = X2ApicVcpus(64);
  ApicMap map(v);
  TargetList out;
  EXPECT_EQ(
      Route(Ipi(0, (2u << 16) | 1u, true, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out), 1);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(out.examined, 1);
}

TEST(ApicBusTest, FastPhysicalUnownedDestinationIsHandledEmpty) {
  auto v = X2ApicVcpus(16);
  ApicMap map(v);
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 200, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out), 0);
  EXPECT_TRUE(out.fast_path);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(Route(Ipi(0, 0x12345, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out), 0);
  EXPECT_TRUE(out.fast_path);
}

TEST(ApicBusTest, BroadcastTakesSlowPath) {
  std::vector<ApicView> v = {XApic(0), XApic(1), XApic(2)};
  v[2].present = false;
  ApicMap map(v);
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 0xFF, false), &map, v, {}, out), 2);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(Targets(out), (std::vector<int>{0, 1}));  // the sender too; not the absent APIC
}

TEST(ApicBusTest, X2ApicBroadcastFromX2ApicSender) {
  auto v = X2ApicVcpus(4);
  ApicMap map(v);
  TargetList out;
  Route(Ipi(1, 0xFFFFFFFF, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(Targets(out), (std::vector<int>{0, 1, 2, 3}));
  // From an x2APIC sender 0xFF is ID 255: fast path, nobody there.
  Route(Ipi(1, 0xFF, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out);
  EXPECT_TRUE(out.fast_path);
  EXPECT_TRUE(out.empty());
  // From an IOAPIC/MSI 0xFF is widened to a broadcast for x2APIC targets (the quirk).
  Route(Msi(0xFF, false), &map, v, {}, out);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(out.size(), 4u);
  // Quirk disabled: 0xFF is not a broadcast when the logical map is in x2APIC mode.
  RouteOptions quirk_off{.x2apic_broadcast_quirk_disabled = true};
  Route(Msi(0xFF, false), &map, v, quirk_off, out);
  EXPECT_TRUE(out.fast_path);
  EXPECT_TRUE(out.empty());
}

TEST(ApicBusTest, ShorthandsOtherThanSelfTakeSlowPath) {
  std::vector<ApicView> v = {XApic(0), XApic(1), XApic(2)};
  ApicMap map(v);
  TargetList out;
  InterruptRequest r = Ipi(1, 0, false);
  r.shorthand = Shorthand::kAllExcludingSelf;
  Route(r, &map, v, {}, out);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(Targets(out), (std::vector<int>{0, 2}));
  r.shorthand = Shorthand::kSelf;
  Route(r, &map, v, {}, out);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(Targets(out), std::vector<int>{1});
  // SELF works even with no usable map.
  Route(r, nullptr, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{1});
}

TEST(ApicBusTest, SlowPathWithoutMatchReportsMinusOne) {
  std::vector<ApicView> v = {XApic(0), XApic(1)};
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 0x33, false), nullptr, v, {}, out), -1);
  EXPECT_FALSE(out.fast_path);
  ApicMap aliased(std::vector<ApicView>{XApic(0), XApic(0)});
  EXPECT_FALSE(aliased.valid());
  EXPECT_EQ(Route(Ipi(0, 0x33, false), &aliased, v, {}, out), -1);
}

TEST(ApicBusTest, FixedLogicalDeliversToAllMembers) {
  auto v = ReversedFlat();
  ApicMap map(v);
  TargetList out;
  Route(Ipi(0, 0x81, true), &map, v, {}, out);  // bits 0 and 7 -> vCPUs 7 and 0
  EXPECT_TRUE(out.fast_path);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0] + out[1], 7);
  EXPECT_NE(out[0], out[1]);
}

TEST(ApicBusTest, LowestPriorityVectorHashingFast) {
  auto v = ReversedFlat();
  ApicMap map(v);
  TargetList out;
  // Members are slots 1,3,5,7; 0x42 = 66, 66 % 4 = 2 -> third set slot, bit 5 -> vCPU 2.
  Route(Ipi(0, 0xAA, true, 0x42, DeliveryMode::kLowestPriority), &map, v, {}, out);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(Targets(out), std::vector<int>{2});
  // 0x43 = 67, 67 % 4 = 3 -> bit 7 -> vCPU 0.
  Route(Ipi(0, 0xAA, true, 0x43, DeliveryMode::kLowestPriority), &map, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{0});
}

TEST(ApicBusTest, LowestPriorityVectorHashingSlowCountsVcpuOrder) {
  auto v = ReversedFlat();
  TargetList out;
  // Matching vCPUs in index order: 0,2,4,6; 66 % 4 = 2 -> vCPU 4 (KVM's slow path orders by
  // vCPU index, the fast path by logical slot).
  EXPECT_EQ(Route(Ipi(0, 0xAA, true, 0x42, DeliveryMode::kLowestPriority), nullptr, v, {}, out), 1);
  EXPECT_EQ(Targets(out), std::vector<int>{4});
  v[2].sw_enabled = false;  // software-disabled APICs do not compete: now 0,4,6 -> 66 % 3 = 0
  Route(Ipi(0, 0xAA, true, 0x42, DeliveryMode::kLowestPriority), nullptr, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{0});
}

TEST(ApicBusTest, LowestPriorityHashingOntoEmptySlotDrops) {
  std::vector<ApicView> v = {XApic(0, FlatLdr(0))};
  ApicMap map(v);
  TargetList out;
  // Slots 0 and 1 requested, vector 1: 1 % 2 = 1 -> empty slot 1: dropped, not redirected.
  EXPECT_EQ(Route(Ipi(0, 0x03, true, 1, DeliveryMode::kLowestPriority), &map, v, {}, out), 0);
  EXPECT_TRUE(out.fast_path);
  EXPECT_TRUE(out.disabled_lapic_found);
  EXPECT_TRUE(out.empty());
  Route(Ipi(0, 0x03, true, 2, DeliveryMode::kLowestPriority), &map, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{0});
}

TEST(ApicBusTest, MsiRedirectionHintMeansLowestPriority) {
  auto v = ReversedFlat();
  ApicMap map(v);
  TargetList out;
  InterruptRequest r = Msi(0xAA, true, 0x42);
  r.msi_redir_hint = true;
  Route(r, &map, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{2});
}

TEST(ApicBusTest, ArbitrationPriorityFallback) {
  std::vector<ApicView> v;
  for (unsigned i = 0; i < 4; ++i) v.push_back(XApic(i, ClusterLdr(1, i), kDfrCluster));
  v[0].arb_prio = 5;
  v[1].arb_prio = 2;
  v[2].arb_prio = 2;
  v[3].arb_prio = 7;
  ApicMap map(v);
  RouteOptions no_hash{.vector_hashing = false};
  TargetList out;
  Route(Ipi(0, 0x1F, true, 0x42, DeliveryMode::kLowestPriority), &map, v, no_hash, out);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(Targets(out), std::vector<int>{1});  // tie with vCPU 2 keeps the first
  Route(Ipi(0, 0x1F, true, 0x42, DeliveryMode::kLowestPriority), nullptr, v, no_hash, out);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(Targets(out), std::vector<int>{1});
  Route(Ipi(0, 0x1D, true, 0x42, DeliveryMode::kLowestPriority), &map, v, no_hash, out);
  EXPECT_EQ(Targets(out), std::vector<int>{2});  // vCPU 1 not addressed
}

TEST(ApicBusTest, PhysicalBroadcastLowestPriorityBecomesFixed) {
  std::vector<ApicView> v = {XApic(0), XApic(1), XApic(2)};
  ApicMap map(v);
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 0xFF, false, 0x42, DeliveryMode::kLowestPriority), &map, v, {}, out), 3);
  EXPECT_TRUE(out.downgraded_to_fixed);
  EXPECT_EQ(out.size(), 3u);
  // Logical 0xFF is not downgraded: one target.
  Route(Ipi(0, 0xFF, true, 0x42, DeliveryMode::kLowestPriority), &map, v, {}, out);
  EXPECT_FALSE(out.downgraded_to_fixed);
  EXPECT_EQ(out.size(), 1u);
}

TEST(ApicBusTest, NmiInitSipiExtIntReachEveryMatch) {
  auto v = ReversedFlat();
  v[3].sw_enabled = false;
  ApicMap map(v);
  TargetList out;
  for (DeliveryMode m :
       {DeliveryMode::kNmi, DeliveryMode::kInit, DeliveryMode::kStartup, DeliveryMode::kExtInt}) {
    Route(Ipi(0, 0xFF, false, 0x10, m), &map, v, {}, out);  // physical broadcast
    EXPECT_EQ(out.size(), 8u);  // a software-disabled APIC still takes NMI/INIT/SIPI
    Route(Ipi(0, 0x0F, true, 0x10, m), &map, v, {}, out);
    EXPECT_EQ(out.size(), 4u);
  }
}

TEST(ApicBusTest, HostileDestinationsAndVectors) {
  auto v = X2ApicVcpus(1024);
  ApicMap map(v);
  TargetList out;
  // Cluster 0xFFFF does not exist: handled, nobody.
  EXPECT_EQ(Route(Ipi(3, 0xFFFF0001, true, 0, DeliveryMode::kFixed, true), &map, v, {}, out), 0);
  EXPECT_TRUE(out.fast_path);
  // Vectors 0-15 are routed; rejecting them is the LAPIC's business (and KVM does not).
  for (uint8_t vec = 0; vec < 16; ++vec) {
    Route(Ipi(3, 7, false, vec, DeliveryMode::kFixed, true), &map, v, {}, out);
    EXPECT_EQ(Targets(out), std::vector<int>{7});
  }
  EXPECT_EQ(Route(Ipi(3, 0xFFFFFFFF, true, 0, DeliveryMode::kFixed, true), &map, v, {}, out), 1024);
  // Out-of-range sender index: treated as no sender.
  Route(Ipi(5000, 1, false), &map, v, {}, out);
  EXPECT_EQ(Targets(out), std::vector<int>{1});
}

TEST(ApicBusTest, MapForAnotherVcpuSetIsNotUsed) {
  auto big = X2ApicVcpus(64);
  ApicMap map(big);
  auto small = X2ApicVcpus(4);
  TargetList out;
  EXPECT_EQ(Route(Ipi(0, 40, false, 0x40, DeliveryMode::kFixed, true), &map, small, {}, out), -1);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(Route(Ipi(0, 2, false, 0x40, DeliveryMode::kFixed, true), &map, small, {}, out), 1);
  EXPECT_EQ(Targets(out), std::vector<int>{2});
}

TEST(ApicBusTest, RandomLdrsAt1024DoNotCrash) {
  std::mt19937 rng(7);
  std::vector<ApicView> v;
  for (unsigned i = 0; i < 1024; ++i) {
    ApicView a = XApic(i, rng(), rng() & 1 ? x86::kDfrFlat : kDfrCluster | (rng() & 0xF0000000));
    a.xapic_id = static_cast<uint8_t>(rng());
    a.x2apic = rng() % 4 == 0;
    a.sw_enabled = rng() & 1;
    v.push_back(a);
  }
  ApicMap map;
  TargetList out;
  for (int i = 0; i < 2000; ++i) {
    if (i % 100 == 0) map.Rebuild(v);
    InterruptRequest r =
        Ipi(static_cast<int>(rng() % 1100) - 20, rng(), rng() & 1, static_cast<uint8_t>(rng()),
            static_cast<DeliveryMode>(rng() & 7), rng() & 1);
    r.shorthand = static_cast<Shorthand>(rng() & 3);
    const int matched = Route(r, &map, v, {}, out);
    EXPECT_GE(matched, -1);
    EXPECT_LE(out.size(), v.size());
  }
}

TEST(ApicBusTest, TargetListStorageIsReused) {
  auto v = X2ApicVcpus(64);
  ApicMap map(v);
  TargetList out;
  InterruptRequest bcast = Ipi(0, 0xFFFFFFFF, false, 0x40, DeliveryMode::kFixed, true);
  Route(bcast, &map, v, {}, out);
  const size_t cap = out.capacity();
  const int* data = out.targets().data();
  for (uint32_t i = 0; i < 1000; ++i) {
    Route(Ipi(0, i % 64, false, 0x40, DeliveryMode::kFixed, true), &map, v, {}, out);
    Route(bcast, &map, v, {}, out);
  }
  EXPECT_EQ(out.capacity(), cap);
  EXPECT_EQ(out.targets().data(), data);
}

}  // namespace
}  // namespace apicv::irq
