// Which ApicvVm paths emit kvm_eoi, kvm_apic_ipi and kvm_avic_unaccelerated_access. KVM traces
// kvm_eoi in apic_set_eoi() / kvm_apic_set_eoi_accelerated(), kvm_apic_ipi in
// kvm_apic_send_ipi() (the emulated ICR write), and kvm_avic_unaccelerated_access in
// avic_unaccelerated_access_interception(); accesses the AVIC/APICv "hardware" completes reach
// none of them. Which xAPIC page accesses AVIC completes: AMD APM vol. 2 15.29.3.1 (backing-page
// access table) and KVM's trap-offset list (spec §7.1). Expected bodies follow the TP_printk
// formats of arch/x86/kvm/trace.h.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "traced_vm_fixture.h"

namespace apicv::virt {
namespace {

constexpr uint32_t kIcrMsr = 0x830;
constexpr uint32_t kEoiMsr = 0x80B;
constexpr uint32_t kSelfIpiMsr = 0x83F;
constexpr uint64_t kApicPage = 0xFEE00000;

class VmTraceTest : public TracedVmTest {
 protected:
  // AVIC active: vendor svm with lost_tick_policy=discard (nothing inhibits). AVIC inhibited:
  // the default delay policy keeps PIT_REINJ set.
  void Make(int nr_vcpus, VendorModel vendor, PitPolicy policy) {
    VmConfig cfg;
    cfg.nr_vcpus = nr_vcpus;
    cfg.vendor = vendor;
    cfg.pit_policy = policy;
    MakeVm(cfg);
  }
  void MmioWrite(int v, uint32_t offset, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(v, kApicPage + offset, &value, 4), AccessResult::kHandled);
  }
  uint32_t MmioRead(int v, uint32_t offset) {
    uint32_t value = 0;
    EXPECT_EQ(vm_->mmio_read(v, kApicPage + offset, &value, 4), AccessResult::kHandled);
    return value;
  }
  // IOAPIC pin 17 (no 8259 input, so the PIC's ExtINT stays out of the way): vector 0x55,
  // level-triggered, physical destination APIC ID 0; line raised.
  void RaiseLevelPin17() {
    IoApicWrite(0x10 + 2 * 17, 0x55 | (1u << 15));
    IoApicWrite(0x10 + 2 * 17 + 1, 0);
    vm_->set_isa_irq(17, true);
  }
  // Bodies of one event, in order.
  std::vector<std::string> Events(const std::string& event) {
    std::vector<std::string> out;
    const std::string key = event + ": ";
    for (const auto& l : sink_->ring_lines()) {
      const size_t p = l.find(key);
      if (p != std::string::npos) out.push_back(l.substr(p + key.size()));
    }
    return out;
  }
  // Event names in order, restricted to the given set.
  std::vector<std::string> Sequence(const std::vector<std::string>& events) {
    std::vector<std::string> out;
    for (const auto& l : sink_->ring_lines()) {
      for (const auto& e : events) {
        if (l.find(" " + e + ": ") != std::string::npos) out.push_back(e);
      }
    }
    return out;
  }
};

// ---------------------------------------------------------------------------------------------
// kvm_eoi

TEST_F(VmTraceTest, AvicAcceleratedEdgeEoiIsNotTraced) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->inhibit_reasons(), 0u);
  sink_->clear_ring();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(vm_->wrmsr(0, kSelfIpiMsr, 0x45), AccessResult::kHandled);
    ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x45);
    ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  }
  // The backing page completed all three EOIs: apic_set_eoi() never ran.
  EXPECT_TRUE(Events("kvm_eoi").empty());
  EXPECT_EQ(vm_->stats().eois, 0u);
  EXPECT_EQ(vm_->stats().eois_accelerated, 3u);
}

TEST_F(VmTraceTest, InhibitedAvicEoiIsTracedOncePerEoi) {
  Make(1, VendorModel::kSvm, PitPolicy::kDelay);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->inhibit_reasons(), 0x200u);  // PIT_REINJ
  sink_->clear_ring();
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(vm_->wrmsr(0, kSelfIpiMsr, 0x45), AccessResult::kHandled);
    ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x45);
    ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  }
  // "apicid %x vector %d": vcpu_id 0, vector 0x45 = 69.
  EXPECT_EQ(Events("kvm_eoi"),
            (std::vector<std::string>{"apicid 0 vector 69", "apicid 0 vector 69"}));
  EXPECT_EQ(vm_->stats().eois, 2u);
  EXPECT_EQ(vm_->stats().eois_accelerated, 0u);
}

TEST_F(VmTraceTest, AvicLevelTriggeredEoiReachesKvmAndIsTraced) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  EnableX2Apic(0);
  RaiseLevelPin17();
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_EQ(Events("kvm_eoi"), std::vector<std::string>{"apicid 0 vector 85"});
  EXPECT_EQ(vm_->stats().eois, 1u);
  EXPECT_EQ(vm_->stats().eois_accelerated, 0u);
}

TEST_F(VmTraceTest, VmxTracesOnlyEoisInTheEoiExitBitmap) {
  Make(1, VendorModel::kVmx, PitPolicy::kDiscard);
  EnableX2Apic(0);
  // Edge self-IPI: not in the EOI-exit bitmap, the EOI is virtualized.
  ASSERT_EQ(vm_->wrmsr(0, kSelfIpiMsr, 0x45), AccessResult::kHandled);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x45);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_TRUE(Events("kvm_eoi").empty());
  // Level IOAPIC vector: the RTE write put 0x55 in the bitmap; its EOI exits.
  RaiseLevelPin17();
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kEoiMsr, 0), AccessResult::kHandled);
  EXPECT_EQ(Events("kvm_eoi"), std::vector<std::string>{"apicid 0 vector 85"});
  EXPECT_EQ(vm_->stats().eois, 1u);
}

// ---------------------------------------------------------------------------------------------
// kvm_apic_ipi

TEST_F(VmTraceTest, EmulatedXApicIcrWriteTracesIcrLowAndDestination) {
  Make(2, VendorModel::kSvm, PitPolicy::kDelay);  // AVIC inhibited: the ICR write is emulated
  MmioWrite(0, 0xF0, 0x1FF);
  MmioWrite(1, 0xF0, 0x1FF);
  sink_->clear_ring();
  MmioWrite(0, 0x310, 1u << 24);  // ICR2: destination APIC ID 1
  MmioWrite(0, 0x300, 0x4062);    // fixed, physical, assert, edge, vector 0x62
  EXPECT_EQ(Events("kvm_apic_ipi"),
            std::vector<std::string>{"dst 1 vec 98 (Fixed|physical|assert|edge|dst)"});
  EXPECT_EQ(vm_->check_and_inject_events(1, true, true).vector, 0x62);
}

TEST_F(VmTraceTest, EmulatedX2ApicIcrWriteTracesThe32BitDestination) {
  Make(2, VendorModel::kSvm, PitPolicy::kDelay);
  EnableX2Apic(0);
  EnableX2Apic(1);
  sink_->clear_ring();
  // Logical (bit 11), level assert, vector 0x70, destination cluster 0 bit 1.
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (0x2ull << 32) | 0x4870), AccessResult::kHandled);
  EXPECT_EQ(Events("kvm_apic_ipi"),
            std::vector<std::string>{"dst 2 vec 112 (Fixed|logical|assert|edge|dst)"});
}

TEST_F(VmTraceTest, AvicAcceleratedAndTargetNotRunningIpisAreNotTraced) {
  Make(3, VendorModel::kSvm, PitPolicy::kDiscard);
  for (int v = 0; v < 3; ++v) EnableX2Apic(v);
  vm_->vcpu_enter(1);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (1ull << 32) | 0x61), AccessResult::kHandled);  // running
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (2ull << 32) | 0x62), AccessResult::kHandled);  // not running
  vm_->vcpu_exit(1);
  EXPECT_EQ(vm_->stats().avic_accelerated_ipis, 1u);
  EXPECT_EQ(vm_->stats().avic_incomplete_ipi, 1u);
  // Only the incomplete-IPI exit of the second write; kvm_apic_send_ipi never ran.
  EXPECT_TRUE(Events("kvm_apic_ipi").empty());
  EXPECT_EQ(Events("kvm_avic_incomplete_ipi").size(), 1u);
}

TEST_F(VmTraceTest, AvicInvalidIntTypeAndInvalidTargetAreEmulatedAndTraced) {
  Make(2, VendorModel::kSvm, PitPolicy::kDiscard);
  EnableX2Apic(0);
  EnableX2Apic(1);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (1ull << 32) | 0x4400), AccessResult::kHandled);  // NMI
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (7ull << 32) | 0x65), AccessResult::kHandled);    // no APIC ID 7
  EXPECT_EQ(Events("kvm_apic_ipi"),
            (std::vector<std::string>{"dst 1 vec 0 (NMI|physical|assert|edge|dst)",
                                      "dst 7 vec 101 (Fixed|physical|de-assert|edge|dst)"}));
  // The exit is traced first, then KVM emulates the ICR write.
  EXPECT_EQ(Sequence({"kvm_avic_incomplete_ipi", "kvm_apic_ipi"}),
            (std::vector<std::string>{"kvm_avic_incomplete_ipi", "kvm_apic_ipi",
                                      "kvm_avic_incomplete_ipi", "kvm_apic_ipi"}));
}

TEST_F(VmTraceTest, VmxIcrWriteIsAnApicWriteExitAndTraced) {
  Make(2, VendorModel::kVmx, PitPolicy::kDiscard);
  EnableX2Apic(0);
  EnableX2Apic(1);
  sink_->clear_ring();
  ASSERT_EQ(vm_->wrmsr(0, kIcrMsr, (1ull << 32) | 0x4061), AccessResult::kHandled);
  EXPECT_EQ(Events("kvm_apic_ipi"),
            std::vector<std::string>{"dst 1 vec 97 (Fixed|physical|assert|edge|dst)"});
}

// ---------------------------------------------------------------------------------------------
// kvm_avic_unaccelerated_access

TEST_F(VmTraceTest, AvicXApicPageAccessesTrapFaultOrAccelerate) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  ASSERT_EQ(vm_->inhibit_reasons(), 0u);
  sink_->clear_ring();
  const VmStats s0 = vm_->stats();
  // Accelerated: TPR read and write, LDR read, ICR2 write.
  MmioWrite(0, 0x80, 0x20);
  EXPECT_EQ(MmioRead(0, 0x80), 0x20u);
  MmioRead(0, 0xD0);
  MmioWrite(0, 0x310, 0);
  EXPECT_TRUE(Events("kvm_avic_unaccelerated_access").empty());
  // Trap (the store happens, then the exit): SPIV and LDR writes.
  MmioWrite(0, 0xF0, 0x1FF);
  EXPECT_EQ(MmioRead(0, 0xF0), 0x1FFu);  // the write took effect
  MmioWrite(0, 0xD0, 0x01000000);
  // Fault (KVM emulates the instruction): TMCCT read, IRR write, LVR write.
  MmioRead(0, 0x390);
  MmioWrite(0, 0x200, 0xFFFFFFFF);
  MmioWrite(0, 0x30, 0);
  EXPECT_EQ(Events("kvm_avic_unaccelerated_access"),
            (std::vector<std::string>{"vcpu=0, offset=0xf0(APIC_SPIV), trap, write, vec=0x0",
                                      "vcpu=0, offset=0xd0(APIC_LDR), trap, write, vec=0x0",
                                      "vcpu=0, offset=0x390(APIC_TMCCT), fault, read, vec=0x0",
                                      "vcpu=0, offset=0x200(APIC_IRR), fault, write, vec=0x0",
                                      "vcpu=0, offset=0x30(APIC_LVR), fault, write, vec=0x0"}));
  // An IRR write is not architectural: nothing became pending.
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, -1);
  const VmStats s1 = vm_->stats();
  EXPECT_EQ(s1.avic_accelerated_accesses - s0.avic_accelerated_accesses, 5u);
  EXPECT_EQ(s1.avic_unaccelerated_traps - s0.avic_unaccelerated_traps, 2u);
  EXPECT_EQ(s1.avic_unaccelerated_faults - s0.avic_unaccelerated_faults, 3u);
}

TEST_F(VmTraceTest, AvicEoiWriteTrapsOnlyForALevelTriggeredVector) {
  Make(1, VendorModel::kSvm, PitPolicy::kDiscard);
  MmioWrite(0, 0xF0, 0x1FF);
  // Edge self-IPI (shorthand self, assert, vector 0x45): accelerated send, accelerated EOI.
  MmioWrite(0, 0x300, 0x44045);
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x45);
  sink_->clear_ring();
  MmioWrite(0, 0xB0, 0);
  EXPECT_TRUE(Events("kvm_avic_unaccelerated_access").empty());
  EXPECT_TRUE(Events("kvm_eoi").empty());
  // Level IOAPIC vector 0x55: the EOI write traps, then apic_set_eoi() runs.
  RaiseLevelPin17();
  ASSERT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
  sink_->clear_ring();
  MmioWrite(0, 0xB0, 0);
  EXPECT_EQ(Events("kvm_avic_unaccelerated_access"),
            std::vector<std::string>{"vcpu=0, offset=0xb0(APIC_EOI), trap, write, vec=0x55"});
  EXPECT_EQ(Sequence({"kvm_avic_unaccelerated_access", "kvm_eoi"}),
            (std::vector<std::string>{"kvm_avic_unaccelerated_access", "kvm_eoi"}));
  // The IOAPIC saw the EOI: the line is still high, so remote IRR cleared and it re-delivered.
  EXPECT_EQ(vm_->check_and_inject_events(0, true, true).vector, 0x55);
}

TEST_F(VmTraceTest, InhibitedAvicHasNoUnacceleratedAccessExits) {
  Make(1, VendorModel::kSvm, PitPolicy::kDelay);
  sink_->clear_ring();
  MmioWrite(0, 0xF0, 0x1FF);
  MmioRead(0, 0x390);
  EXPECT_TRUE(Events("kvm_avic_unaccelerated_access").empty());
  EXPECT_EQ(vm_->stats().avic_unaccelerated_traps, 0u);
  EXPECT_EQ(vm_->stats().avic_unaccelerated_faults, 0u);
  EXPECT_EQ(vm_->stats().avic_accelerated_accesses, 0u);
}

}  // namespace
}  // namespace apicv::virt
