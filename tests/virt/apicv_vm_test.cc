// ApicvVm driven single-threaded, as a backend would: accesses, then check_and_inject_events.
// Expected trace text comes from the seeds and spec §2-§5, never from running this code.
#include "virt/apicv_vm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "trace/trace_sink.h"

namespace apicv::virt {
namespace {

constexpr uint32_t kIcr = 0x830;
constexpr uint32_t kSelfIpi = 0x83F;

class VmTest : public ::testing::Test {
 protected:
  void Make(VmConfig cfg) {
    vm_.reset();  // the VM (and its timer thread) must be gone before the sink it traces into
    sink_ = std::make_unique<trace::TraceSink>(clock_);
    sink_->set_ring_capacity(10000);
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, sink_.get());
    vm_->set_kick([](int) {});
  }
  std::vector<std::string> Bodies() {
    std::vector<std::string> out;
    for (const auto& l : sink_->ring_lines()) {
      auto p = l.find("kvm_apicv_inhibit_changed: ");
      if (p != std::string::npos) out.push_back(l.substr(p + 27));
    }
    return out;
  }
  void EnableX2Apic(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, 0x1FF), AccessResult::kHandled);  // SPIV: software enable
  }
  void Out(uint16_t port, uint8_t v) {
    ASSERT_EQ(vm_->pio_out(0, port, &v, 1), AccessResult::kHandled);
  }
  // SeaBIOS/Linux-style 8259 init: master at 0x20, slave at 0x28, only IRQ0 unmasked.
  void InitPic() {
    Out(0x20, 0x11);
    Out(0x21, 0x20);
    Out(0x21, 0x04);
    Out(0x21, 0x01);
    Out(0xA0, 0x11);
    Out(0xA1, 0x28);
    Out(0xA1, 0x02);
    Out(0xA1, 0x01);
    Out(0x21, 0xFE);
    Out(0xA1, 0xFF);
  }
  // One ISA IRQ 0 edge, as the PIT's pit_do_work() raises it; the PIT itself is not involved
  // (the PIT tests below program it through its ports).
  void PulseIsaIrq0() {
    vm_->set_isa_irq(0, true);
    vm_->set_isa_irq(0, false);
  }
  // Channel 0, lobyte/hibyte, mode 2, count 1193 (999.8 us; 8254 datasheet), then the fake clock
  // passes `expiries` periods plus half of one and a counter-latch command pokes the timer
  // thread; waits until the PIT's first IRQ0 pulse (VmStats::pit_ticks).
  void RunPitPeriods(int expiries) {
    Out(0x43, 0x34);
    Out(0x40, 0xA9);
    Out(0x40, 0x04);
    clock_.advance(static_cast<uint64_t>(expiries) * 999'848 + 500'000);
    Out(0x43, 0x00);
    for (int i = 0; i < 400 && vm_->stats().pit_ticks == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(vm_->stats().pit_ticks, 1u);
  }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<trace::TraceSink> sink_;
  std::unique_ptr<ApicvVm> vm_;
};

TEST_F(VmTest, IrqchipOnWithDelayStartsWithPitReinjOnSvm) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  auto b = Bodies();
  ASSERT_FALSE(b.empty());
  // kvm_apicv_init: "set reason=2, inhibits=0x4 ABSENT" (spec §2.5).
  EXPECT_EQ(b.front(), "set reason=2, inhibits=0x4 ABSENT");
  EXPECT_NE(std::find(b.begin(), b.end(), "set reason=9, inhibits=0x200 PIT_REINJ"), b.end());
  EXPECT_EQ(vm_->inhibit_reasons(), 0x200u);
}

TEST_F(VmTest, AvicOffTracesDisabledOnly) {
  VmConfig cfg;
  cfg.enable_apicv = false;
  Make(cfg);
  auto b = Bodies();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0], "set reason=0, inhibits=0x1 DISABLED");
}

TEST_F(VmTest, DiscardPolicyLeavesNoPitReinj) {
  VmConfig cfg;
  cfg.pit_policy = PitPolicy::kDiscard;
  Make(cfg);
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
}

TEST_F(VmTest, IrqchipOffKeepsAbsent) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kOff;
  Make(cfg);
  EXPECT_EQ(vm_->inhibit_reasons(), 0x4u);
}

TEST_F(VmTest, X2ApicSelfIpiIsInjectedWhenReady) {
  VmConfig cfg;
  Make(cfg);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->wrmsr(0, kSelfIpi, 0x45), AccessResult::kHandled);
  Injection inj = vm_->check_and_inject_events(0, /*ready=*/true, true);
  EXPECT_EQ(inj.vector, 0x45);
  EXPECT_FALSE(inj.request_window);
}

TEST_F(VmTest, X2ApicModeMsrsFaultInXApicMode) {
  VmConfig cfg;
  Make(cfg);
  uint64_t v;
  EXPECT_EQ(vm_->rdmsr(0, 0x802, &v), AccessResult::kGp);
  EXPECT_EQ(vm_->wrmsr(0, kSelfIpi, 0x45), AccessResult::kGp);
}

TEST_F(VmTest, PhysicalIpiReachesTheOtherVcpu) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  EnableX2Apic(0);
  EnableX2Apic(1);
  ASSERT_EQ(vm_->wrmsr(0, kIcr, (1ull << 32) | 0x61), AccessResult::kHandled);
  EXPECT_TRUE(vm_->has_events(1, true));
  Injection inj = vm_->check_and_inject_events(1, true, true);
  EXPECT_EQ(inj.vector, 0x61);
  Injection none = vm_->check_and_inject_events(0, true, true);
  EXPECT_EQ(none.vector, -1);
}

TEST_F(VmTest, InitSipiReachAnAp) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->wrmsr(0, kIcr, (1ull << 32) | 0x4500), AccessResult::kHandled);  // INIT
  EXPECT_EQ(vm_->take_mp_event(1).kind, MpEvent::kInit);
  ASSERT_EQ(vm_->wrmsr(0, kIcr, (1ull << 32) | 0x4610), AccessResult::kHandled);  // SIPI 0x10
  MpEvent e = vm_->take_mp_event(1);
  EXPECT_EQ(e.kind, MpEvent::kSipi);
  EXPECT_EQ(e.sipi_vector, 0x10);
}

TEST_F(VmTest, Seed000LegacyTogglesIrqwinOnTopOfPitReinj) {
  VmConfig cfg;
  cfg.irqwin = IrqWindowMode::kLegacy;
  Make(cfg);
  InitPic();
  sink_->clear_ring();
  for (int i = 0; i < 3; ++i) {
    PulseIsaIrq0();
    // Interrupts disabled: the ExtINT cannot be injected, a window opens.
    Injection inj = vm_->check_and_inject_events(0, /*ready=*/false, false);
    EXPECT_TRUE(inj.request_window);
    vm_->interrupt_window_exit(0);
    inj = vm_->check_and_inject_events(0, true, true);
    EXPECT_EQ(inj.vector, 0x20);
    Out(0x20, 0x20);  // EOI -> ack notifier -> next owed tick may be injected
  }
  auto b = Bodies();
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < b.size(); i += 2) {
    EXPECT_EQ(b[i], "set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ");
    EXPECT_EQ(b[i + 1], "cleared reason=8, inhibits=0x200 PIT_REINJ");
  }
  EXPECT_GE(vm_->stats().inhibits.write_locks, 6u);
}

TEST_F(VmTest, Seed000CountedTakesNoWriteLockPerWindow) {
  VmConfig cfg;
  cfg.irqwin = IrqWindowMode::kCounted;
  Make(cfg);
  InitPic();
  sink_->clear_ring();
  const uint64_t wl = vm_->stats().inhibits.write_locks;
  const uint64_t bc = vm_->stats().inhibits.broadcasts;
  for (int i = 0; i < 3; ++i) {
    PulseIsaIrq0();
    EXPECT_TRUE(vm_->check_and_inject_events(0, false, false).request_window);
    vm_->interrupt_window_exit(0);
    EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
    Out(0x20, 0x20);
  }
  EXPECT_TRUE(Bodies().empty());
  EXPECT_EQ(vm_->stats().inhibits.write_locks, wl);
  EXPECT_EQ(vm_->stats().inhibits.broadcasts, bc);
  EXPECT_EQ(vm_->stats().window_exits, 3u);
}

// KVM's lost_tick_policy=delay (reinjection): two PIT expiries before the guest acknowledges the
// first give one IRQ0 now and hold the second until the EOI's ack notifier (kvm_pit_ack_irq).
TEST_F(VmTest, PitDelayPolicyHoldsTheSecondExpiryUntilTheFirstIsAcked) {
  VmConfig cfg;  // kernel-irqchip=on, lost_tick_policy=delay
  Make(cfg);
  InitPic();
  RunPitPeriods(2);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, -1);
  EXPECT_EQ(vm_->stats().pit_ticks, 1u);  // the second expiry is owed, not pulsed
  Out(0x20, 0x20);                        // EOI: ack notifier -> the owed tick
  EXPECT_EQ(vm_->stats().pit_acks, 1u);
  EXPECT_EQ(vm_->stats().pit_ticks, 2u);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
  Out(0x20, 0x20);
  EXPECT_EQ(vm_->stats().pit_acks, 2u);
  EXPECT_EQ(vm_->stats().pit_ticks, 2u);  // nothing else owed
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, -1);
  // Two edges generated, two ticks delivered: the bound the pit-extint guest reads at port 0x2104.
  EXPECT_EQ(vm_->pit_irq0_edges(), 2u);
}

// lost_tick_policy=discard: the same two expiries give one IRQ0, and the EOI brings no other.
TEST_F(VmTest, PitDiscardPolicyDropsTheSecondExpiry) {
  VmConfig cfg;
  cfg.pit_policy = PitPolicy::kDiscard;
  Make(cfg);
  InitPic();
  RunPitPeriods(2);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
  Out(0x20, 0x20);
  EXPECT_EQ(vm_->stats().pit_acks, 0u);  // no ack notifier without reinjection
  EXPECT_EQ(vm_->stats().pit_ticks, 1u);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, -1);
  EXPECT_EQ(vm_->pit_irq0_edges(), 2u);  // both edges counted, one tick dropped
}

TEST_F(VmTest, Seed004RebootAfterX2ApicKeepsApicIdModifiedOnlyWith2022Rule) {
  for (ApicIdCheck rule : {ApicIdCheck::k2022, ApicIdCheck::kCurrent}) {
    VmConfig cfg;
    cfg.nr_vcpus = 2;
    cfg.apic_id_check = rule;
    Make(cfg);
    EnableX2Apic(0);
    EnableX2Apic(1);
    vm_->reset();
    const bool modified = vm_->inhibit_reasons() & (1ul << 5);
    EXPECT_EQ(modified, rule == ApicIdCheck::k2022);
  }
}

TEST_F(VmTest, XApicIdWriteSetsAndClearsApicIdModifiedWithCurrentRule) {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  Make(cfg);
  uint32_t id = 7u << 24;
  ASSERT_EQ(vm_->mmio_write(1, 0xFEE00020, &id, 4), AccessResult::kHandled);
  EXPECT_TRUE(vm_->inhibit_reasons() & (1ul << 5));
  id = 1u << 24;
  ASSERT_EQ(vm_->mmio_write(1, 0xFEE00020, &id, 4), AccessResult::kHandled);
  EXPECT_FALSE(vm_->inhibit_reasons() & (1ul << 5));
}

// vCPU 256 in xAPIC mode holds ID 0 (= 256 & 0xff). Writing that same ID back: the first 2022 hook
// (3743c2f02517) compared it with the untruncated vCPU id on every write and inhibited for good;
// the current rule compares with (u8)vcpu_id and never flags it (spec 6.7, seed 005).
TEST_F(VmTest, UnchangedXApicIdRewriteAbove255FlagsOnlyWith2022Rule) {
  for (ApicIdCheck rule : {ApicIdCheck::k2022, ApicIdCheck::kCurrent}) {
    VmConfig cfg;
    cfg.nr_vcpus = 257;
    cfg.apic_id_check = rule;
    Make(cfg);
    ASSERT_FALSE(vm_->inhibit_reasons() & (1ul << 5));
    uint32_t id = 0;
    ASSERT_EQ(vm_->mmio_read(256, 0xFEE00020, &id, 4), AccessResult::kHandled);
    ASSERT_EQ(id, 0u);
    ASSERT_EQ(vm_->mmio_write(256, 0xFEE00020, &id, 4), AccessResult::kHandled);
    EXPECT_EQ((vm_->inhibit_reasons() & (1ul << 5)) != 0, rule == ApicIdCheck::k2022);
    // vCPU 1 rewriting its own ID 1 is never a mismatch.
    if (rule == ApicIdCheck::kCurrent) {
      id = 1u << 24;
      ASSERT_EQ(vm_->mmio_write(1, 0xFEE00020, &id, 4), AccessResult::kHandled);
      EXPECT_FALSE(vm_->inhibit_reasons() & (1ul << 5));
    }
  }
}

TEST_F(VmTest, PmiLegacyDeliversTwoNmisCurrentDeliversOneAndMasksLvtpc) {
  for (PmiDelivery mode : {PmiDelivery::kLegacy, PmiDelivery::kCurrent}) {
    VmConfig cfg;
    cfg.pmi_delivery = mode;
    Make(cfg);
    EnableX2Apic(0);
    ASSERT_EQ(vm_->wrmsr(0, 0x834, 0x400), AccessResult::kHandled);  // LVTPC: NMI mode
    // GP counter 0: instructions retired (0xC0), OS, INT, EN; counter armed at -1.
    ASSERT_EQ(vm_->wrmsr(0, 0x186, 0xC0 | (1 << 17) | (1 << 20) | (1 << 22)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(0, 0xC1, 0xFFFFFFFF), AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(0, 0x38F, 1), AccessResult::kHandled);
    vm_->instruction_emulated(0);  // overflow
    int nmis = 0;
    for (int i = 0; i < 4; ++i) nmis += vm_->check_and_inject_events(0, true, true).nmi;
    uint64_t lvtpc = 0;
    ASSERT_EQ(vm_->rdmsr(0, 0x834, &lvtpc), AccessResult::kHandled);
    if (mode == PmiDelivery::kLegacy) {
      EXPECT_EQ(nmis, 2);
      EXPECT_FALSE(lvtpc & (1u << 16));
    } else {
      EXPECT_EQ(nmis, 1);
      EXPECT_TRUE(lvtpc & (1u << 16));
    }
  }
}

// Cycle counters count guest time only (entry to exit, measured with the TSC) and overflow into
// a PMI request at the exit; time spent outside the guest does not count.
TEST_F(VmTest, CyclesCounterCountsGuestTimeAndOverflowsAtExit) {
  VmConfig cfg;
  Make(cfg);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->wrmsr(0, 0x834, 0x400), AccessResult::kHandled);  // LVTPC: NMI mode
  // GP counter 0: unhalted core cycles (event 0x3C), OS, INT, EN; GLOBAL_CTRL bit 0.
  ASSERT_EQ(vm_->wrmsr(0, 0x186, 0x3C | (1 << 17) | (1 << 20) | (1 << 22)), AccessResult::kHandled);
  ASSERT_EQ(vm_->wrmsr(0, 0x38F, 1), AccessResult::kHandled);
  const uint64_t kMask48 = (1ull << 48) - 1;
  // Legacy IA32_PMC0 writes sign-extend bit 31: 2^31 cycles before the wrap.
  const uint64_t start = (0ull - (1ull << 31)) & kMask48;
  ASSERT_EQ(vm_->wrmsr(0, 0xC1, 0x80000000u), AccessResult::kHandled);

  // 50M TSC ticks outside the guest (the guest TSC is the VM's Clock's: 1 GHz on the FakeClock),
  // then an empty guest entry: the counter moves by the entry-to-exit interval only.
  clock_.advance(50'000'000);
  vm_->vcpu_enter(0);
  vm_->vcpu_exit(0);
  uint64_t v = 0;
  ASSERT_EQ(vm_->rdmsr(0, 0xC1, &v), AccessResult::kHandled);
  EXPECT_EQ(((v - start) & kMask48), 0u);

  // Armed 1000 cycles before the wrap, with 1M ticks spent in the guest: overflow, status bit 0,
  // and exactly one PMI (NMI mode) once the request is processed.
  ASSERT_EQ(vm_->wrmsr(0, 0xC1, 0xFFFFFFFFu - 999), AccessResult::kHandled);  // -1000
  vm_->vcpu_enter(0);
  clock_.advance(1'000'000);
  vm_->vcpu_exit(0);
  uint64_t status = 0;
  ASSERT_EQ(vm_->rdmsr(0, 0x38E, &status), AccessResult::kHandled);
  EXPECT_EQ(status & 1, 1u);
  int nmis = 0;
  for (int i = 0; i < 3; ++i) nmis += vm_->check_and_inject_events(0, true, true).nmi;
  EXPECT_EQ(nmis, 1);
}

// kvm_ioapic_set_irq and kvm_pic_set_irq are emitted for every line change the devices see.
TEST_F(VmTest, IsaLineChangesAreTracedForPicAndIoApic) {
  VmConfig cfg;
  Make(cfg);
  // IOAPIC pin 5: vector 0x55, edge, physical destination 0.
  uint32_t sel = 0x10 + 2 * 5, lo = 0x55;
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &sel, 4), AccessResult::kHandled);
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &lo, 4), AccessResult::kHandled);
  sink_->clear_ring();
  vm_->set_isa_irq(5, true);
  int pic = 0, ioapic = 0;
  for (const auto& l : sink_->ring_lines()) {
    if (l.find("kvm_pic_set_irq: chip 0 pin 5 ") != std::string::npos) ++pic;
    if (l.find("kvm_ioapic_set_irq: pin 5 dst 0 vec 85 (Fixed|physical|edge)") != std::string::npos)
      ++ioapic;
  }
  EXPECT_EQ(pic, 1);
  EXPECT_EQ(ioapic, 1);
}

TEST_F(VmTest, TestDevicePortDrivesIoApicLevelLine) {
  VmConfig cfg;
  Make(cfg);
  EnableX2Apic(0);
  InitPic();
  Out(0x21, 0xFF);  // PIC fully masked: only the IOAPIC sees line 5
  // IOAPIC pin 5: vector 0x55, level, physical dest 0.
  uint32_t sel = 0x10 + 2 * 5, lo = 0x55 | (1u << 15), hi = 0;
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &sel, 4), AccessResult::kHandled);
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &lo, 4), AccessResult::kHandled);
  sel = 0x10 + 2 * 5 + 1;
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &sel, 4), AccessResult::kHandled);
  ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &hi, 4), AccessResult::kHandled);
  uint8_t one = 1;
  ASSERT_EQ(vm_->pio_out(0, 0x2005, &one, 1), AccessResult::kHandled);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  // EOI while the line is still high: remote IRR clears and the IOAPIC re-delivers.
  ASSERT_EQ(vm_->wrmsr(0, 0x80B, 0), AccessResult::kHandled);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
}

}  // namespace
}  // namespace apicv::virt

namespace apicv::virt {
namespace {

TEST_F(VmTest, BroadcastInitSipiExcludingSelfReachesEveryAp) {
  VmConfig cfg;
  cfg.nr_vcpus = 3;
  Make(cfg);
  // xAPIC mode, software-disabled APs (reset state): INIT/SIPI still arrive (SDM 11.6.1 note:
  // INIT and SIPI are accepted by a software-disabled APIC).
  uint32_t icr2 = 0, icr = 0x000C4500;  // all excluding self, INIT, assert
  ASSERT_EQ(vm_->mmio_write(0, 0xFEE00310, &icr2, 4), AccessResult::kHandled);
  ASSERT_EQ(vm_->mmio_write(0, 0xFEE00300, &icr, 4), AccessResult::kHandled);
  icr = 0x000C4608;  // SIPI vector 8
  ASSERT_EQ(vm_->mmio_write(0, 0xFEE00300, &icr, 4), AccessResult::kHandled);
  for (int ap = 1; ap < 3; ++ap) {
    EXPECT_EQ(vm_->take_mp_event(ap).kind, MpEvent::kInit) << ap;
    MpEvent e = vm_->take_mp_event(ap);
    EXPECT_EQ(e.kind, MpEvent::kSipi) << ap;
    EXPECT_EQ(e.sipi_vector, 8) << ap;
  }
  EXPECT_EQ(vm_->take_mp_event(0).kind, MpEvent::kNone);
}

}  // namespace
}  // namespace apicv::virt
