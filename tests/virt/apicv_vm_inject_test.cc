// kvm_check_and_inject_events() as ApicvVm models it (spec §4): one event per entry in the order
// NMI > ExtINT > LAPIC, the -EBUSY immediate exit after an NMI, which pending interrupts open an
// IRQ window with APICv active, and the split irqchip (ExtINT through pending_external_vector,
// the VMM's window request, IOAPIC EOIs exiting with KVM_EXIT_IOAPIC_EOI; spec §4, §9.3).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"

namespace apicv::virt {
namespace {

constexpr uint64_t kApicPage = 0xFEE00000;
constexpr unsigned long kIrqWinBit = 1ul << 8;

class InjectTest : public ::testing::Test {
 protected:
  void Make(VmConfig cfg) {
    vm_.reset();  // the VM (and its timer thread) must be gone before the sink it traces into
    sink_ = std::make_unique<trace::TraceSink>(clock_);
    sink_->set_ring_capacity(10000);
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, sink_.get());
    vm_->set_kick([](int) {});
    for (int v = 0; v < cfg.nr_vcpus; ++v) vm_->check_and_inject_events(v, false, false);
  }
  void Out(uint16_t port, uint8_t v) {
    ASSERT_EQ(vm_->pio_out(0, port, &v, 1), AccessResult::kHandled);
  }
  // 8259 pair at vectors 0x20 / 0x28, only IRQ0 unmasked (as SeaBIOS and Linux leave it).
  void InitPic() {
    for (uint8_t b : {0x11, 0x20, 0x04, 0x01}) Out(b == 0x11 ? 0x20 : 0x21, b);
    for (uint8_t b : {0x11, 0x28, 0x02, 0x01}) Out(b == 0x11 ? 0xA0 : 0xA1, b);
    Out(0x21, 0xFE);
    Out(0xA1, 0xFF);
  }
  void Irq0Pulse() {
    vm_->set_isa_irq(0, true);
    vm_->set_isa_irq(0, false);
  }
  void MmioWrite(int v, uint32_t offset, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(v, kApicPage + offset, &value, 4), AccessResult::kHandled);
  }
  void IoApicWrite(uint32_t index, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &index, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &value, 4), AccessResult::kHandled);
  }
  // xAPIC ICR from `src` to physical APIC ID `dest`.
  void Ipi(int src, uint8_t dest, uint32_t low) {
    MmioWrite(src, 0x310, static_cast<uint32_t>(dest) << 24);
    MmioWrite(src, 0x300, low);
  }
  size_t EventCount(const std::string& event) {
    size_t n = 0;
    for (const auto& l : sink_->ring_lines()) n += l.find(" " + event + ": ") != std::string::npos;
    return n;
  }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<trace::TraceSink> sink_;
  std::unique_ptr<ApicvVm> vm_;
};

// Both vCPUs software-enabled; vCPU 0 (the BSP) keeps LINT0 in ExtINT mode from RESET.
VmConfig TwoVcpus() {
  VmConfig cfg;
  cfg.nr_vcpus = 2;
  cfg.pit_policy = PitPolicy::kDiscard;
  return cfg;
}

TEST_F(InjectTest, OneEventPerEntryNmiThenExtIntThenLapic) {
  VmConfig cfg = TwoVcpus();
  cfg.enable_apicv = false;  // every interrupt goes through KVM's injection path
  Make(cfg);
  MmioWrite(0, 0xF0, 0x1FF);
  MmioWrite(1, 0xF0, 0x1FF);
  InitPic();
  Irq0Pulse();        // PIC IRQ0 -> ExtINT vector 0x20
  Ipi(1, 0, 0x4061);  // fixed vector 0x61 into vCPU 0's IRR
  Ipi(1, 0, 0x4400);  // NMI
  const uint64_t windows0 = vm_->stats().windows_requested;

  Injection e1 = vm_->check_and_inject_events(0, true, true);
  EXPECT_TRUE(e1.nmi);
  EXPECT_EQ(e1.vector, -1);
  // can_inject is false after inject_nmi(): -EBUSY, an immediate exit, no IRQ window.
  EXPECT_TRUE(e1.request_window);
  EXPECT_EQ(vm_->stats().windows_requested, windows0);

  Injection e2 = vm_->check_and_inject_events(0, true, true);
  EXPECT_FALSE(e2.nmi);
  EXPECT_EQ(e2.vector, 0x20);

  Injection e3 = vm_->check_and_inject_events(0, true, true);
  EXPECT_FALSE(e3.nmi);
  EXPECT_EQ(e3.vector, 0x61);

  Injection e4 = vm_->check_and_inject_events(0, true, true);
  EXPECT_FALSE(e4.nmi);
  EXPECT_EQ(e4.vector, -1);
  EXPECT_EQ(vm_->stats().nmis, 1u);
  EXPECT_EQ(vm_->stats().injections, 2u);
}

TEST_F(InjectTest, NmiWithApicvActiveDoesNotDeliverTheVirtualInterruptInTheSameEntry) {
  Make(TwoVcpus());  // svm, discard: AVIC active
  ASSERT_EQ(vm_->inhibit_reasons(), 0u);
  MmioWrite(0, 0xF0, 0x1FF);
  MmioWrite(1, 0xF0, 0x1FF);
  Ipi(1, 0, 0x4400);             // NMI: INVALID_INT_TYPE, emulated
  MmioWrite(0, 0x300, 0x44062);  // self-IPI 0x62: set in the backing page IRR
  Injection e1 = vm_->check_and_inject_events(0, true, true);
  EXPECT_TRUE(e1.nmi);
  EXPECT_EQ(e1.vector, -1);
  Injection e2 = vm_->check_and_inject_events(0, true, true);
  EXPECT_FALSE(e2.nmi);
  EXPECT_EQ(e2.vector, 0x62);
  EXPECT_EQ(vm_->stats().windows_requested, 0u);
}

TEST_F(InjectTest, ApicvActiveLapicInterruptOpensNoWindowButExtIntDoes) {
  VmConfig cfg = TwoVcpus();
  cfg.nr_vcpus = 1;
  cfg.irqwin = IrqWindowMode::kLegacy;  // IRQWIN shows directly in the mask
  Make(cfg);
  ASSERT_EQ(vm_->inhibit_reasons(), 0u);
  MmioWrite(0, 0xF0, 0x1FF);
  MmioWrite(0, 0x300, 0x44063);  // self-IPI 0x63
  // Interrupts blocked: AVIC will deliver 0x63 from vIRR by itself; KVM opens no window.
  vm_->check_and_inject_events(0, false, false);
  EXPECT_EQ(vm_->stats().windows_requested, 0u);
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x63);
  MmioWrite(0, 0xB0, 0);

  // ExtINT cannot be posted to the backing page: enable_irq_window() sets IRQWIN.
  InitPic();
  Irq0Pulse();
  Injection e = vm_->check_and_inject_events(0, false, false);
  EXPECT_TRUE(e.request_window);
  EXPECT_EQ(vm_->stats().windows_requested, 1u);
  EXPECT_EQ(vm_->inhibit_reasons(), kIrqWinBit);
  vm_->interrupt_window_exit(0);
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
}

// ---------------------------------------------------------------------------------------------
// kernel-irqchip=split

VmConfig Split(bool apicv) {
  VmConfig cfg;
  cfg.placement = IrqchipPlacement::kSplit;
  cfg.irqwin = IrqWindowMode::kLegacy;
  cfg.enable_apicv = apicv;
  return cfg;
}

TEST_F(InjectTest, SplitHasNoPitReinjAndAvicStaysActive) {
  Make(Split(true));
  // Creating the split irqchip cleared ABSENT; no in-kernel PIT, so no PIT_REINJ.
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
}

TEST_F(InjectTest, SplitExtIntGoesThroughPendingExternalVector) {
  Make(Split(true));
  InitPic();
  Irq0Pulse();
  const uint64_t vmm0 = vm_->stats().vmm_exits;
  // Ready: the VMM acknowledges the PIC (one VMM-layer access) and KVM_INTERRUPT stores the
  // vector in pending_external_vector, which KVM injects on this entry.
  Injection e = vm_->check_and_inject_events(0, true, true);
  EXPECT_EQ(e.vector, 0x20);
  EXPECT_EQ(vm_->stats().vmm_exits - vmm0, 1u);
  EXPECT_EQ(vm_->stats().windows_requested, 0u);
  // Consumed: nothing left, no second acknowledge.
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, -1);
  EXPECT_EQ(vm_->stats().vmm_exits - vmm0, 1u);
}

TEST_F(InjectTest, SplitExtIntWhileBlockedRequestsAWindowThatTogglesIrqwin) {
  Make(Split(true));
  InitPic();
  sink_->clear_ring();
  Irq0Pulse();
  // Not ready: the VMM asks for a window (req_int_win) -> enable_irq_window() -> IRQWIN.
  Injection e = vm_->check_and_inject_events(0, false, false);
  EXPECT_TRUE(e.request_window);
  EXPECT_EQ(e.vector, -1);
  EXPECT_EQ(vm_->stats().windows_requested, 1u);
  EXPECT_EQ(vm_->inhibit_reasons(), kIrqWinBit);
  vm_->interrupt_window_exit(0);
  EXPECT_EQ(vm_->inhibit_reasons(), 0u);
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x20);
  EXPECT_EQ(vm_->stats().window_exits, 1u);
}

TEST_F(InjectTest, SplitLevelIoApicEoiExitsToTheVmmLayer) {
  Make(Split(true));
  MmioWrite(0, 0xF0, 0x1FF);
  // IOAPIC pin 17 (no 8259 input): vector 0x55, level, physical destination 0; the line stays
  // high.
  IoApicWrite(0x10 + 2 * 17, 0x55 | (1u << 15));
  IoApicWrite(0x10 + 2 * 17 + 1, 0);
  vm_->set_isa_irq(17, true);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  const VmStats s0 = vm_->stats();
  sink_->clear_ring();
  MmioWrite(0, 0xB0, 0);  // traps (level vector under AVIC), reaches apic_set_eoi()
  const VmStats s1 = vm_->stats();
  EXPECT_EQ(s1.split_ioapic_eoi_exits - s0.split_ioapic_eoi_exits, 1u);
  EXPECT_EQ(s1.vmm_exits - s0.vmm_exits, 1u);
  EXPECT_EQ(EventCount("kvm_eoi"), 1u);
  // The VMM-layer IOAPIC got the EOI: remote IRR cleared, the still-high line re-delivers.
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
}

TEST_F(InjectTest, SplitEoiOfAVectorTheIoApicDoesNotRouteStaysInKvm) {
  Make(Split(false));  // avic off: every EOI reaches apic_set_eoi()
  MmioWrite(0, 0xF0, 0x1FF);
  // Edge self-IPI and level-triggered self-IPI: neither vector is in a level RTE.
  MmioWrite(0, 0x300, 0x44045);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x45);
  MmioWrite(0, 0xB0, 0);
  MmioWrite(0, 0x300, 0x4C066);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x66);
  MmioWrite(0, 0xB0, 0);
  const VmStats s = vm_->stats();
  EXPECT_EQ(s.eois, 2u);
  EXPECT_EQ(s.split_ioapic_eoi_exits, 0u);
}

TEST_F(InjectTest, SplitEdgeIoApicVectorEoiDoesNotExit) {
  Make(Split(false));
  MmioWrite(0, 0xF0, 0x1FF);
  IoApicWrite(0x10 + 2 * 17, 0x56);  // edge
  IoApicWrite(0x10 + 2 * 17 + 1, 0);
  vm_->set_isa_irq(17, true);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x56);
  const uint64_t vmm0 = vm_->stats().vmm_exits;
  MmioWrite(0, 0xB0, 0);
  EXPECT_EQ(vm_->stats().split_ioapic_eoi_exits, 0u);
  EXPECT_EQ(vm_->stats().vmm_exits, vmm0);
}

}  // namespace
}  // namespace apicv::virt
