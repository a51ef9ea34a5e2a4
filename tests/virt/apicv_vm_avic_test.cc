// ApicvVm with the AVIC model wired in (vendor svm, PIT lost_tick_policy=discard so nothing
// inhibits AVIC), driven single-threaded as a backend would. Expected figures follow AMD APM vol. 2
// 15.29.3.1 (ICR handling: IRR + doorbell, AVIC_INCOMPLETE_IPI causes) and KVM's
// avic_incomplete_ipi_interception / avic_kick_target_vcpus (spec §7.3).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"

namespace apicv::virt {
namespace {

constexpr uint32_t kIcr = 0x830;
constexpr uint32_t kSelfIpi = 0x83F;
constexpr uint64_t kIcrLogical = 1u << 11;
constexpr uint64_t kIcrNmi = 4u << 8;
// enum avic_ipi_failure_cause
constexpr size_t kInvalidIntType = 0;
constexpr size_t kTargetNotRunning = 1;
constexpr size_t kInvalidTarget = 2;
constexpr size_t kInvalidIpiVector = 4;

class AvicVmTest : public ::testing::Test {
 protected:
  void Make(int nr_vcpus, PitPolicy policy = PitPolicy::kDiscard, AvicKick kick = AvicKick::kFast) {
    VmConfig cfg;
    cfg.nr_vcpus = nr_vcpus;
    cfg.vendor = VendorModel::kSvm;
    cfg.pit_policy = policy;
    cfg.avic_kick = kick;
    vm_.reset();  // the VM (and its timer thread) must be gone before the sink it traces into
    sink_ = std::make_unique<trace::TraceSink>(clock_);
    sink_->set_ring_capacity(1000);
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, sink_.get());
    kicks_.assign(static_cast<size_t>(nr_vcpus), 0);
    vm_->set_kick([this](int v) { ++kicks_[static_cast<size_t>(v)]; });
    for (int v = 0; v < nr_vcpus; ++v) EnableX2Apic(v);
    // Each vCPU processes KVM_REQ_APICV_UPDATE on its next entry.
    for (int v = 0; v < nr_vcpus; ++v) vm_->check_and_inject_events(v, false, false);
  }
  void EnableX2Apic(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, 0x1FF), AccessResult::kHandled);  // SPIV: software enable
  }
  // Physical fixed edge IPI from vCPU 0 in x2APIC format (destination in ICR[63:32]).
  void Ipi(int src, uint64_t dest, uint64_t low) {
    ASSERT_EQ(vm_->wrmsr(src, kIcr, (dest << 32) | low), AccessResult::kHandled);
  }
  // The vector the next entry of `v` would deliver (-1: none).
  int Delivered(int v) { return vm_->check_and_inject_events(v, true, true).vector; }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<trace::TraceSink> sink_;
  std::unique_ptr<ApicvVm> vm_;
  std::vector<int> kicks_;
};

TEST_F(AvicVmTest, DiscardPolicyLeavesAvicActiveOnEveryVcpu) {
  Make(4);
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
  for (int v = 0; v < 4; ++v) EXPECT_FALSE(vm_->avic_is_running(v)) << v;
}

TEST_F(AvicVmTest, IsRunningFollowsEntryExitAndBlocking) {
  Make(2);
  vm_->vcpu_enter(1);
  EXPECT_TRUE(vm_->avic_is_running(1));
  vm_->vcpu_exit(1);
  EXPECT_FALSE(vm_->avic_is_running(1));
  // Nothing pending: has_events() is false, the vCPU is about to block with IsRunning clear.
  EXPECT_FALSE(vm_->has_events(1, true));
  EXPECT_FALSE(vm_->avic_is_running(1));
  // A pending interrupt: has_events() is true and the vCPU runs again (avic_vcpu_unblocking).
  Ipi(0, 1, 0x61);
  EXPECT_TRUE(vm_->has_events(1, true));
  EXPECT_TRUE(vm_->avic_is_running(1));
}

TEST_F(AvicVmTest, IpiToRunningVcpuIsAcceleratedWithDoorbell) {
  Make(4);
  vm_->vcpu_enter(2);
  Ipi(0, 2, 0x61);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.ipis, 1u);
  EXPECT_EQ(s.avic_accelerated_ipis, 1u);
  EXPECT_EQ(s.avic_doorbells, 1u);
  EXPECT_EQ(s.avic_incomplete_ipi, 0u);
  EXPECT_EQ(kicks_[2], 1);  // the doorbell forces the running vCPU to look at its IRR
  vm_->vcpu_exit(2);
  EXPECT_EQ(Delivered(2), 0x61);
  EXPECT_EQ(Delivered(1), -1);
  EXPECT_EQ(Delivered(3), -1);
}

TEST_F(AvicVmTest, IpiToVcpuNotRunningExitsTargetNotRunningAndFastKicksOne) {
  Make(4);
  Ipi(0, 3, 0x62);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_accelerated_ipis, 0u);
  EXPECT_EQ(s.avic_incomplete_ipi, 1u);
  EXPECT_EQ(s.avic_incomplete_ipi_by_cause[kTargetNotRunning], 1u);
  EXPECT_EQ(s.avic_fast_hits, 1u);
  EXPECT_EQ(s.avic_slow_kicks, 0u);
  EXPECT_EQ(s.avic_vcpus_examined, 1u);  // kvm_get_vcpu_by_id(dest): one vCPU
  EXPECT_EQ(s.avic_doorbells, 0u);
  // The hardware already set the IRR; the kick is only a wake-up.
  EXPECT_EQ(Delivered(3), 0x62);
}

TEST_F(AvicVmTest, BlockedTargetIsWokenByTheIncompleteIpiKick) {
  Make(2);
  ASSERT_FALSE(vm_->has_events(1, true));  // vCPU 1 halts
  Ipi(0, 1, 0x63);
  EXPECT_EQ(vm_->stats().avic_incomplete_ipi_by_cause[kTargetNotRunning], 1u);
  EXPECT_EQ(kicks_[1], 1);  // kvm_vcpu_wake_up
  EXPECT_TRUE(vm_->has_events(1, true));
  EXPECT_EQ(Delivered(1), 0x63);
}

// x2APIC logical destination cluster 0, bits 1-3: vCPUs 1, 2, 3 (LDR = 1 << (id & 0xF)).
void LogicalIpiToThree(AvicVmTest* t, ApicvVm& vm) {
  (void)t;
  ASSERT_EQ(vm.wrmsr(0, kIcr, (0xEull << 32) | kIcrLogical | 0x70), AccessResult::kHandled);
}

TEST_F(AvicVmTest, FastAndSlowKicksReachTheSameTargets) {
  std::vector<std::vector<int>> delivered(2);
  std::vector<VmStats> stats(2);
  for (int mode = 0; mode < 2; ++mode) {
    Make(4, PitPolicy::kDiscard, mode == 0 ? AvicKick::kFast : AvicKick::kSlow);
    LogicalIpiToThree(this, *vm_);
    stats[mode] = vm_->stats();
    for (int v = 0; v < 4; ++v) delivered[mode].push_back(Delivered(v));
  }
  const std::vector<int> expected = {-1, 0x70, 0x70, 0x70};
  EXPECT_EQ(delivered[0], expected);
  EXPECT_EQ(delivered[1], expected);
  for (int mode = 0; mode < 2; ++mode) {
    EXPECT_EQ(stats[mode].avic_incomplete_ipi_by_cause[kTargetNotRunning], 1u) << mode;
    EXPECT_EQ(stats[mode].avic_kicks, 3u) << mode;
  }
  // Fast: one look-up per destination bit; slow: every vCPU is matched.
  EXPECT_EQ(stats[0].avic_fast_hits, 1u);
  EXPECT_EQ(stats[0].avic_vcpus_examined, 3u);
  EXPECT_EQ(stats[1].avic_slow_kicks, 1u);
  EXPECT_EQ(stats[1].avic_fast_hits, 0u);
  EXPECT_EQ(stats[1].avic_vcpus_examined, 4u);
}

TEST_F(AvicVmTest, PartlyRunningLogicalIpiRingsDoorbellsAndStillExits) {
  Make(4);
  vm_->vcpu_enter(1);
  LogicalIpiToThree(this, *vm_);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_incomplete_ipi_by_cause[kTargetNotRunning], 1u);
  EXPECT_GE(s.avic_doorbells, 1u);  // the hardware's doorbell to vCPU 1
  vm_->vcpu_exit(1);
  for (int v = 1; v < 4; ++v) EXPECT_EQ(Delivered(v), 0x70) << v;
}

TEST_F(AvicVmTest, NmiIpiIsInvalidIntTypeAndEmulated) {
  Make(2);
  Ipi(0, 1, kIcrNmi);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_incomplete_ipi, 1u);
  EXPECT_EQ(s.avic_incomplete_ipi_by_cause[kInvalidIntType], 1u);
  EXPECT_EQ(s.avic_kicks, 0u);
  Injection inj = vm_->check_and_inject_events(1, true, true);
  EXPECT_TRUE(inj.nmi);
}

TEST_F(AvicVmTest, LevelTriggeredFixedIpiIsInvalidIntType) {
  Make(2);
  Ipi(0, 1, (1u << 15) | (1u << 14) | 0x64);
  EXPECT_EQ(vm_->stats().avic_incomplete_ipi_by_cause[kInvalidIntType], 1u);
}

TEST_F(AvicVmTest, VectorBelow16IsDroppedWithInvalidIpiVector) {
  Make(2);
  Ipi(0, 1, 0x05);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_incomplete_ipi_by_cause[kInvalidIpiVector], 1u);
  EXPECT_EQ(Delivered(1), -1);
  EXPECT_FALSE(vm_->has_events(1, true));
}

TEST_F(AvicVmTest, DestinationWithoutTableEntryIsInvalidTarget) {
  Make(2);
  Ipi(0, 7, 0x65);  // no vCPU has APIC ID 7
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_incomplete_ipi_by_cause[kInvalidTarget], 1u);
  EXPECT_EQ(Delivered(0), -1);
  EXPECT_EQ(Delivered(1), -1);
}

TEST_F(AvicVmTest, SelfIpiIsAcceleratedWithoutExit) {
  Make(2);
  ASSERT_EQ(vm_->wrmsr(0, kSelfIpi, 0x46), AccessResult::kHandled);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.avic_accelerated_ipis, 1u);
  EXPECT_EQ(s.avic_incomplete_ipi, 0u);
  EXPECT_EQ(s.avic_doorbells, 0u);
  EXPECT_EQ(Delivered(0), 0x46);
}

TEST_F(AvicVmTest, InhibitedVmTakesNoAvicPath) {
  Make(2, PitPolicy::kDelay);
  ASSERT_NE(vm_->inhibit_reasons() & 0x200u, 0u);  // PIT_REINJ
  vm_->vcpu_enter(1);
  Ipi(0, 1, 0x66);
  Ipi(0, 1, kIcrNmi);
  vm_->vcpu_exit(1);
  VmStats s = vm_->stats();
  EXPECT_EQ(s.ipis, 2u);
  EXPECT_EQ(s.avic_accelerated_ipis, 0u);
  EXPECT_EQ(s.avic_incomplete_ipi, 0u);
  EXPECT_EQ(s.avic_doorbells, 0u);
  EXPECT_EQ(s.avic_kicks, 0u);
  // One event per entry (kvm_check_and_inject_events): the NMI first, the interrupt next.
  Injection inj = vm_->check_and_inject_events(1, true, true);
  EXPECT_TRUE(inj.nmi);
  EXPECT_EQ(inj.vector, -1);
  inj = vm_->check_and_inject_events(1, true, true);
  EXPECT_FALSE(inj.nmi);
  EXPECT_EQ(inj.vector, 0x66);
}

TEST_F(AvicVmTest, VmxHasNoAvicModel) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  cfg.vendor = VendorModel::kVmx;
  cfg.pit_policy = PitPolicy::kDiscard;
  vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr);
  vm_->set_kick([](int) {});
  EnableX2Apic(0);
  EnableX2Apic(1);
  for (int v = 0; v < 2; ++v) vm_->check_and_inject_events(v, false, false);
  vm_->vcpu_enter(1);
  EXPECT_FALSE(vm_->avic_is_running(1));
  Ipi(0, 1, 0x67);
  vm_->vcpu_exit(1);
  EXPECT_EQ(vm_->stats().avic_incomplete_ipi, 0u);
  EXPECT_EQ(Delivered(1), 0x67);
}

TEST_F(AvicVmTest, VcpuIdAboveX2AvicTableInhibitsPhysicalIdTooBig) {
  // More than 255 vCPUs selects x2AVIC (max index 0x1FF); ids 512.. have no entry.
  VmConfig cfg;
  cfg.nr_vcpus = 520;
  cfg.pit_policy = PitPolicy::kDiscard;
  vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr);
  // xAPIC-mode vCPUs above 255 also alias in the map (PHYSICAL/LOGICAL_ID_ALIASED): look at bit
  // 12 only.
  EXPECT_NE(vm_->inhibit_reasons() & (1u << 12), 0u);  // PHYSICAL_ID_TOO_BIG
  cfg.nr_vcpus = 300;
  vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr);
  EXPECT_EQ(vm_->inhibit_reasons() & (1u << 12), 0u);
}

}  // namespace
}  // namespace apicv::virt
