// AVIC physical/logical APIC ID table encodings and the IsRunning protocol (APM vol. 2 15.29.3,
// spec §7.1). Expected entry values are assembled by hand from the APM bit layout.
#include <gtest/gtest.h>

#include "avic_test_util.h"
#include "virt/avic.h"

namespace apicv::virt {
namespace {

using testing::MakeViews;
using testing::Topology;

TEST(AvicTables, PhysicalEntryEncoding) {
  Avic avic({}, 2);
  ASSERT_TRUE(avic.init_vcpu(0, 5, 0x12345000ull));
  // Valid (bit 63) + backing page bits 51:12; not running, no host id yet.
  EXPECT_EQ(avic.physical_id_entry(5), 0x8000000012345000ull);
  avic.vcpu_load(0, 0xABC);
  EXPECT_EQ(avic.physical_id_entry(5), 0xC000000012345ABCull);
  EXPECT_TRUE(avic.is_running(0));
  // Host APIC ID is 12 bits; the backing page address is masked to bits 51:12.
  avic.vcpu_load(0, 0x1ABC);
  EXPECT_EQ(avic.physical_id_entry(5) & 0xFFF, 0xABCu);
  EXPECT_EQ(avic.physical_id_entry(4), 0u);
  ASSERT_TRUE(avic.init_vcpu(1, 6, 0xFFF0000000000FFFull));
  EXPECT_EQ(avic.physical_id_entry(6), 0x8000000000000000ull);
}

TEST(AvicTables, IsRunningTransitions) {
  Avic avic({}, 1);
  ASSERT_TRUE(avic.init_vcpu(0, 0, 0x1000));
  EXPECT_FALSE(avic.is_running(0));
  avic.vcpu_load(0, 7);
  EXPECT_TRUE(avic.is_running(0));
  avic.vcpu_put(0);
  EXPECT_FALSE(avic.is_running(0));
  EXPECT_EQ(avic.physical_id_entry(0), 0x8000000000001007ull);  // host id kept
  avic.vcpu_load(0, 3);
  avic.vcpu_blocking(0);
  // Blocking: IsRunning cleared in the table; GA_LOG_INTR only in KVM's cached copy.
  EXPECT_EQ(avic.physical_id_entry(0), 0x8000000000001003ull);
  EXPECT_EQ(avic.cached_physical_id_entry(0), 0xA000000000001003ull);
  avic.vcpu_unblocking(0, 4);
  EXPECT_EQ(avic.physical_id_entry(0), 0xC000000000001004ull);
  EXPECT_EQ(avic.cached_physical_id_entry(0), 0xC000000000001004ull);
}

TEST(AvicTables, IpivOffNeverShowsRunningToHardware) {
  Avic avic({.enable_ipiv = false}, 1);
  ASSERT_TRUE(avic.init_vcpu(0, 0, 0));
  avic.vcpu_load(0, 9);
  EXPECT_EQ(avic.physical_id_entry(0), 0x8000000000000009ull);
  EXPECT_FALSE(avic.is_running(0));
  EXPECT_TRUE(avic.cached_physical_id_entry(0) & kAvicPhysicalIdEntryIsRunning);
}

TEST(AvicTables, PhysicalIdTooBig) {
  Avic xapic({.table = AvicTableMode::kXApic}, 3);
  EXPECT_EQ(xapic.max_physical_id(), 0xFEu);
  EXPECT_TRUE(xapic.init_vcpu(0, 0xFE));
  EXPECT_FALSE(xapic.init_vcpu(1, 0xFF));  // 0xFF is the broadcast ID
  EXPECT_EQ(xapic.physical_id_entry(0xFF), 0u);
  xapic.vcpu_load(1, 1);  // no entry: nothing to mark
  EXPECT_FALSE(xapic.is_running(1));

  Avic x2({.table = AvicTableMode::kX2Avic}, 2);
  EXPECT_EQ(x2.max_physical_id(), 0x1FFu);
  EXPECT_TRUE(x2.init_vcpu(0, 0x1FF));
  EXPECT_FALSE(x2.init_vcpu(1, 0x200));
  EXPECT_EQ(x2.exit_index_mask(), 0x1FFu);

  Avic ext({.table = AvicTableMode::kX2AvicExt}, 1);
  EXPECT_TRUE(ext.init_vcpu(0, 0xFFF));
  EXPECT_EQ(ext.exit_index_mask(), 0xFFFu);
}

TEST(AvicTables, InitRejectsBadSlotsAndDuplicates) {
  Avic avic({}, 2);
  EXPECT_FALSE(avic.init_vcpu(-1, 0));
  EXPECT_FALSE(avic.init_vcpu(2, 0));
  EXPECT_TRUE(avic.init_vcpu(0, 3));
  EXPECT_TRUE(avic.init_vcpu(0, 3));   // idempotent
  EXPECT_FALSE(avic.init_vcpu(0, 4));  // a slot keeps its id
  EXPECT_FALSE(avic.init_vcpu(1, 3));  // an id has one vCPU
  EXPECT_THROW(Avic({}, 0), std::invalid_argument);
  EXPECT_THROW(Avic({}, 5000), std::invalid_argument);
}

TEST(AvicTables, LogicalIdIndex) {
  irq::ApicView v;
  v.present = true;
  v.dfr = x86::kDfrFlat;
  v.ldr = 0x04000000;  // flat bit 2
  EXPECT_EQ(Avic::logical_id_index(v), 2);
  v.ldr = 0x80000000;
  EXPECT_EQ(Avic::logical_id_index(v), 7);
  v.ldr = 0x06000000;  // two bits
  EXPECT_EQ(Avic::logical_id_index(v), -1);
  v.ldr = 0;
  EXPECT_EQ(Avic::logical_id_index(v), -1);
  v.dfr = irq::kDfrCluster;
  v.ldr = 0x24000000;  // cluster 2, member bit 2 -> (2 << 2) + 2
  EXPECT_EQ(Avic::logical_id_index(v), 10);
  v.ldr = 0xE8000000;  // cluster 14, bit 3 -> 59
  EXPECT_EQ(Avic::logical_id_index(v), 59);
  v.ldr = 0xF1000000;  // cluster 15 is the broadcast cluster
  EXPECT_EQ(Avic::logical_id_index(v), -1);
  v.ldr = 0x20000000;  // cluster 2, no member bit
  EXPECT_EQ(Avic::logical_id_index(v), -1);
  v.x2apic = true;  // x2AVIC has no logical table
  v.ldr = 0x00010001;
  EXPECT_EQ(Avic::logical_id_index(v), -1);
  v.x2apic = false;
  v.present = false;
  v.ldr = 0x24000000;
  EXPECT_EQ(Avic::logical_id_index(v), -1);
}

TEST(AvicTables, LogicalTableFollowsLdrAndDfr) {
  auto views = MakeViews(Topology::kFlat, 3);
  Avic avic({}, 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(avic.init_vcpu(i, static_cast<uint32_t>(i)));
  avic.rebuild_logical_table(views);
  EXPECT_EQ(avic.logical_id_entry(0), 0x80000000u);
  EXPECT_EQ(avic.logical_id_entry(1), 0x80000001u);
  EXPECT_EQ(avic.logical_id_entry(2), 0x80000002u);
  EXPECT_EQ(avic.logical_id_entry(3), 0u);

  // vCPU 1 moves to flat bit 5: old entry invalidated, new one written.
  views[1].ldr = 0x20000000;
  avic.update_logical_id(1, views[1]);
  EXPECT_EQ(avic.logical_id_entry(1), 0u);
  EXPECT_EQ(avic.logical_id_entry(5), 0x80000001u);

  // vCPU 2 switches to cluster model with cluster 3 bit 1 -> index 13.
  views[2].dfr = irq::kDfrCluster;
  views[2].ldr = 0x32000000;
  avic.update_logical_id(2, views[2]);
  EXPECT_EQ(avic.logical_id_entry(2), 0u);
  EXPECT_EQ(avic.logical_id_entry(13), 0x80000002u);

  // x2APIC mode: the entry goes away.
  views[0].x2apic = true;
  avic.update_logical_id(0, views[0]);
  EXPECT_EQ(avic.logical_id_entry(0), 0u);
  EXPECT_EQ(avic.logical_id_entry(kAvicLogicalIdTableEntries), 0u);  // out of range reads 0
}

TEST(AvicTables, EoiAndTrapOffsets) {
  EXPECT_TRUE(Avic::eoi_accelerated(false));
  EXPECT_FALSE(Avic::eoi_accelerated(true));
  for (uint32_t off : {0x20u, 0xB0u, 0xC0u, 0xD0u, 0xE0u, 0xF0u, 0x280u, 0x300u, 0x320u, 0x330u,
                       0x340u, 0x350u, 0x360u, 0x370u, 0x380u, 0x3E0u}) {
    EXPECT_TRUE(Avic::is_trap_offset(off)) << std::hex << off;
  }
  for (uint32_t off :
       {0x30u, 0x80u, 0x90u, 0xA0u, 0x100u, 0x200u, 0x2F0u, 0x310u, 0x390u, 0x3F0u, 0x24u}) {
    EXPECT_FALSE(Avic::is_trap_offset(off)) << std::hex << off;
  }
}

}  // namespace
}  // namespace apicv::virt
