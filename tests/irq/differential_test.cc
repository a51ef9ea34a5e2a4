// Differential test: whenever the ApicMap answers (fast path), its targets equal those of the slow
// matcher run over every APIC (spec §6.5/§6.6), across random topologies and destinations.
//
// Fixed-delivery sets are compared after acceptance: a fixed interrupt to a software-disabled APIC
// is discarded by the LAPIC (SDM 11.4.7.2), and KVM's xAPIC logical map leaves such APICs out.
// KVM's fast and slow paths are known to disagree in a few corners; each is a named predicate over
// the topology and the request (never over the code's output), counted, and left out:
//   A  physical dest > 0xFF naming the vcpu_id of an xAPIC-mode APIC (the matcher's hotplug hack is
//      not in the strict map);
//   B  dest 0xFF from an x2APIC sender while xAPIC-mode APICs exist (they see a broadcast, the fast
//      path sees ID 255);
//   C  dest 0xFFFFFFFF from an xAPIC sender or an IOAPIC/MSI while x2APIC-mode APICs exist (they
//      see a broadcast, the fast path sees no such ID);
//   E  logical dest with an x2APIC logical map while xAPIC-mode APICs sit in the physical map;
//   F  logical dest while a software-enabled xAPIC has an undefined DFR model (the map treats it
//      as cluster, the matcher as nothing);
//   G  logical dest > 0xFF with xAPIC cluster APICs (the map uses dest[7:4], the matcher dest>>4).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <random>
#include <vector>

#include "irq/apic_bus.h"
#include "irq/match_dest.h"
#include "topology.h"

namespace apicv::irq {
namespace {

using x86::DeliveryMode;
using x86::InterruptRequest;
using x86::Shorthand;

enum class Topo { kFlat, kCluster, kX2Apic, kMixed };

struct Topology {
  std::vector<ApicView> views;
  bool any_xapic = false;       // present APIC in xAPIC mode
  bool any_x2apic = false;      // present APIC in x2APIC mode
  bool logical_x2apic = false;  // every sw-enabled APIC with a logical ID is x2APIC (and one is)
  bool weird_dfr = false;       // sw-enabled xAPIC with LDR != 0 and DFR neither flat nor cluster
  bool xapic_cluster = false;   // sw-enabled xAPIC with LDR != 0 and a non-flat DFR
};

uint32_t PickCount(std::mt19937& rng) {
  const uint32_t r = rng() % 100;
  if (r < 45) return 1 + rng() % 16;
  if (r < 80) return 17 + rng() % 240;
  return 257 + rng() % 768;
}

uint32_t RandomLdr(std::mt19937& rng, bool cluster, uint32_t index) {
  switch (rng() % 8) {
    case 0:
      return 0;
    case 1:  // multi-bit or arbitrary
      return rng();
    case 2:  // one random bit: may alias
      return cluster ? testing::ClusterLdr(rng() % 16, rng() % 4) : testing::FlatLdr(rng() % 8);
    default:  // unique when possible
      if (cluster) return index < 60 ? testing::ClusterLdr(index / 4, index % 4) : 0;
      return index < 8 ? testing::FlatLdr(index) : 0;
  }
}

Topology MakeTopology(std::mt19937& rng) {
  Topology t;
  const Topo kind = static_cast<Topo>(rng() % 4);
  const uint32_t n = PickCount(rng);
  // vcpu_id = index, or a sparse/shifted numbering (the APIC ID is not the vector position).
  const uint32_t stride = rng() % 4 == 0 ? 1 + rng() % 3 : 1;
  const uint32_t base = rng() % 4 == 0 ? rng() % 64 : 0;
  const bool alias_ids = rng() % 6 == 0;
  const uint32_t absent_pct = rng() % 3 == 0 ? rng() % 30 : 0;
  const uint32_t sw_off_pct = rng() % 3 == 0 ? rng() % 30 : 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t id = base + i * stride;
    bool x2 = kind == Topo::kX2Apic || (kind == Topo::kMixed && rng() % 2);
    // xAPIC topologies past 256 vCPUs always alias; keep most of them mappable.
    if (!x2 && kind != Topo::kMixed && id > 0xFF && rng() % 8 != 0) x2 = true;
    ApicView v;
    if (x2) {
      v = testing::X2Apic(id);
    } else {
      const bool cluster = kind == Topo::kCluster || (kind == Topo::kMixed && rng() % 2);
      uint32_t dfr = cluster ? kDfrCluster : x86::kDfrFlat;
      if (rng() % 400 == 0) dfr = 0x7FFFFFFF;
      v = testing::XApic(id, RandomLdr(rng, cluster, i), dfr);
      if (alias_ids && rng() % 8 == 0) v.xapic_id = static_cast<uint8_t>(rng());
    }
    v.present = rng() % 100 >= absent_pct;
    v.sw_enabled = rng() % 100 >= sw_off_pct;
    v.arb_prio = rng() % 4;
    t.views.push_back(v);
  }
  bool sw_xapic_logical = false;
  bool sw_x2apic = false;
  for (const ApicView& v : t.views) {
    if (!v.present) continue;
    (v.x2apic ? t.any_x2apic : t.any_xapic) = true;
    if (!v.sw_enabled) continue;
    if (v.x2apic) {
      sw_x2apic = true;
    } else if (v.ldr != 0) {
      sw_xapic_logical = true;
      if (v.dfr != x86::kDfrFlat) t.xapic_cluster = true;
      if (v.dfr != x86::kDfrFlat && v.dfr != kDfrCluster) t.weird_dfr = true;
    }
  }
  t.logical_x2apic = sw_x2apic && !sw_xapic_logical;
  return t;
}

uint32_t RandomDest(std::mt19937& rng, const Topology& t) {
  const uint32_t n = static_cast<uint32_t>(t.views.size());
  switch (rng() % 10) {
    case 0:
      return 0xFF;
    case 1:
      return 0xFFFFFFFF;
    case 2:
      return 0xFFFF0000 | (rng() & 0xFFFF);  // cluster 0xFFFF
    case 3:
      return rng();
    case 4:  // x2APIC cluster + member mask near the populated range
      return ((rng() % (n / 16 + 2)) << 16) | (rng() & 0xFFFF);
    case 5:
    case 6:
      return rng() & 0xFF;
    default:  // an ID near the populated range
      return t.views[rng() % n].vcpu_id + rng() % 3;
  }
}

struct Counters {
  uint64_t requests = 0;
  uint64_t fast_answers = 0;
  uint64_t compared = 0;
  uint64_t lowest_checked = 0;
  std::array<uint64_t, 6> skipped{};  // A B C E F G
};

std::vector<int> Accepting(std::span<const int> targets, const std::vector<ApicView>& v) {
  std::vector<int> out;
  for (int i : targets) {
    if (v[static_cast<size_t>(i)].sw_enabled) out.push_back(i);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Returns the index of the first known-divergence class that applies, or -1.
int KnownDivergence(const Topology& t, const InterruptRequest& r, bool x2apic_ipi) {
  if (r.shorthand != Shorthand::kNone) return -1;
  if (!r.dest_logical && r.dest_id > 0xFF) {
    for (const ApicView& v : t.views) {
      if (v.present && !v.x2apic && v.vcpu_id == r.dest_id) return 0;
    }
  }
  if (x2apic_ipi && r.dest_id == 0xFF && t.any_xapic) return 1;
  if (!x2apic_ipi && r.dest_id == 0xFFFFFFFF && t.any_x2apic) return 2;
  if (r.dest_logical && t.logical_x2apic && t.any_xapic) return 3;
  if (r.dest_logical && t.weird_dfr) return 4;
  if (r.dest_logical && r.dest_id > 0xFF && t.xapic_cluster) return 5;
  return -1;
}

TEST(DifferentialTest, MapAgreesWithSlowMatcher) {
  std::mt19937 rng(20260421);
  Counters c;
  ApicMap map;
  TargetList fast;
  TargetList slow;
  constexpr int kTopologies = 15000;
  constexpr int kRequestsPerTopology = 30;
  for (int topo = 0; topo < kTopologies; ++topo) {
    const Topology t = MakeTopology(rng);
    map.Rebuild(t.views);
    const uint32_t n = static_cast<uint32_t>(t.views.size());
    for (int q = 0; q < kRequestsPerTopology; ++q) {
      InterruptRequest r;
      r.vector = static_cast<uint8_t>(rng());
      r.dest_logical = rng() & 1;
      r.dest_id = RandomDest(rng, t);
      const uint32_t src_pick = rng() % n;
      const bool ipi = rng() % 3 != 0 && t.views[src_pick].present;
      if (ipi) {
        r.from_ipi = true;
        r.source_vcpu = static_cast<int>(src_pick);
        r.source_x2apic = t.views[src_pick].x2apic;
        if (!r.source_x2apic && rng() % 8 != 0) r.dest_id &= 0xFF;  // an ICR2 holds 8 bits
        const uint32_t s = rng() % 10;
        if (s == 0) r.shorthand = Shorthand::kSelf;
        if (s == 1) r.shorthand = static_cast<Shorthand>(2 + rng() % 2);
      }
      const bool x2apic_ipi = ipi && r.source_x2apic;
      ++c.requests;

      // Fixed delivery: the sets must agree.
      r.delivery_mode = DeliveryMode::kFixed;
      const bool handled = RouteFast(r, &map, t.views, {}, fast);
      RouteSlow(r, t.views, {}, slow);
      if (!handled) continue;
      ++c.fast_answers;
      const int cls = KnownDivergence(t, r, x2apic_ipi);
      if (cls >= 0) {
        ++c.skipped[static_cast<size_t>(cls)];
        continue;
      }
      ++c.compared;
      ASSERT_EQ(Accepting(fast.targets(), t.views), Accepting(slow.targets(), t.views))
          << "topology " << topo << " request " << q << " dest 0x" << std::hex << r.dest_id
          << (r.dest_logical ? " logical" : " physical") << " map mode "
          << LogicalModeName(map.logical_mode());
      if (!r.dest_logical) {
        // Physical: the map holds every present APIC, so even non-accepting ones agree.
        std::vector<int> f(fast.targets().begin(), fast.targets().end());
        std::vector<int> s(slow.targets().begin(), slow.targets().end());
        ASSERT_EQ(f, s) << "topology " << topo << " request " << q;
      }

      // Lowest priority: the fast path's single pick must be one of the slow matcher's matches.
      r.delivery_mode = DeliveryMode::kLowestPriority;
      const RouteOptions opts{.vector_hashing = (rng() & 1) != 0};
      if (RouteFast(r, &map, t.views, opts, fast) && !fast.empty()) {
        ++c.lowest_checked;
        ASSERT_EQ(fast.size(), 1u);
        r.delivery_mode = DeliveryMode::kFixed;
        RouteSlow(r, t.views, {}, slow);
        const auto s = slow.targets();
        ASSERT_NE(std::find(s.begin(), s.end(), fast[0]), s.end())
            << "topology " << topo << " request " << q;
      }
    }
  }
  std::printf(
      "requests %llu, fast answers %llu, compared %llu, lowest-priority picks %llu; skipped "
      "A %llu B %llu C %llu E %llu F %llu G %llu\n",
      (unsigned long long)c.requests, (unsigned long long)c.fast_answers,
      (unsigned long long)c.compared, (unsigned long long)c.lowest_checked,
      (unsigned long long)c.skipped[0], (unsigned long long)c.skipped[1],
      (unsigned long long)c.skipped[2], (unsigned long long)c.skipped[3],
      (unsigned long long)c.skipped[4], (unsigned long long)c.skipped[5]);
  EXPECT_GE(c.compared, 100000u);
  EXPECT_GE(c.lowest_checked, 20000u);
}

// The divergence classes are real KVM behaviour, pinned here so that they stay deliberate.
TEST(DifferentialTest, KnownDivergenceHotplugHack) {
  std::vector<ApicView> v = {testing::XApic(0), testing::X2Apic(1), testing::XApic(300)};
  v[2].xapic_id = 9;
  ApicMap map(v);
  InterruptRequest r;
  r.dest_id = 300;
  r.from_ipi = true;
  r.source_vcpu = 1;
  r.source_x2apic = true;
  TargetList fast, slow;
  ASSERT_TRUE(RouteFast(r, &map, v, {}, fast));
  EXPECT_TRUE(fast.empty());
  RouteSlow(r, v, {}, slow);
  EXPECT_EQ(std::vector<int>(slow.targets().begin(), slow.targets().end()), std::vector<int>{2});
}

TEST(DifferentialTest, KnownDivergenceX2ApicSenderTo0xFF) {
  std::vector<ApicView> v = {testing::XApic(0), testing::X2Apic(1), testing::XApic(2)};
  ApicMap map(v);
  InterruptRequest r;
  r.dest_id = 0xFF;
  r.from_ipi = true;
  r.source_vcpu = 1;
  r.source_x2apic = true;
  TargetList fast, slow;
  ASSERT_TRUE(RouteFast(r, &map, v, {}, fast));
  EXPECT_TRUE(fast.empty());
  RouteSlow(r, v, {}, slow);
  EXPECT_EQ(std::vector<int>(slow.targets().begin(), slow.targets().end()),
            (std::vector<int>{0, 2}));
}

}  // namespace
}  // namespace apicv::irq
