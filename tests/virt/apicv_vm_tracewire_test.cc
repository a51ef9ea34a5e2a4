// Where ApicvVm emits the KVM tracepoints that follow an interrupt through the in-kernel irqchip:
// kvm_set_irq (kvm_set_irq() for a GSI: KVM_IRQ_LINE source 0, the PIT source 2), kvm_pic_set_irq
// with " (coalesced)" (kvm_pic_set_irq(): pic_set_irq1() returned 0), kvm_msi_set_irq (kvm_set_msi
// for the split irqchip's MSI-routed IOAPIC pins), kvm_ack_irq (kvm_notify_acked_irq() from the
// PIC's ISR clear and the IOAPIC's EOI), kvm_eoi with vector -1 (apic_set_eoi() on an empty ISR),
// kvm_apicv_accept_irq (vmx_deliver_interrupt / svm_complete_interrupt_delivery), kvm_avic_doorbell
// (avic_ring_doorbell) and kvm_avic_kick_vcpu_slowpath (avic_kick_target_vcpus). Expected bodies
// are written from the TP_printk formats in arch/x86/kvm/trace.h and include/trace/events/kvm.h;
// which placement owns which device follows -machine kernel-irqchip=on|split|off.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "traced_vm_fixture.h"

namespace apicv::virt {
namespace {

using Lines = std::vector<std::string>;

constexpr uint32_t kIcrMsr = 0x830;
constexpr uint32_t kEoiMsr = 0x80B;
constexpr uint16_t kTestDev = 0x2000;

class TraceWireTest : public TracedVmTest {
 protected:
  void Make(int nr_vcpus, VendorModel vendor, PitPolicy policy,
            IrqchipPlacement placement = IrqchipPlacement::kOn, AvicKick kick = AvicKick::kFast) {
    VmConfig cfg;
    cfg.nr_vcpus = nr_vcpus;
    cfg.vendor = vendor;
    cfg.pit_policy = policy;
    cfg.placement = placement;
    cfg.avic_kick = kick;
    MakeVm(cfg);
  }
  void Out(uint16_t port, uint8_t value) {
    ASSERT_EQ(vm_->pio_out(0, port, &value, 1), AccessResult::kHandled);
  }
  void Rte(unsigned pin, uint32_t low, uint32_t high) {
    IoApicWrite(0x10 + 2 * pin, low);
    IoApicWrite(0x10 + 2 * pin + 1, high);
  }
  // "event: body" for the listed events, in trace order.
  Lines Seq(const std::vector<std::string>& events) {
    Lines out;
    for (const auto& l : sink_->ring_lines()) {
      for (const auto& e : events) {
        const std::string key = " " + e + ": ";
        const size_t p = l.find(key);
        if (p != std::string::npos) out.push_back(e + ": " + l.substr(p + key.size()));
      }
    }
    return out;
  }
};

const std::vector<std::string> kLineEvents = {"kvm_set_irq", "kvm_pic_set_irq",
                                              "kvm_ioapic_set_irq", "kvm_msi_set_irq"};

// ---------------------------------------------------------------------------------------------
// kvm_set_irq and kvm_pic_set_irq " (coalesced)"

TEST_F(TraceWireTest, IrqLineTracesGsiThenPicThenIoapicAndCoalescesTheSecondEdge) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  sink_->clear_ring();
  // ISA IRQ 3 pulsed twice with no INTA between: the second rising edge finds IRR3 set.
  for (int i = 0; i < 2; ++i) {
    Out(kTestDev + 3, 1);
    Out(kTestDev + 3, 0);
  }
  // kvm_set_irq() first, then the routes: PIC pin 3, then IOAPIC pin 3 (the IOAPIC line's body is
  // the IOAPIC model's business and not checked here).
  Lines got = Seq(kLineEvents);
  for (auto& l : got)
    if (l.rfind("kvm_ioapic_set_irq: pin 3 ", 0) == 0) l = "kvm_ioapic_set_irq";
  EXPECT_EQ(got,
            (Lines{"kvm_set_irq: gsi 3 level 1 source 0", "kvm_pic_set_irq: chip 0 pin 3 (edge)",
                   "kvm_ioapic_set_irq", "kvm_set_irq: gsi 3 level 0 source 0",
                   "kvm_pic_set_irq: chip 0 pin 3 (edge)", "kvm_ioapic_set_irq",
                   "kvm_set_irq: gsi 3 level 1 source 0",
                   "kvm_pic_set_irq: chip 0 pin 3 (edge) (coalesced)", "kvm_ioapic_set_irq",
                   "kvm_set_irq: gsi 3 level 0 source 0", "kvm_pic_set_irq: chip 0 pin 3 (edge)",
                   "kvm_ioapic_set_irq"}));
}

TEST_F(TraceWireTest, MaskedPicPinIsMaskedNotCoalesced) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  Out(0x21, 0x10);  // OCW1 (uninitialised chip): mask IRQ4
  sink_->clear_ring();
  for (int i = 0; i < 2; ++i) {
    Out(kTestDev + 4, 1);
    Out(kTestDev + 4, 0);
  }
  Lines pic;
  for (const auto& l : Seq({"kvm_pic_set_irq"})) pic.push_back(l);
  EXPECT_EQ(pic, Lines(4, "kvm_pic_set_irq: chip 0 pin 4 (edge|masked)"));
}

TEST_F(TraceWireTest, SlaveLevelPinAssertedTwiceIsCoalesced) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  Out(0x4D1, 0x02);  // ELCR2: IRQ9 level-triggered
  sink_->clear_ring();
  Out(kTestDev + 9, 1);
  Out(kTestDev + 9, 1);
  EXPECT_EQ(Seq({"kvm_pic_set_irq"}), (Lines{"kvm_pic_set_irq: chip 1 pin 1 (level)",
                                             "kvm_pic_set_irq: chip 1 pin 1 (level) (coalesced)"}));
}

TEST_F(TraceWireTest, PitTickIsGsiZeroFromThePitSource) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  sink_->clear_ring();
  // Channel 0, lobyte/hibyte, mode 2, count 1193 (~1 ms); then let the fake clock pass it and
  // poke the timer thread with a counter-latch command.
  Out(0x43, 0x34);
  Out(0x40, 0xA9);
  Out(0x40, 0x04);
  clock_.advance(2'000'000);
  Out(0x43, 0x00);
  Lines seen;
  for (int i = 0; i < 400; ++i) {
    seen = Seq({"kvm_set_irq"});
    if (seen.size() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(seen.size(), 2u);
  // pit_do_work(): raise then lower GSI 0 from KVM_PIT_IRQ_SOURCE_ID.
  EXPECT_EQ(seen[0], "kvm_set_irq: gsi 0 level 1 source 2");
  EXPECT_EQ(seen[1], "kvm_set_irq: gsi 0 level 0 source 2");
}

TEST_F(TraceWireTest, SplitAndOffPlacementsTraceNoInKernelPicOrIoapicLines) {
  for (IrqchipPlacement p : {IrqchipPlacement::kSplit, IrqchipPlacement::kOff}) {
    Make(1, VendorModel::kSvm, PitPolicy::kDiscard, p);
    sink_->clear_ring();
    Out(kTestDev + 3, 1);
    Out(kTestDev + 3, 0);
    Out(0xA0, 0x61);  // specific EOI, slave IR1
    EXPECT_TRUE(
        Seq({"kvm_set_irq", "kvm_pic_set_irq", "kvm_ioapic_set_irq", "kvm_ack_irq"}).empty());
  }
}

// ---------------------------------------------------------------------------------------------
// kvm_msi_set_irq (split irqchip)

TEST_F(TraceWireTest, SplitIoapicPinIsAnMsiRoutedGsi) {
  Make(2, VendorModel::kSvm, PitPolicy::kDiscard, IrqchipPlacement::kSplit);
  EnableX2Apic(0);
  EnableX2Apic(1);
  Rte(17, 0x55 | (1u << 15), 0x01000000);  // level, vector 0x55, physical destination 1
  Rte(18, 0x56, 0);                        // edge, vector 0x56, physical destination 0
  sink_->clear_ring();
  vm_->set_isa_irq(17, true);
  vm_->set_isa_irq(18, true);
  vm_->set_isa_irq(18, false);
  // QEMU's MSI for the RTE: address 0xFEE00000 | dest << 12, data vector | trigger << 15. An edge
  // pin is raised and lowered at once; kvm_set_msi() traces only the assertion.
  EXPECT_EQ(Seq({"kvm_set_irq", "kvm_msi_set_irq", "kvm_apic_accept_irq", "kvm_ioapic_set_irq"}),
            (Lines{"kvm_set_irq: gsi 17 level 1 source 0",
                   "kvm_msi_set_irq: dst 1 vec 85 (Fixed|physical|level)",
                   "kvm_apic_accept_irq: apicid 1 vec 85 (Fixed|level)",
                   "kvm_set_irq: gsi 18 level 1 source 0",
                   "kvm_msi_set_irq: dst 0 vec 86 (Fixed|physical|edge)",
                   "kvm_apic_accept_irq: apicid 0 vec 86 (Fixed|edge)",
                   "kvm_set_irq: gsi 18 level 0 source 0"}));
}

TEST_F(TraceWireTest, InKernelIoapicDeliveryHasNoMsiLine) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  EnableX2Apic(0);
  Rte(17, 0x55 | (1u << 15), 0);
  sink_->clear_ring();
  vm_->set_isa_irq(17, true);
  EXPECT_EQ(Seq({"kvm_set_irq", "kvm_msi_set_irq", "kvm_ioapic_set_irq"}),
            (Lines{"kvm_set_irq: gsi 17 level 1 source 0",
                   "kvm_ioapic_set_irq: pin 17 dst 0 vec 85 (Fixed|physical|level)"}));
}

// ---------------------------------------------------------------------------------------------
// kvm_ack_irq

TEST_F(TraceWireTest, PicEoiAcksThePinNumberedAcrossBothChips) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  sink_->clear_ring();
  Out(0xA0, 0x61);  // OCW2 specific EOI, slave IR1 = IRQ9 (KVM acks even a clear ISR bit)
  Out(0x20, 0x63);  // OCW2 specific EOI, master IR3
  EXPECT_EQ(Seq({"kvm_ack_irq"}), (Lines{"kvm_ack_irq: irqchip PIC slave pin 9",
                                         "kvm_ack_irq: irqchip PIC master pin 3"}));
}

TEST_F(TraceWireTest, IoapicAckOnlyForVectorsTheIoapicHandles) {
  // AVIC inhibited (PIT_REINJ): every EOI reaches apic_set_eoi().
  Make(1, VendorModel::kSvm, PitPolicy::kDelay);
  EnableX2Apic(0);
  Rte(17, 0x55 | (1u << 15), 0);  // level: in ioapic_handled_vectors
  Rte(18, 0x56, 0);               // edge, no ack notifier: not handled, never reaches the IOAPIC
  vm_->set_isa_irq(18, true);
  vm_->set_isa_irq(18, false);
  vm_->set_isa_irq(17, true);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x56);
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  sink_->clear_ring();
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_EQ(Seq({"kvm_eoi", "kvm_ack_irq"}),
            (Lines{"kvm_eoi: apicid 0 vector 85", "kvm_ack_irq: irqchip IOAPIC pin 17"}));
}

TEST_F(TraceWireTest, EdgeEoiWithoutAckNotifierHasNoAck) {
  Make(1, VendorModel::kSvm, PitPolicy::kDelay);
  EnableX2Apic(0);
  Rte(18, 0x56, 0);
  vm_->set_isa_irq(18, true);
  vm_->set_isa_irq(18, false);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x56);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_EQ(Seq({"kvm_eoi", "kvm_ack_irq"}), (Lines{"kvm_eoi: apicid 0 vector 86"}));
}

// ---------------------------------------------------------------------------------------------
// kvm_eoi vector -1

TEST_F(TraceWireTest, EoiWithEmptyIsrTracesMinusOneWhenItReachesKvm) {
  Make(1, VendorModel::kSvm, PitPolicy::kDelay);  // AVIC inhibited
  EnableX2Apic(0);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_EQ(Seq({"kvm_eoi"}), (Lines{"kvm_eoi: apicid 0 vector -1"}));
  EXPECT_EQ(vm_->stats().eois, 0u);  // nothing was broadcast
}

TEST_F(TraceWireTest, EoiWithEmptyIsrIsSilentWhenTheHardwareCompletesIt) {
  for (VendorModel v : {VendorModel::kSvm, VendorModel::kVmx}) {
    Make(1, v, PitPolicy::kDiscard);  // AVIC / APICv active
    EnableX2Apic(0);
    ASSERT_EQ(vm_->inhibit_reasons(), 0u);
    sink_->clear_ring();
    ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
    EXPECT_TRUE(Seq({"kvm_eoi"}).empty());
  }
}

TEST_F(TraceWireTest, UserspaceLapicTracesNoKvmEoi) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard, IrqchipPlacement::kOff);
  EnableX2Apic(0);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  ASSERT_EQ(vm_->wrmsr(0, 0x83F, 0x45), AccessResult::kHandled);  // SELF_IPI
  EXPECT_TRUE(Seq({"kvm_eoi", "kvm_apic_accept_irq", "kvm_apic_ipi"}).empty());
}

// ---------------------------------------------------------------------------------------------
// kvm_apicv_accept_irq, kvm_avic_doorbell, kvm_avic_kick_vcpu_slowpath

TEST_F(TraceWireTest, VmxPostedIpiTracesApicvAcceptAfterAccept) {
  Make(2, VendorModel::kVmx, PitPolicy::kDiscard);
  EnableX2Apic(0);
  EnableX2Apic(1);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (1ull << 32) | 0x40), AccessResult::kHandled);
  EXPECT_EQ(Seq({"kvm_apic_ipi", "kvm_apic_accept_irq", "kvm_apicv_accept_irq"}),
            (Lines{"kvm_apic_ipi: dst 1 vec 64 (Fixed|physical|de-assert|edge|dst)",
                   "kvm_apic_accept_irq: apicid 1 vec 64 (Fixed|edge)",
                   "kvm_apicv_accept_irq: apicid 1 vec 64 (Fixed|edge)"}));
}

TEST_F(TraceWireTest, InhibitedAvicTargetHasNoApicvAccept) {
  Make(2, VendorModel::kSvm, PitPolicy::kDelay);  // PIT_REINJ inhibits AVIC VM-wide
  EnableX2Apic(0);
  EnableX2Apic(1);
  ASSERT_NE(vm_->inhibit_reasons(), 0u);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (1ull << 32) | 0x40), AccessResult::kHandled);
  // svm_complete_interrupt_delivery(): APICv inactive -> KVM_REQ_EVENT + kick, nothing traced.
  EXPECT_EQ(Seq({"kvm_apic_accept_irq", "kvm_apicv_accept_irq", "kvm_avic_doorbell"}),
            (Lines{"kvm_apic_accept_irq: apicid 1 vec 64 (Fixed|edge)"}));
}

TEST_F(TraceWireTest, IoapicDeliveryToRunningAvicTargetRingsTracedDoorbell) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  EnableX2Apic(0);
  Rte(17, 0x55 | (1u << 15), 0);
  vm_->vcpu_enter(0);
  sink_->clear_ring();
  vm_->set_isa_irq(17, true);
  // svm_deliver_interrupt -> svm_complete_interrupt_delivery: accept, then the doorbell to the
  // pCPU of a target in guest mode (host APIC ID = vCPU index in the model).
  EXPECT_EQ(Seq({"kvm_apic_accept_irq", "kvm_apicv_accept_irq", "kvm_avic_doorbell"}),
            (Lines{"kvm_apic_accept_irq: apicid 0 vec 85 (Fixed|level)",
                   "kvm_apicv_accept_irq: apicid 0 vec 85 (Fixed|level)",
                   "kvm_avic_doorbell: vcpuid=0, apicid=0"}));
  vm_->vcpu_exit(0);
  sink_->clear_ring();
  vm_->set_isa_irq(17, false);
  // Not in guest mode: kvm_vcpu_wake_up instead of the doorbell. (Remote IRR still set: no new
  // delivery until EOI, so the pin's deassertion delivers nothing.)
  EXPECT_TRUE(Seq({"kvm_avic_doorbell"}).empty());
}

TEST_F(TraceWireTest, IncompleteIpiKickTracesApicvAcceptForEachTarget) {
  Make(3, VendorModel::kSvm, PitPolicy::kDiscard);
  for (int v = 0; v < 3; ++v) EnableX2Apic(v);
  ASSERT_EQ(vm_->inhibit_reasons(), 0u);
  sink_->clear_ring();
  // x2APIC logical, cluster 0, bits 1 and 2: vCPUs 1 and 2, neither running. The hardware sets
  // both IRRs and exits TARGET_NOT_RUNNING with vCPU 1's physical ID; the fast path wakes both.
  // No kvm_apic_accept_irq: __apic_accept_irq never ran.
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (0x6ull << 32) | (1u << 11) | 0x40), AccessResult::kHandled);
  EXPECT_EQ(Seq({"kvm_avic_incomplete_ipi", "kvm_avic_kick_vcpu_slowpath", "kvm_apic_accept_irq",
                 "kvm_apicv_accept_irq", "kvm_avic_doorbell"}),
            (Lines{"kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x00000006:00000840, id=1, index=1",
                   "kvm_apicv_accept_irq: apicid 1 vec 64 (Fixed|edge)",
                   "kvm_apicv_accept_irq: apicid 2 vec 64 (Fixed|edge)"}));
}

TEST_F(TraceWireTest, SlowPathIsTracedOnlyWhenTheFastPathDeclines) {
  for (AvicKick kick : {AvicKick::kFast, AvicKick::kSlow}) {
    Make(2, VendorModel::kSvm, PitPolicy::kDiscard, IrqchipPlacement::kOn, kick);
    EnableX2Apic(0);
    EnableX2Apic(1);
    sink_->clear_ring();
    // All-excluding-self: the fast path declines shorthands. vCPU 1 is not running.
    ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (3u << 18) | 0x40), AccessResult::kHandled);
    Lines expected{"kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x00000000:000c0040, id=1, index=1"};
    // "%#08x": 0x plus six digits.
    if (kick == AvicKick::kFast)
      expected.push_back("kvm_avic_kick_vcpu_slowpath: icrh:icrl=0x000000:000c0040, index=1");
    expected.push_back("kvm_apicv_accept_irq: apicid 1 vec 64 (Fixed|edge)");
    EXPECT_EQ(Seq({"kvm_avic_incomplete_ipi", "kvm_avic_kick_vcpu_slowpath", "kvm_apicv_accept_irq",
                   "kvm_avic_doorbell"}),
              expected);
  }
}

TEST_F(TraceWireTest, DeviceTraceSwitchSilencesAvicDeliveryEvents) {
  Make(3, VendorModel::kSvm, PitPolicy::kDiscard);
  for (int v = 0; v < 3; ++v) EnableX2Apic(v);
  vm_->set_device_trace(false);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (0x6ull << 32) | (1u << 11) | 0x40), AccessResult::kHandled);
  // The exit itself stays (it is not a device event).
  EXPECT_EQ(
      Seq({"kvm_avic_incomplete_ipi", "kvm_apicv_accept_irq", "kvm_avic_doorbell"}),
      (Lines{"kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x00000006:00000840, id=1, index=1"}));
}

}  // namespace
}  // namespace apicv::virt
