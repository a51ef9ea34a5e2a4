// ApicvVm behaviours that follow KVM's exact rules (issue 10 items 10, 12, 13): remote IRR from
// kvm_irq_delivery_to_apic()'s return value (ioapic.c ioapic_service(), lapic.c fast and slow
// paths, __apic_accept_irq()), the vCPU pic_unlock() kicks for an ExtINT, the in-kernel PIT's
// minimum period, apic_arb_prio arbitration without vector hashing, NMI queueing, and the APIC
// base decoded up to the guest's MAXPHYADDR. Expected values come from KVM's source and the
// SDM, not from running this code.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <vector>

#include "devices/clock.h"
#include "virt/apicv_vm.h"
#include "virt/timer_service.h"

namespace apicv::virt {
namespace {

constexpr uint64_t kT0 = 1'000'000'000;
constexpr uint32_t kRteRemoteIrr = 1u << 14;

class ParityTest : public ::testing::Test {
 protected:
  void Make(VmConfig cfg) {
    cfg.enable_apicv = false;  // every delivery through KVM's emulation path
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr, &timers_);
    kicks_ = std::make_shared<std::vector<std::atomic<int>>>(static_cast<size_t>(cfg.nr_vcpus));
    vm_->set_kick([k = kicks_](int v) { (*k)[static_cast<size_t>(v)].fetch_add(1); });
    for (int v = 0; v < cfg.nr_vcpus; ++v) vm_->check_and_inject_events(v, false, false);
  }
  int Kicks(int v) const { return (*kicks_)[static_cast<size_t>(v)].load(); }
  // x2APIC mode; software-enabled unless told otherwise (SPIV 0x1FF / 0xFF).
  void X2Apic(int v, bool sw_enabled = true) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, sw_enabled ? 0x1FF : 0xFF), AccessResult::kHandled);
  }
  void HwDisable(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, v == 0 ? 0x100 : 0), AccessResult::kHandled);
  }
  void IoApicWrite(uint32_t reg, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &reg, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &value, 4), AccessResult::kHandled);
  }
  uint32_t IoApicRead(uint32_t reg) {
    uint32_t v = 0;
    EXPECT_EQ(vm_->mmio_write(0, 0xFEC00000, &reg, 4), AccessResult::kHandled);
    EXPECT_EQ(vm_->mmio_read(0, 0xFEC00010, &v, 4), AccessResult::kHandled);
    return v;
  }
  // IOAPIC pin 5: level-triggered, fixed, vector 0x55, `dest` physical; then the line goes high.
  bool AssertLevelPin5(uint32_t dest) {
    IoApicWrite(0x10 + 5 * 2, 0x55 | (1u << 15));
    IoApicWrite(0x10 + 5 * 2 + 1, dest << 24);
    vm_->set_isa_irq(5, true);
    return IoApicRead(0x10 + 5 * 2) & kRteRemoteIrr;
  }
  bool IrrHas(int v, uint8_t vector) {
    vm_->check_and_inject_events(v, false, true);  // folds posted vectors into IRR
    return (vm_->lapic(v).reg(0x200 + (vector >> 5) * 0x10) >> (vector & 31)) & 1u;
  }

  FakeClock clock_{kT0};
  ManualTimerService timers_;
  std::unique_ptr<ApicvVm> vm_;
  std::shared_ptr<std::vector<std::atomic<int>>> kicks_;
};

// ---- Remote IRR follows kvm_irq_delivery_to_apic()'s return value ----

TEST_F(ParityTest, RemoteIrrSetWhenAnEnabledLapicAcceptsTheLevelMessage) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  EXPECT_TRUE(AssertLevelPin5(1));  // fast path, vCPU 1 accepts: r = 1
  EXPECT_TRUE(IrrHas(1, 0x55));
}

TEST_F(ParityTest, FastPathWithNoDestinationLeavesRemoteIrrClear) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  // Physical ID 7 is above the map's max APIC ID: the fast path handles it with an empty
  // bitmap, r = 0, so remote IRR stays clear (and the line could be re-delivered).
  EXPECT_FALSE(AssertLevelPin5(7));
}

TEST_F(ParityTest, SoftwareDisabledTargetLeavesRemoteIrrClear) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0);
  X2Apic(1, /*sw_enabled=*/false);
  // __apic_accept_irq() refuses a fixed message on a software-disabled APIC: r = 0.
  EXPECT_FALSE(AssertLevelPin5(1));
  EXPECT_FALSE(IrrHas(1, 0x55));
}

TEST_F(ParityTest, SlowPathWithNoDestinationSetsRemoteIrr) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  HwDisable(0);
  HwDisable(1);
  // Physical 0xFF is a broadcast: the slow path walks the vCPUs, finds no present APIC and
  // returns -1, which ioapic_service() treats as delivered.
  EXPECT_TRUE(AssertLevelPin5(0xFF));
}

TEST_F(ParityTest, SlowPathBroadcastToSoftwareDisabledLapicsLeavesRemoteIrrClear) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0, /*sw_enabled=*/false);
  X2Apic(1, /*sw_enabled=*/false);
  // Matched on the slow path (r starts at 0 on a match) but nobody accepts: r = 0.
  EXPECT_FALSE(AssertLevelPin5(0xFF));
}

// ---- pic_unlock(): the first vCPU that accepts PIC interrupts is kicked ----

TEST_F(ParityTest, ExtIntKicksTheFirstVcpuAcceptingPicInterrupts) {
  VmConfig cfg;
  cfg.nr_vcpus = 3;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  X2Apic(2);
  ASSERT_EQ(vm_->wrmsr(0, 0x835, 1u << 16), AccessResult::kHandled);  // BSP: LVT0 masked
  ASSERT_EQ(vm_->wrmsr(2, 0x835, 0x700), AccessResult::kHandled);     // vCPU 2: ExtINT
  for (int v = 0; v < 3; ++v) vm_->vcpu_enter(v);
  const int k0 = Kicks(0), k1 = Kicks(1), k2 = Kicks(2);
  vm_->set_isa_irq(3, true);  // PIC IRQ3 (unmasked after reset): INTR rises
  EXPECT_EQ(Kicks(0), k0);
  EXPECT_EQ(Kicks(1), k1);
  EXPECT_EQ(Kicks(2), k2 + 1);
}

TEST_F(ParityTest, ExtIntKicksNobodyWhenNoVcpuAcceptsPicInterrupts) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  ASSERT_EQ(vm_->wrmsr(0, 0x835, 1u << 16), AccessResult::kHandled);
  for (int v = 0; v < 2; ++v) vm_->vcpu_enter(v);
  const int k0 = Kicks(0), k1 = Kicks(1);
  vm_->set_isa_irq(3, true);
  EXPECT_EQ(Kicks(0), k0);
  EXPECT_EQ(Kicks(1), k1);
}

// ---- The in-kernel PIT's min_timer_period_us (200 us) ----

uint64_t PitDeadlineAfterProgramming(ParityTest* t, ApicvVm& vm, uint8_t mode_cmd, uint16_t n) {
  (void)t;
  for (auto [port, v] : {std::pair<uint16_t, uint8_t>{0x43, mode_cmd},
                         {0x40, static_cast<uint8_t>(n)},
                         {0x40, static_cast<uint8_t>(n >> 8)}})
    EXPECT_EQ(vm.pio_out(0, port, &v, 1), AccessResult::kHandled);
  return vm.next_deadline_ns();
}

TEST_F(ParityTest, InKernelPitClampsPeriodicModesTo200us) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kOn;
  Make(cfg);
  // Mode 2, 100 clocks = 83.8 us: KVM's create_pit_timer() runs it every 200 us.
  EXPECT_EQ(PitDeadlineAfterProgramming(this, *vm_, 0x34, 100), kT0 + 200'000);
}

TEST_F(ParityTest, UserspacePitUnderSplitIsNotClamped) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kSplit;
  Make(cfg);
  const uint64_t d = PitDeadlineAfterProgramming(this, *vm_, 0x34, 100);
  EXPECT_GE(d, kT0 + 100ull * 1'000'000'000 / 1'193'182);
  EXPECT_LT(d, kT0 + 100'000);
}

TEST_F(ParityTest, InKernelPitOneShotIsNotClamped) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kOn;
  Make(cfg);
  // Mode 0 is not periodic: KVM clamps only periodic timers.
  EXPECT_LT(PitDeadlineAfterProgramming(this, *vm_, 0x30, 100), kT0 + 100'000);
}

// ---- One owner for each piece of state ----

TEST_F(ParityTest, WithoutVectorHashingLowestPriorityRotatesByArbPrio) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  cfg.vector_hashing = false;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  // Lowest priority, logical cluster 0 with both vCPUs (x2APIC LDRs 0x1 and 0x2): each arrival
  // raises the receiver's apic_arb_prio, so the other vCPU wins the next tie-break.
  const uint64_t icr = (3ull << 32) | (1u << 11) | (1u << 8);
  for (uint8_t vec : {0x60, 0x61, 0x62})
    ASSERT_EQ(vm_->wrmsr(0, 0x830, icr | vec), AccessResult::kHandled);
  EXPECT_TRUE(IrrHas(0, 0x60));
  EXPECT_TRUE(IrrHas(1, 0x61));
  EXPECT_TRUE(IrrHas(0, 0x62));
  EXPECT_FALSE(IrrHas(1, 0x60));
  EXPECT_FALSE(IrrHas(0, 0x61));
}

TEST_F(ParityTest, NmiIpisQueueTwoInjections) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  X2Apic(0);
  X2Apic(1);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(vm_->wrmsr(0, 0x830, (1ull << 32) | (4u << 8)), AccessResult::kHandled);
  EXPECT_TRUE(vm_->has_events(1, false));
  EXPECT_TRUE(vm_->check_and_inject_events(1, true, true).nmi);
  EXPECT_TRUE(vm_->check_and_inject_events(1, true, true).nmi);
  EXPECT_FALSE(vm_->check_and_inject_events(1, true, true).nmi);
}

TEST_F(ParityTest, ApicBaseAboveBit46IsDecodedWithA52BitMaxPhyAddr) {
  VmConfig cfg;
  cfg.maxphyaddr = 52;
  Make(cfg);
  const uint64_t base = (1ull << 50) | 0xFEE00000ull;
  ASSERT_EQ(vm_->wrmsr(0, 0x1B, base | (1 << 11) | 0x100), AccessResult::kHandled);
  uint32_t lvr = 0;
  ASSERT_EQ(vm_->mmio_read(0, base + 0x30, &lvr, 4), AccessResult::kHandled);
  EXPECT_EQ(lvr & 0xFF, 0x14u);  // KVM's APIC version
  EXPECT_EQ(vm_->mmio_read(0, 0xFEE00030, &lvr, 4), AccessResult::kNotMine);
}

TEST_F(ParityTest, ApicBaseAboveMaxPhyAddrFaults) {
  VmConfig cfg;  // MAXPHYADDR 46
  Make(cfg);
  EXPECT_EQ(vm_->wrmsr(0, 0x1B, (1ull << 50) | 0xFEE00000ull | (1 << 11) | 0x100),
            AccessResult::kGp);
}

}  // namespace
}  // namespace apicv::virt
