// The AVIC hardware's handling of guest ICR writes (APM vol. 2 15.29.3.1, 15.29.5.1): accelerated
// IPIs with doorbells, TARGET_NOT_RUNNING with the table index, and each failure cause.
#include <gtest/gtest.h>

#include <random>

#include "avic_test_util.h"
#include "virt/avic.h"

namespace apicv::virt {
namespace {

using testing::Icrl;
using testing::MakeViews;
using testing::RecordingOps;
using testing::Topology;
using testing::XApicIcrh;
using Cause = AvicIpiFailureCause;
using IrrList = std::vector<std::pair<int, uint8_t>>;

// n vCPUs, ids 0..n-1, vCPUs in `running` loaded.
struct Fixture {
  Fixture(Topology t, int n, std::initializer_list<int> running,
          AvicTableMode table = AvicTableMode::kX2Avic)
      : ops(MakeViews(t, n)), avic({.table = table}, n) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(avic.init_vcpu(i, static_cast<uint32_t>(i)));
    avic.rebuild_logical_table(ops.views);
    for (int r : running) avic.vcpu_load(r, static_cast<uint32_t>(100 + r));
  }
  RecordingOps ops;
  Avic avic;
};

TEST(AvicIcr, PhysicalToRunningTargetRingsDoorbell) {
  Fixture f(Topology::kPhysicalXApic, 4, {0, 2});
  const AvicIcrResult r = f.avic.handle_icr_write(0, Icrl(0x40, false), XApicIcrh(2), false, f.ops);
  EXPECT_FALSE(r.exit);
  EXPECT_EQ(f.ops.irr, (IrrList{{2, 0x40}}));
  EXPECT_EQ(f.ops.doorbells, std::vector<int>{2});
  EXPECT_EQ(r.doorbells, 1u);
  EXPECT_EQ(f.avic.stats().accelerated_ipis, 1u);
}

TEST(AvicIcr, NotRunningTargetSetsIrrAndExitsWithPhysicalId) {
  Fixture f(Topology::kPhysicalXApic, 4, {0});
  const AvicIcrResult r = f.avic.handle_icr_write(0, Icrl(0x41, false), XApicIcrh(3), false, f.ops);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_EQ(r.index, 3u);
  EXPECT_EQ(f.ops.irr, (IrrList{{3, 0x41}}));  // IRR is written even though the target is out
  EXPECT_TRUE(f.ops.doorbells.empty());
  EXPECT_EQ(r.exit_info_2(), (1ull << 32) | 3);
  EXPECT_EQ(r.exit_info_1(0x41, 0x03000000), 0x0300000000000041ull);
}

TEST(AvicIcr, PutAndBlockingMakeTargetNotRunning) {
  Fixture f(Topology::kPhysicalXApic, 2, {0, 1});
  f.avic.vcpu_blocking(1);
  auto r = f.avic.handle_icr_write(0, Icrl(0x50, false), XApicIcrh(1), false, f.ops);
  EXPECT_TRUE(r.exit && r.cause == Cause::kTargetNotRunning);
  f.avic.vcpu_unblocking(1, 5);
  r = f.avic.handle_icr_write(0, Icrl(0x50, false), XApicIcrh(1), false, f.ops);
  EXPECT_FALSE(r.exit);
  f.avic.vcpu_put(1);
  r = f.avic.handle_icr_write(0, Icrl(0x50, false), XApicIcrh(1), false, f.ops);
  EXPECT_TRUE(r.exit && r.cause == Cause::kTargetNotRunning);
}

TEST(AvicIcr, OnlyFixedEdgeIsAccelerated) {
  Fixture f(Topology::kPhysicalXApic, 2, {0, 1});
  // Delivery modes 1..7 (lowest priority, SMI, remote read, NMI, INIT, SIPI, ExtINT).
  for (uint32_t dm = 1; dm < 8; ++dm) {
    const auto r =
        f.avic.handle_icr_write(0, Icrl(0x40, false, dm << 8), XApicIcrh(1), false, f.ops);
    EXPECT_TRUE(r.exit);
    EXPECT_EQ(r.cause, Cause::kInvalidIntType) << dm;
  }
  const auto level =
      f.avic.handle_icr_write(0, Icrl(0x40, false, x86::kIcrTriggerLevel | x86::kIcrLevelAssert),
                              XApicIcrh(1), false, f.ops);
  EXPECT_EQ(level.cause, Cause::kInvalidIntType);
  EXPECT_TRUE(level.exit);
  EXPECT_TRUE(f.ops.irr.empty());
}

TEST(AvicIcr, VectorsBelow16) {
  Fixture f(Topology::kPhysicalXApic, 2, {0, 1});
  for (int v = 0; v < 16; ++v) {
    const auto r = f.avic.handle_icr_write(0, Icrl(static_cast<uint8_t>(v), false), XApicIcrh(1),
                                           false, f.ops);
    EXPECT_TRUE(r.exit);
    EXPECT_EQ(r.cause, Cause::kInvalidIpiVector);
  }
  EXPECT_TRUE(f.ops.irr.empty());
  EXPECT_FALSE(f.avic.handle_icr_write(0, Icrl(16, false), XApicIcrh(1), false, f.ops).exit);
}

TEST(AvicIcr, InvalidPhysicalTargetTouchesNothing) {
  Fixture f(Topology::kPhysicalXApic, 3, {0, 1, 2});
  auto r = f.avic.handle_icr_write(0, Icrl(0x40, false), XApicIcrh(7), false, f.ops);
  EXPECT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kInvalidTarget);
  EXPECT_EQ(r.index, 7u);
  // x2APIC destination beyond the table.
  r = f.avic.handle_icr_write(0, Icrl(0x40, false), 0x1234, true, f.ops);
  EXPECT_EQ(r.cause, Cause::kInvalidTarget);
  EXPECT_EQ(r.index, 0x1234u & 0x1FF);
  EXPECT_TRUE(f.ops.irr.empty());
}

TEST(AvicIcr, FlatLogicalMulticast) {
  Fixture f(Topology::kFlat, 4, {0, 1});
  // Bits 1 and 3: vCPU 1 running (doorbell), vCPU 3 not (exit with logical index 3).
  const auto r = f.avic.handle_icr_write(0, Icrl(0x60, true), XApicIcrh(0x0A), false, f.ops);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_EQ(r.index, 3u);
  EXPECT_EQ(f.ops.irr, (IrrList{{1, 0x60}, {3, 0x60}}));
  EXPECT_EQ(f.ops.doorbells, std::vector<int>{1});
  // A bit with no logical entry (bit 6) makes the whole IPI invalid.
  f.ops.clear();
  const auto bad = f.avic.handle_icr_write(0, Icrl(0x60, true), XApicIcrh(0x42), false, f.ops);
  EXPECT_EQ(bad.cause, Cause::kInvalidTarget);
  EXPECT_EQ(bad.index, 6u);
  EXPECT_TRUE(f.ops.irr.empty());
  // Empty mask: nothing to deliver, nothing to exit for.
  EXPECT_FALSE(f.avic.handle_icr_write(0, Icrl(0x60, true), XApicIcrh(0), false, f.ops).exit);
}

TEST(AvicIcr, ClusterLogicalUsesClusterIndex) {
  Fixture f(Topology::kCluster, 12, {0});
  // Cluster 2 (vCPUs 8..11), member bits 0 and 2 -> vCPUs 8 and 10; table indices 8 and 10.
  const auto r = f.avic.handle_icr_write(0, Icrl(0x70, true), XApicIcrh(0x25), false, f.ops);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_EQ(r.index, 8u);
  EXPECT_EQ(f.ops.irr, (IrrList{{8, 0x70}, {10, 0x70}}));
  // Cluster 5 does not exist in a 12-vCPU VM.
  f.ops.clear();
  const auto bad = f.avic.handle_icr_write(0, Icrl(0x70, true), XApicIcrh(0x51), false, f.ops);
  EXPECT_EQ(bad.cause, Cause::kInvalidTarget);
  EXPECT_EQ(bad.index, 20u);  // (5 << 2) + 0
}

TEST(AvicIcr, X2ApicLogicalClusterArithmetic) {
  Fixture f(Topology::kX2ApicLogical, 40, {0, 18});
  // Cluster 1, bits 2 and 5 -> physical IDs 18 and 21.
  const auto r = f.avic.handle_icr_write(0, Icrl(0x80, true), (1u << 16) | 0x24, true, f.ops);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_EQ(r.index, 21u);
  EXPECT_EQ(f.ops.irr, (IrrList{{18, 0x80}, {21, 0x80}}));
  EXPECT_EQ(f.ops.doorbells, std::vector<int>{18});
  // Cluster 3 bit 0 = id 48: no such vCPU.
  EXPECT_EQ(f.avic.handle_icr_write(0, Icrl(0x80, true), 3u << 16 | 1, true, f.ops).cause,
            Cause::kInvalidTarget);
}

TEST(AvicIcr, Shorthands) {
  Fixture f(Topology::kPhysicalXApic, 4, {0, 1, 2});
  const uint32_t self = 1u << x86::kIcrShorthandShift;
  const uint32_t all = 2u << x86::kIcrShorthandShift;
  const uint32_t all_but = 3u << x86::kIcrShorthandShift;
  auto r = f.avic.handle_icr_write(1, Icrl(0x30, false, self), XApicIcrh(3), false, f.ops);
  EXPECT_FALSE(r.exit);
  EXPECT_EQ(f.ops.irr, (IrrList{{1, 0x30}}));  // destination field ignored
  EXPECT_TRUE(f.ops.doorbells.empty());

  f.ops.clear();
  r = f.avic.handle_icr_write(1, Icrl(0x31, false, all_but), 0, false, f.ops);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_EQ(r.index, 3u);
  EXPECT_EQ(f.ops.irr, (IrrList{{0, 0x31}, {2, 0x31}, {3, 0x31}}));
  EXPECT_EQ(f.ops.doorbells, (std::vector<int>{0, 2}));

  f.ops.clear();
  r = f.avic.handle_icr_write(1, Icrl(0x32, false, all), 0, false, f.ops);
  EXPECT_EQ(f.ops.irr.size(), 4u);
  EXPECT_EQ(f.ops.doorbells, (std::vector<int>{0, 2}));  // none for the source itself

  // Physical broadcast 0xFF behaves like all-including-self.
  f.ops.clear();
  r = f.avic.handle_icr_write(1, Icrl(0x33, false), XApicIcrh(0xFF), false, f.ops);
  EXPECT_EQ(f.ops.irr.size(), 4u);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
}

TEST(AvicIcr, IpivOffAlwaysExits) {
  RecordingOps ops(MakeViews(Topology::kPhysicalXApic, 2));
  Avic avic({.enable_ipiv = false}, 2);
  avic.init_vcpu(0, 0);
  avic.init_vcpu(1, 1);
  avic.vcpu_load(0, 1);
  avic.vcpu_load(1, 2);
  const auto r = avic.handle_icr_write(0, Icrl(0x40, false), XApicIcrh(1), false, ops);
  EXPECT_TRUE(r.exit);
  EXPECT_EQ(r.cause, Cause::kTargetNotRunning);
  EXPECT_TRUE(ops.doorbells.empty());
}

TEST(AvicIcr, HostileIcrValuesNeverCrash) {
  for (Topology t :
       {Topology::kPhysicalXApic, Topology::kFlat, Topology::kCluster, Topology::kX2ApicLogical}) {
    const int n = t == Topology::kFlat ? 8 : 16;
    Fixture f(t, n, {0, 3});
    const bool x2 = t == Topology::kX2ApicLogical;
    std::mt19937 rng(7);
    const uint32_t icrhs[] = {0xFFFFFFFFu, 0xFFFF0000u, 0xFFFF0001u, 0xFF000000u, 0x0000FFFFu, 0};
    for (int i = 0; i < 20000; ++i) {
      const uint32_t icrl = rng();
      const uint32_t icrh = (i % 3 == 0) ? icrhs[i % 6] : rng();
      const auto r = f.avic.handle_icr_write(i % n, icrl, icrh, x2, f.ops);
      if (r.exit) {
        EXPECT_LE(static_cast<uint32_t>(r.cause), 4u);
        EXPECT_LE(r.index, 0x1FFu);
        f.avic.avic_incomplete_ipi_interception(i % n, r.exit_info_1(icrl, icrh), r.exit_info_2(),
                                                f.ops);
      }
      for (const auto& [v, vec] : f.ops.irr) {
        ASSERT_GE(v, 0);
        ASSERT_LT(v, n);
        ASSERT_GE(vec, 16);
      }
      f.ops.clear();
    }
    // Out-of-range source slot.
    EXPECT_EQ(f.avic.handle_icr_write(n, Icrl(0x40, false), 0, x2, f.ops).cause,
              Cause::kInvalidTarget);
  }
}

}  // namespace
}  // namespace apicv::virt
