// KVM's avic_incomplete_ipi_interception (spec §7.2) and kicking (§7.3): per-cause actions, the
// trace line, kick kinds, and the fast path finding exactly the vCPUs the kvm_apic_match_dest walk
// finds over random topologies that satisfy AVIC's map guarantees.
#include <gtest/gtest.h>

#include <random>

#include "avic_test_util.h"
#include "devices/clock.h"
#include "trace/trace_sink.h"
#include "virt/avic.h"

namespace apicv::virt {
namespace {

using testing::Icrl;
using testing::MakeViews;
using testing::RecordingOps;
using testing::Topology;
using testing::XApicIcrh;
using Action = AvicIncompleteIpiAction;

constexpr uint32_t kNotRunning = 1;

TEST(AvicKick, ActionsPerCause) {
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 2));
  Avic avic({}, 2);
  avic.init_vcpu(0, 0);
  avic.init_vcpu(1, 1);
  const uint32_t icrh = XApicIcrh(1);
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), icrh, 0, 0, ops),
            Action::kSendIpi);
  EXPECT_EQ(
      avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false, x86::kIcrBusy), icrh, 0, 0, ops),
      Action::kWriteIcrNodecode);
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), icrh, 2, 1, ops),
            Action::kSendIpi);
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), icrh, 3, 1, ops),
            Action::kWarnBackingPage);
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x05, false), icrh, 4, 1, ops),
            Action::kIgnoredVector);
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), icrh, 9, 1, ops),
            Action::kUnhandledCause);
  EXPECT_TRUE(ops.kicked().empty());  // none of these kick anything
  EXPECT_EQ(avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), icrh, kNotRunning, 1, ops),
            Action::kNone);
  EXPECT_EQ(ops.kicked(), std::set<int>{1});
  const AvicStats s = avic.stats();
  EXPECT_EQ(s.incomplete_ipi[0], 2u);
  EXPECT_EQ(s.incomplete_ipi[1], 1u);
  EXPECT_EQ(s.incomplete_ipi[2], 1u);
  EXPECT_EQ(s.incomplete_ipi[3], 1u);
  EXPECT_EQ(s.incomplete_ipi[4], 1u);
  EXPECT_EQ(s.incomplete_ipi[5], 1u);
  EXPECT_EQ(s.fast_hits, 1u);
  EXPECT_EQ(ops.irr.size(), 0u);  // the kick path never writes IRR: the hardware already did
}

TEST(AvicKick, KickKindFollowsTargetState) {
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 4));
  Avic avic({}, 4);
  for (int i = 0; i < 4; ++i) avic.init_vcpu(i, static_cast<uint32_t>(i));
  ops.in_guest[1] = true;  // raced into the guest after the hardware looked: doorbell
  ops.active[3] = false;   // APICv inactive: KVM_REQ_EVENT + kick
  for (int t : {1, 2, 3}) {
    avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(static_cast<uint8_t>(t)),
                                          kNotRunning, static_cast<uint32_t>(t), ops);
  }
  EXPECT_EQ(ops.doorbells, std::vector<int>{1});
  EXPECT_EQ(ops.wakes, std::vector<int>{2});
  EXPECT_EQ(ops.events, std::vector<int>{3});
}

TEST(AvicKick, TraceLineAndExitInfoDecode) {
  FakeClock clock;
  trace::TraceSink sink(clock);
  sink.set_ring_capacity(4);
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 4));
  Avic avic({.trace = &sink}, 4);
  for (int i = 0; i < 4; ++i) avic.init_vcpu(i, static_cast<uint32_t>(i));
  // exit_info_2 index bits above 8:0 are not part of the index.
  avic.avic_incomplete_ipi_interception(2, 0x0500000000000041ull, (1ull << 32) | 0xE05, ops);
  const auto lines = sink.ring_lines();
  ASSERT_EQ(lines.size(), 1u);
  const std::string want =
      "kvm_avic_incomplete_ipi: vcpu=2, icrh:icrl=0x05000000:00000041, id=1, index=5";
  EXPECT_NE(lines[0].find(want), std::string::npos) << lines[0];
  // Hardware index 5 but ICR destination 5 -> vCPU... none exists: nothing to kick.
  EXPECT_TRUE(ops.kicked().empty());

  avic.avic_unaccelerated_access_interception(1, (1ull << 32) | 0x2D4, 0);
  const auto l2 = sink.ring_lines();
  ASSERT_EQ(l2.size(), 2u);
  EXPECT_NE(l2[1].find("kvm_avic_unaccelerated_access: vcpu=1, offset=0x2d0"), std::string::npos)
      << l2[1];
}

TEST(AvicKick, UnacceleratedAccessDecode) {
  Avic avic({}, 1);
  auto a = avic.avic_unaccelerated_access_interception(0, (1ull << 32) | 0xD0, 0);
  EXPECT_EQ(a.offset, 0xD0u);
  EXPECT_TRUE(a.write);
  EXPECT_TRUE(a.trap);
  a = avic.avic_unaccelerated_access_interception(0, 0x38C, 0);
  EXPECT_EQ(a.offset, 0x380u);
  EXPECT_FALSE(a.write);
  EXPECT_TRUE(a.trap);
  a = avic.avic_unaccelerated_access_interception(0, (1ull << 32) | 0x390, 0);
  EXPECT_FALSE(a.trap);  // TMCCT faults
}

TEST(AvicKick, FastPathDeclinesAndSlowPathCovers) {
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 4));
  Avic avic({}, 4);
  for (int i = 0; i < 4; ++i) avic.init_vcpu(i, static_cast<uint32_t>(i));
  // Destination 2 but hardware index 3: WARN and fall back to the walk, which kicks vCPU 2.
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(2), kNotRunning, 3, ops);
  EXPECT_EQ(ops.kicked(), std::set<int>{2});
  AvicStats s = avic.stats();
  EXPECT_EQ(s.warn_dest_index_mismatch, 1u);
  EXPECT_EQ(s.slow_fallbacks, 1u);
  EXPECT_EQ(s.slow_kicks, 1u);
  // All-but-self shorthand: always the walk.
  ops.clear();
  avic.avic_incomplete_ipi_interception(1, Icrl(0x40, false, 3u << x86::kIcrShorthandShift), 0,
                                        kNotRunning, 0, ops);
  EXPECT_EQ(ops.kicked(), (std::set<int>{0, 2, 3}));
  EXPECT_EQ(avic.stats().slow_kicks, 2u);
}

TEST(AvicKick, SlowModeNeverUsesFastPath) {
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 8));
  Avic avic({.kick = AvicKickMode::kSlow}, 8);
  for (int i = 0; i < 8; ++i) avic.init_vcpu(i, static_cast<uint32_t>(i));
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(6), kNotRunning, 6, ops);
  EXPECT_EQ(ops.kicked(), std::set<int>{6});
  const AvicStats s = avic.stats();
  EXPECT_EQ(s.fast_hits, 0u);
  EXPECT_EQ(s.slow_kicks, 1u);
  EXPECT_EQ(s.vcpus_examined, 8u);
}

// Random IPIs over a topology: the hardware decides the exit, then fast and slow kicks must reach
// the same set of vCPUs, which must be exactly the not-running targets plus running ones.
void Differential(Topology t, int n, AvicTableMode table, uint32_t seed) {
  std::mt19937 rng(seed);
  const bool x2 = t == Topology::kPhysicalX2Apic || t == Topology::kX2ApicLogical;
  const bool logical =
      t == Topology::kFlat || t == Topology::kCluster || t == Topology::kX2ApicLogical;
  RecordingOps fast_ops(MakeViews(t, n)), slow_ops(MakeViews(t, n)), hw_ops(MakeViews(t, n));
  Avic fast({.table = table, .kick = AvicKickMode::kFast}, n);
  Avic slow({.table = table, .kick = AvicKickMode::kSlow}, n);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(fast.init_vcpu(i, static_cast<uint32_t>(i)));
    ASSERT_TRUE(slow.init_vcpu(i, static_cast<uint32_t>(i)));
  }
  fast.rebuild_logical_table(fast_ops.views);
  slow.rebuild_logical_table(slow_ops.views);
  int exits = 0;
  for (int iter = 0; iter < 400; ++iter) {
    // Random running set.
    for (int i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        fast.vcpu_load(i, 1);
      } else {
        fast.vcpu_put(i);
      }
    }
    const int src = static_cast<int>(rng() % static_cast<uint32_t>(n));
    fast.vcpu_load(src, 1);
    uint32_t icrh;
    if (t == Topology::kFlat) {
      icrh = XApicIcrh(static_cast<uint8_t>(rng() & ((1u << n) - 1)));
    } else if (t == Topology::kCluster) {
      const uint32_t clusters = static_cast<uint32_t>((n + 3) / 4);
      const uint32_t c = rng() % clusters;
      uint32_t bits = rng() & 0xF;
      for (uint32_t b = 0; b < 4; ++b) {
        if (c * 4 + b >= static_cast<uint32_t>(n)) bits &= ~(1u << b);
      }
      icrh = XApicIcrh(static_cast<uint8_t>((c << 4) | bits));
    } else if (t == Topology::kX2ApicLogical) {
      const uint32_t clusters = static_cast<uint32_t>((n + 15) / 16);
      const uint32_t c = rng() % clusters;
      uint32_t bits = rng() & 0xFFFF;
      for (uint32_t b = 0; b < 16; ++b) {
        if (c * 16 + b >= static_cast<uint32_t>(n)) bits &= ~(1u << b);
      }
      icrh = (c << 16) | bits;
    } else {
      const uint32_t d = rng() % static_cast<uint32_t>(n);
      icrh = x2 ? d : XApicIcrh(static_cast<uint8_t>(d));
    }
    const uint32_t icrl = Icrl(static_cast<uint8_t>(0x20 + rng() % 0xD0), logical);
    hw_ops.clear();
    const AvicIcrResult r = fast.handle_icr_write(src, icrl, icrh, x2, hw_ops);
    ASSERT_NE(r.cause == AvicIpiFailureCause::kInvalidTarget && r.exit, true)
        << "generated destinations are all valid";
    if (!r.exit) continue;
    ++exits;
    ASSERT_EQ(r.cause, AvicIpiFailureCause::kTargetNotRunning);
    fast_ops.clear();
    slow_ops.clear();
    fast.avic_incomplete_ipi_interception(src, r.exit_info_1(icrl, icrh), r.exit_info_2(),
                                          fast_ops);
    slow.avic_incomplete_ipi_interception(src, r.exit_info_1(icrl, icrh), r.exit_info_2(),
                                          slow_ops);
    // The kicked set is every IRR target of the hardware walk (KVM kicks running ones too).
    std::set<int> hw_targets;
    for (const auto& [v, vec] : hw_ops.irr) hw_targets.insert(v);
    ASSERT_EQ(fast_ops.kicked(), slow_ops.kicked()) << "icrh=" << std::hex << icrh;
    ASSERT_EQ(fast_ops.kicked(), hw_targets);
  }
  EXPECT_GT(exits, 50);
  const AvicStats s = fast.stats();
  EXPECT_EQ(s.slow_fallbacks, 0u);
  EXPECT_EQ(s.fast_hits, static_cast<uint64_t>(exits));
  EXPECT_EQ(s.warn_invalid_logical_entry, 0u);
}

TEST(AvicKickDifferential, PhysicalXApic) {
  for (int n : {2, 16, 255}) Differential(Topology::kPhysicalXApic, n, AvicTableMode::kXApic, 1);
}
TEST(AvicKickDifferential, PhysicalX2Apic) {
  for (int n : {2, 64, 288, 512}) {
    Differential(Topology::kPhysicalX2Apic, n, AvicTableMode::kX2Avic, 2);
  }
  Differential(Topology::kPhysicalX2Apic, 1024, AvicTableMode::kX2AvicExt, 3);
}
TEST(AvicKickDifferential, XApicFlat) {
  for (int n : {2, 5, 8}) Differential(Topology::kFlat, n, AvicTableMode::kXApic, 4);
}
TEST(AvicKickDifferential, XApicCluster) {
  for (int n : {4, 13, 60}) Differential(Topology::kCluster, n, AvicTableMode::kXApic, 5);
}
TEST(AvicKickDifferential, X2ApicLogical) {
  for (int n : {16, 40, 288}) Differential(Topology::kX2ApicLogical, n, AvicTableMode::kX2Avic, 6);
  Differential(Topology::kX2ApicLogical, 1024, AvicTableMode::kX2AvicExt, 7);
}

}  // namespace
}  // namespace apicv::virt
