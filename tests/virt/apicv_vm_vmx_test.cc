// ApicvVm with the APICv model wired in (vendor vmx), driven through the IrqChip interface as a
// backend would. Expected behaviour comes from Intel SDM vol. 3C 30.6 (posted-interrupt
// descriptor: PIR, ON, notification), 30.1.3 (EOI virtualization and the EOI-exit bitmap) and
// spec §5 / §7.4 (KVM's __vmx_deliver_posted_interrupt, sync_pir_to_irr, kvm_ioapic_scan_entry,
// and why VMX keeps APICv active under PIT reinjection).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"

namespace apicv::virt {
namespace {

constexpr uint32_t kIcr = 0x830;
constexpr uint32_t kEoi = 0x80B;
constexpr uint32_t kSelfIpi = 0x83F;
constexpr uint64_t kRteLevel = 1u << 15;
constexpr uint64_t kRteMasked = 1u << 16;

class VmxVmTest : public ::testing::Test {
 protected:
  void Make(int nr_vcpus, PitPolicy policy = PitPolicy::kDelay, bool enable_apicv = true) {
    VmConfig cfg;
    cfg.nr_vcpus = nr_vcpus;
    cfg.vendor = VendorModel::kVmx;
    cfg.placement = IrqchipPlacement::kOn;
    cfg.pit_policy = policy;
    cfg.enable_apicv = enable_apicv;
    vm_.reset();  // the VM (and its timer thread) must be gone before the sink it traces into
    sink_ = std::make_unique<trace::TraceSink>(clock_);
    sink_->set_ring_capacity(10000);
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, sink_.get());
    kicks_ = std::make_unique<std::atomic<int>[]>(static_cast<size_t>(nr_vcpus));
    vm_->set_kick([this](int v) { kicks_[static_cast<size_t>(v)].fetch_add(1); });
    for (int v = 0; v < nr_vcpus; ++v) EnableX2Apic(v);
    // Each vCPU handles KVM_REQ_APICV_UPDATE and KVM_REQ_SCAN_IOAPIC on its next entry.
    Enter(nr_vcpus);
  }
  void Enter(int nr_vcpus) {
    for (int v = 0; v < nr_vcpus; ++v) vm_->check_and_inject_events(v, false, false);
  }
  void EnableX2Apic(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, 0x1FF), AccessResult::kHandled);  // SPIV: software enable
  }
  // Fixed, edge, physical IPI in x2APIC format.
  void Ipi(int src, uint32_t dest, uint8_t vector) {
    ASSERT_EQ(vm_->wrmsr(src, kIcr, (static_cast<uint64_t>(dest) << 32) | vector),
              AccessResult::kHandled);
  }
  void Out(uint16_t port, uint8_t v) {
    ASSERT_EQ(vm_->pio_out(0, port, &v, 1), AccessResult::kHandled);
  }
  // 8259 initialised and fully masked, so ISA lines reach the guest only through the IOAPIC.
  void MaskPic() {
    for (auto [port, v] : std::vector<std::pair<uint16_t, uint8_t>>{{0x20, 0x11},
                                                                    {0x21, 0x20},
                                                                    {0x21, 0x04},
                                                                    {0x21, 0x01},
                                                                    {0xA0, 0x11},
                                                                    {0xA1, 0x28},
                                                                    {0xA1, 0x02},
                                                                    {0xA1, 0x01},
                                                                    {0x21, 0xFF},
                                                                    {0xA1, 0xFF}})
      Out(port, v);
  }
  // IOREDTBL[pin] through IOREGSEL/IOWIN, written by vCPU 0; dest in RTE bits 63:56.
  void WriteRte(unsigned pin, uint32_t low, uint8_t dest) {
    uint32_t sel = 0x10 + 2 * pin;
    const uint32_t high = static_cast<uint32_t>(dest) << 24;
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &sel, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &low, 4), AccessResult::kHandled);
    sel = 0x10 + 2 * pin + 1;
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &sel, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &high, 4), AccessResult::kHandled);
  }
  bool IrrHas(int v, uint8_t vector) {
    return (vm_->lapic(v).reg(0x200 + (vector >> 5) * 0x10) >> (vector & 31)) & 1u;
  }
  bool TmrHas(int v, uint8_t vector) {
    return (vm_->lapic(v).reg(0x180 + (vector >> 5) * 0x10) >> (vector & 31)) & 1u;
  }
  int Kicks(int v) { return kicks_[static_cast<size_t>(v)].load(); }
  int EoiTraceLines() {
    int n = 0;
    for (const auto& l : sink_->ring_lines()) n += l.find(" kvm_eoi: ") != std::string::npos;
    return n;
  }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<trace::TraceSink> sink_;
  std::unique_ptr<ApicvVm> vm_;
  std::unique_ptr<std::atomic<int>[]> kicks_;
};

TEST_F(VmxVmTest, PitReinjectionDoesNotInhibitApicvOnVmx) {
  Make(2, PitPolicy::kDelay);
  // PIT_REINJ is outside VMX_REQUIRED_APICV_INHIBITS: the set is ignored, APICv stays active.
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
  // The descriptor's notification fields are KVM's: POSTED_INTR_VECTOR 0xF2, NDST = the pCPU.
  EXPECT_EQ(vm_->pi_desc(1).nv(), 0xF2);
  EXPECT_EQ(vm_->pi_desc(1).ndst(), 1u);
}

TEST_F(VmxVmTest, DeliveryToAnotherVcpuSetsPirAndOnAndNotifiesInGuestTarget) {
  Make(2);
  vm_->vcpu_enter(1);
  const int k0 = Kicks(1);
  Ipi(0, 1, 0x61);
  const PiDesc& pi = vm_->pi_desc(1);
  EXPECT_TRUE(pi.test_pir(0x61));
  EXPECT_FALSE(pi.test_pir(0x60));
  EXPECT_TRUE(pi.on());
  // Posted, not yet in the target's IRR: the target has not re-entered.
  EXPECT_FALSE(IrrHas(1, 0x61));
  const VmStats s = vm_->stats();
  EXPECT_EQ(s.pi_deliveries, 1u);
  EXPECT_EQ(s.pi_notifications, 1u);
  EXPECT_EQ(s.pi_suppressed_on, 0u);
  EXPECT_EQ(Kicks(1) - k0, 1);  // the notification IPI is the kick
}

TEST_F(VmxVmTest, SecondDeliveryWhileOnIsSetSendsNoNotification) {
  Make(2);
  vm_->vcpu_enter(1);
  Ipi(0, 1, 0x61);
  const int k1 = Kicks(1);
  Ipi(0, 1, 0x62);  // new PIR bit, ON already set: no notification
  Ipi(0, 1, 0x61);  // PIR bit already set: coalesced, nothing else happens
  EXPECT_TRUE(vm_->pi_desc(1).test_pir(0x62));
  EXPECT_EQ(Kicks(1), k1);
  const VmStats s = vm_->stats();
  EXPECT_EQ(s.pi_deliveries, 3u);
  EXPECT_EQ(s.pi_notifications, 1u);
  EXPECT_EQ(s.pi_suppressed_on, 1u);
  EXPECT_EQ(s.pi_coalesced, 1u);
}

TEST_F(VmxVmTest, HarvestOnEntryMovesPirIntoIrrAndClearsOn) {
  Make(2);
  Ipi(0, 1, 0x61);
  Ipi(0, 1, 0x92);
  ASSERT_TRUE(vm_->pi_desc(1).on());
  vm_->check_and_inject_events(1, /*ready=*/false, /*if_set=*/true);
  EXPECT_FALSE(vm_->pi_desc(1).on());
  EXPECT_TRUE(vm_->pi_desc(1).pir_empty());
  EXPECT_TRUE(IrrHas(1, 0x61));
  EXPECT_TRUE(IrrHas(1, 0x92));
  EXPECT_FALSE(TmrHas(1, 0x92));  // edge
  EXPECT_EQ(vm_->stats().pi_harvests, 1u);
  // The highest vector is delivered first once the guest can take it.
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x92);
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, -1);  // 0x61 is below PPR now
}

TEST_F(VmxVmTest, TargetOutsideGuestIsNotKickedButBlockedTargetIsWoken) {
  Make(2);
  // vCPU 1 is between an exit and its next entry: KVM's wake-up finds nobody to wake.
  const int k0 = Kicks(1);
  Ipi(0, 1, 0x61);
  EXPECT_EQ(Kicks(1), k0);
  EXPECT_EQ(vm_->stats().pi_wakeups, 1u);
  // Entering with ON still set: the entry path notices and exits at once instead of running the
  // guest with an unharvested vector (KVM syncs PIR after setting IN_GUEST_MODE).
  vm_->vcpu_enter(1);
  EXPECT_EQ(Kicks(1), k0 + 1);
  vm_->vcpu_exit(1);
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x61);
  ASSERT_EQ(vm_->wrmsr(1, kEoi, 0), AccessResult::kHandled);

  // Halted with nothing pending: blocked; a posted interrupt wakes it and has_events sees it.
  EXPECT_FALSE(vm_->has_events(1, true));
  const int k1 = Kicks(1);
  Ipi(0, 1, 0x71);
  EXPECT_EQ(Kicks(1), k1 + 1);
  EXPECT_EQ(vm_->stats().pi_wakeups, 2u);
  EXPECT_TRUE(vm_->has_events(1, true));
  EXPECT_TRUE(IrrHas(1, 0x71));
}

TEST_F(VmxVmTest, PitVectorEoiExitsToTheAckNotifierWhileOtherEdgeEoisAreVirtualized) {
  Make(1, PitPolicy::kDelay);
  MaskPic();
  WriteRte(2, 0x30, 0);  // ISA IRQ0 -> pin 2: vector 0x30, edge, physical dest 0, unmasked
  Enter(1);              // KVM_REQ_SCAN_IOAPIC
  EXPECT_TRUE(vm_->eoi_exit_bitmap(0).test(0x30));
  EXPECT_FALSE(vm_->eoi_exit_bitmap(0).test(0x40));
  // Every tick is delivered as a posted interrupt and every EOI of it reaches the ack notifier.
  for (uint64_t i = 1; i <= 3; ++i) {
    vm_->set_isa_irq(0, true);
    vm_->set_isa_irq(0, false);
    EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x30);
    ASSERT_EQ(vm_->wrmsr(0, kEoi, 0), AccessResult::kHandled);
    EXPECT_EQ(vm_->stats().pit_acks, i);
    EXPECT_EQ(vm_->stats().vmx_eoi_exits, i);
  }
  EXPECT_EQ(vm_->stats().pi_deliveries, 3u);
  EXPECT_EQ(EoiTraceLines(), 3);

  // An edge vector outside the bitmap: the EOI completes in the virtual APIC, KVM never sees it.
  ASSERT_EQ(vm_->wrmsr(0, kSelfIpi, 0x40), AccessResult::kHandled);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x40);
  ASSERT_EQ(vm_->wrmsr(0, kEoi, 0), AccessResult::kHandled);
  const VmStats s = vm_->stats();
  EXPECT_EQ(s.vmx_eois_virtualized, 1u);
  EXPECT_EQ(s.eois_accelerated, 1u);
  EXPECT_EQ(s.eois, 3u);
  EXPECT_EQ(s.pit_acks, 3u);
  EXPECT_EQ(EoiTraceLines(), 3);
  EXPECT_EQ(vm_->lapic(0).highest_isr(), -1);  // completed all the same
}

TEST_F(VmxVmTest, WithoutReinjectionThePitPinIsNotInTheBitmap) {
  Make(1, PitPolicy::kDiscard);
  MaskPic();
  WriteRte(2, 0x30, 0);
  Enter(1);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(0).test(0x30));  // no ack notifier registered
  vm_->set_isa_irq(0, true);
  vm_->set_isa_irq(0, false);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x30);
  ASSERT_EQ(vm_->wrmsr(0, kEoi, 0), AccessResult::kHandled);
  EXPECT_EQ(vm_->stats().vmx_eois_virtualized, 1u);
  EXPECT_EQ(vm_->stats().eois, 0u);
}

TEST_F(VmxVmTest, BitmapFollowsRteRewrites) {
  Make(2);
  MaskPic();
  WriteRte(5, 0x55 | kRteLevel | kRteMasked, 0);  // level, masked, dest vCPU 0
  Enter(2);
  // Masked level pins count: the scan does not look at the mask bit.
  EXPECT_TRUE(vm_->eoi_exit_bitmap(0).test(0x55));
  EXPECT_FALSE(vm_->eoi_exit_bitmap(1).test(0x55));
  WriteRte(5, 0x55 | kRteLevel, 1);  // retarget to vCPU 1
  Enter(2);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(0).test(0x55));
  EXPECT_TRUE(vm_->eoi_exit_bitmap(1).test(0x55));
  WriteRte(5, 0x56, 1);  // edge, new vector: no EOI exit anywhere
  Enter(2);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(1).test(0x55));
  EXPECT_FALSE(vm_->eoi_exit_bitmap(1).test(0x56));
  EXPECT_FALSE(vm_->eoi_exit_bitmap(0).test(0x56));
}

TEST_F(VmxVmTest, ScanRequestKicksRunningVcpusButDoesNotWakeHaltedOnes) {
  Make(3);
  MaskPic();
  vm_->vcpu_enter(1);                      // in the guest
  EXPECT_FALSE(vm_->has_events(2, true));  // halted
  const int k1 = Kicks(1), k2 = Kicks(2);
  WriteRte(5, 0x55 | kRteLevel, 2);
  // KVM_REQ_SCAN_IOAPIC is a NO_WAKEUP request: vCPU 2 rescans when something else wakes it.
  EXPECT_GT(Kicks(1), k1);
  EXPECT_EQ(Kicks(2), k2);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(2).test(0x55));
  vm_->check_and_inject_events(2, false, true);
  EXPECT_TRUE(vm_->eoi_exit_bitmap(2).test(0x55));
}

TEST_F(VmxVmTest, BitmapFollowsApicMapChanges) {
  Make(2);
  MaskPic();
  // Logical destination 0x02: x2APIC cluster 0, member bit 1, i.e. the derived LDR of x2APIC ID 1
  // (SDM 11.12.10.2); vCPU 0 is member bit 0.
  WriteRte(6, 0x66 | kRteLevel | (1u << 11), 0x02);
  Enter(2);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(0).test(0x66));
  EXPECT_TRUE(vm_->eoi_exit_bitmap(1).test(0x66));
  // vCPU 1 disables its APIC (x2APIC -> disabled is allowed): a map rebuild, and the scan of an
  // absent APIC yields an empty bitmap.
  ASSERT_EQ(vm_->wrmsr(1, 0x1B, 0), AccessResult::kHandled);
  Enter(2);
  EXPECT_FALSE(vm_->eoi_exit_bitmap(1).test(0x66));
}

TEST_F(VmxVmTest, LevelPostedInterruptKeepsItsTriggerModeAndItsEoiReachesTheIoapic) {
  Make(2);
  MaskPic();
  WriteRte(5, 0x55 | kRteLevel, 1);  // level, dest vCPU 1
  Enter(2);
  uint8_t one = 1;
  ASSERT_EQ(vm_->pio_out(0, 0x2005, &one, 1), AccessResult::kHandled);  // line 5 high
  EXPECT_TRUE(vm_->pi_desc(1).test_pir(0x55));
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x55);
  EXPECT_TRUE(TmrHas(1, 0x55));
  // The EOI exits (bitmap), the IOAPIC clears remote IRR and re-delivers the still-high line.
  ASSERT_EQ(vm_->wrmsr(1, kEoi, 0), AccessResult::kHandled);
  EXPECT_EQ(vm_->stats().vmx_eoi_exits, 1u);
  EXPECT_TRUE(vm_->pi_desc(1).test_pir(0x55));
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x55);
}

TEST_F(VmxVmTest, InhibitedVmxFallsBackToIrrRequestAndKick) {
  Make(2, PitPolicy::kDelay, /*enable_apicv=*/false);
  EXPECT_EQ(vm_->inhibit_reasons(), 1u);  // DISABLED
  vm_->vcpu_enter(1);
  const int k0 = Kicks(1);
  Ipi(0, 1, 0x61);
  EXPECT_FALSE(vm_->pi_desc(1).on());
  EXPECT_TRUE(vm_->pi_desc(1).pir_empty());
  EXPECT_EQ(Kicks(1), k0 + 1);
  vm_->vcpu_exit(1);
  // KVM injects it itself (KVM_INTERRUPT), and the EOI traps as it always did.
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x61);
  ASSERT_EQ(vm_->wrmsr(1, kEoi, 0), AccessResult::kHandled);
  const VmStats s = vm_->stats();
  EXPECT_EQ(s.pi_deliveries, 0u);
  EXPECT_EQ(s.injections, 1u);
  EXPECT_EQ(s.eois, 1u);
  EXPECT_EQ(s.vmx_eois_virtualized, 0u);
  EXPECT_EQ(s.vmx_eoi_exits, 0u);
  EXPECT_EQ(s.eois_accelerated, 0u);
}

TEST_F(VmxVmTest, InitDropsPostedVectors) {
  Make(2);
  Ipi(0, 1, 0x61);
  ASSERT_TRUE(vm_->pi_desc(1).on());
  // INIT to vCPU 1 (physical, assert): the vector posted before it is gone with its IRR.
  ASSERT_EQ(vm_->wrmsr(0, kIcr, (1ull << 32) | (5u << 8) | (1u << 14)), AccessResult::kHandled);
  ASSERT_EQ(vm_->take_mp_event(1).kind, MpEvent::kInit);
  EXPECT_FALSE(vm_->pi_desc(1).on());
  EXPECT_TRUE(vm_->pi_desc(1).pir_empty());
}

TEST_F(VmxVmTest, ConcurrentSendersLoseNoVectorAndNotifyAtMostOncePerHarvest) {
  constexpr int kVcpus = 4;
  constexpr int kPerSender = 40;
  Make(kVcpus);
  std::atomic<bool> stop{false};
  // vCPU 1 keeps entering and exiting, harvesting PIR each time, never acknowledging.
  std::thread target([&] {
    while (!stop.load()) {
      vm_->check_and_inject_events(1, false, true);
      vm_->vcpu_enter(1);
      vm_->vcpu_exit(1);
    }
  });
  std::vector<std::thread> senders;
  for (int s : {0, 2, 3}) {
    senders.emplace_back([&, s] {
      const int base = s == 0 ? 0x20 : s == 2 ? 0x60 : 0xA0;
      for (int i = 0; i < kPerSender; ++i) Ipi(s, 1, static_cast<uint8_t>(base + i));
    });
  }
  for (auto& t : senders) t.join();
  stop.store(true);
  target.join();
  vm_->check_and_inject_events(1, false, true);
  for (int base : {0x20, 0x60, 0xA0}) {
    for (int i = 0; i < kPerSender; ++i) EXPECT_TRUE(IrrHas(1, static_cast<uint8_t>(base + i)));
  }
  const VmStats st = vm_->stats();
  EXPECT_EQ(st.pi_deliveries, 3u * kPerSender);
  EXPECT_EQ(st.pi_notifications + st.pi_wakeups + st.pi_suppressed_on + st.pi_coalesced,
            st.pi_deliveries);
  // A notification needs ON clear, and only a harvest clears it.
  EXPECT_LE(st.pi_notifications + st.pi_wakeups, st.pi_harvests + 1);
}

}  // namespace
}  // namespace apicv::virt
