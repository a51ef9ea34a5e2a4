// Directed EOI (Suppress EOI Broadcast, SDM 11.8.5 and 11.12.8.3; IOAPIC EOI register, ICH
// 13.5.5) as KVM handles it: LVR[24] is advertised to x2APIC guests only when the IOAPIC is not
// KVM's (kernel-irqchip=split, 0bcc3fb95b97), and KVM_CAP_X2APIC_API's
// KVM_X2APIC_ENABLE/DISABLE_SUPPRESS_EOI_BROADCAST decide whether SVR[12] is honoured, ignored
// (the legacy quirk, no flag) or reserved. Documentation/virt/kvm/api.rst 7.7; lapic.c
// kvm_apic_set_version(), kvm_ioapic_send_eoi().
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>

#include "devices/clock.h"
#include "virt/apicv_vm.h"
#include "virt/timer_service.h"

namespace apicv::virt {
namespace {

constexpr uint32_t kLvrDirectedEoi = 1u << 24;
constexpr uint32_t kSvrSuppressEoiBroadcast = 1u << 12;
constexpr uint32_t kRteRemoteIrr = 1u << 14;
constexpr uint8_t kVec = 0x55;

class DirectedEoiTest : public ::testing::Test {
 protected:
  void Make(IrqchipPlacement placement, SuppressEoiBroadcast mode) {
    VmConfig cfg;
    cfg.placement = placement;
    cfg.suppress_eoi_broadcast = mode;
    cfg.enable_apicv = false;
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr, &timers_);
    vm_->set_kick([](int) {});
    vm_->check_and_inject_events(0, false, false);
    ASSERT_EQ(vm_->wrmsr(0, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | 0x100),
              AccessResult::kHandled);
    // LVT0 masked: ISA IRQ 5 reaches the LAPIC through the IOAPIC only, not as an ExtINT.
    ASSERT_EQ(vm_->wrmsr(0, 0x835, 1u << 16), AccessResult::kHandled);
  }
  uint32_t Lvr() {
    uint64_t v = 0;
    EXPECT_EQ(vm_->rdmsr(0, 0x803, &v), AccessResult::kHandled);
    return static_cast<uint32_t>(v);
  }
  uint32_t WriteSvr(uint32_t value) {
    EXPECT_EQ(vm_->wrmsr(0, 0x80F, value), AccessResult::kHandled);
    uint64_t v = 0;
    EXPECT_EQ(vm_->rdmsr(0, 0x80F, &v), AccessResult::kHandled);
    return static_cast<uint32_t>(v);
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
  bool RemoteIrr() { return IoApicRead(0x10 + 5 * 2) & kRteRemoteIrr; }
  // A level interrupt on IOAPIC pin 5 (vector 0x55, physical destination 0), taken by vCPU 0;
  // the device then drops its line, so an IOAPIC EOI does not re-deliver.
  void TakeLevelInterrupt() {
    IoApicWrite(0x10 + 5 * 2, kVec | (1u << 15));
    IoApicWrite(0x10 + 5 * 2 + 1, 0);
    vm_->set_isa_irq(5, true);
    ASSERT_TRUE(RemoteIrr());
    ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, kVec);
    vm_->set_isa_irq(5, false);
  }
  void LapicEoi() { ASSERT_EQ(vm_->wrmsr(0, 0x80B, 0), AccessResult::kHandled); }

  FakeClock clock_{1'000'000'000};
  ManualTimerService timers_;
  std::unique_ptr<ApicvVm> vm_;
};

TEST_F(DirectedEoiTest, SplitQuirkAdvertisesButStillBroadcastsTheEoi) {
  Make(IrqchipPlacement::kSplit, SuppressEoiBroadcast::kQuirk);
  EXPECT_TRUE(Lvr() & kLvrDirectedEoi);
  EXPECT_TRUE(WriteSvr(0x1FF | kSvrSuppressEoiBroadcast) & kSvrSuppressEoiBroadcast);
  TakeLevelInterrupt();
  const uint64_t exits = vm_->stats().split_ioapic_eoi_exits;
  LapicEoi();
  // KVM ignores SVR[12]: KVM_EXIT_IOAPIC_EOI, and the VMM's IOAPIC clears remote IRR.
  EXPECT_EQ(vm_->stats().split_ioapic_eoi_exits, exits + 1);
  EXPECT_FALSE(RemoteIrr());
  EXPECT_EQ(IoApicRead(0x01) & 0xFF, 0x11u);  // no EOI register in this mode
}

TEST_F(DirectedEoiTest, SplitEnabledSuppressesTheBroadcastAndTheIoApicEoiRegisterCompletes) {
  Make(IrqchipPlacement::kSplit, SuppressEoiBroadcast::kEnabled);
  EXPECT_TRUE(Lvr() & kLvrDirectedEoi);
  ASSERT_TRUE(WriteSvr(0x1FF | kSvrSuppressEoiBroadcast) & kSvrSuppressEoiBroadcast);
  EXPECT_EQ(IoApicRead(0x01) & 0xFF, 0x20u);
  TakeLevelInterrupt();
  const uint64_t exits = vm_->stats().split_ioapic_eoi_exits;
  LapicEoi();
  EXPECT_EQ(vm_->stats().split_ioapic_eoi_exits, exits);  // no exit: not broadcast
  EXPECT_TRUE(RemoteIrr());                               // the IOAPIC still waits
  const uint32_t eoi = kVec;
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00040, &eoi, 4), AccessResult::kHandled);
  EXPECT_FALSE(RemoteIrr());
}

TEST_F(DirectedEoiTest, SplitEnabledWithoutSvrBitBroadcastsAsUsual) {
  Make(IrqchipPlacement::kSplit, SuppressEoiBroadcast::kEnabled);
  WriteSvr(0x1FF);
  TakeLevelInterrupt();
  const uint64_t exits = vm_->stats().split_ioapic_eoi_exits;
  LapicEoi();
  EXPECT_EQ(vm_->stats().split_ioapic_eoi_exits, exits + 1);
  EXPECT_FALSE(RemoteIrr());
}

TEST_F(DirectedEoiTest, SplitDisabledNeitherAdvertisesNorAcceptsTheSvrBit) {
  Make(IrqchipPlacement::kSplit, SuppressEoiBroadcast::kDisabled);
  EXPECT_FALSE(Lvr() & kLvrDirectedEoi);
  EXPECT_FALSE(WriteSvr(0x1FF | kSvrSuppressEoiBroadcast) & kSvrSuppressEoiBroadcast);
  TakeLevelInterrupt();
  LapicEoi();
  EXPECT_FALSE(RemoteIrr());
}

TEST_F(DirectedEoiTest, InKernelIoApicNeverAdvertisesDirectedEoi) {
  Make(IrqchipPlacement::kOn, SuppressEoiBroadcast::kQuirk);
  EXPECT_FALSE(Lvr() & kLvrDirectedEoi);
  EXPECT_FALSE(WriteSvr(0x1FF | kSvrSuppressEoiBroadcast) & kSvrSuppressEoiBroadcast);
}

TEST_F(DirectedEoiTest, FlagsOutsideSplitAreRejectedAsKvmDoes) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kOn;
  cfg.suppress_eoi_broadcast = SuppressEoiBroadcast::kEnabled;
  EXPECT_THROW(ApicvVm(cfg, clock_, nullptr, &timers_), std::invalid_argument);
  cfg.suppress_eoi_broadcast = SuppressEoiBroadcast::kDisabled;
  EXPECT_THROW(ApicvVm(cfg, clock_, nullptr, &timers_), std::invalid_argument);
}

}  // namespace
}  // namespace apicv::virt
