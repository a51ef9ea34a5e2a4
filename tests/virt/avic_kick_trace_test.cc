// Tracepoints of KVM's AVIC kick path (svm/avic.c): avic_kick_target_vcpus() traces
// kvm_avic_kick_vcpu_slowpath "icrh:icrl=%#08x:%08x, index=%u" when the fast path declines;
// avic_kick_vcpu() -> svm_complete_interrupt_delivery() traces kvm_apicv_accept_irq
// "apicid %x vec %u (%s|%s)" for a target whose AVIC is active, then avic_ring_doorbell() traces
// kvm_avic_doorbell "vcpuid=%u, apicid=%u" (the vCPU id and the host APIC ID of the target's pCPU)
// for a target in guest mode on another pCPU. A target with AVIC inhibited gets KVM_REQ_EVENT and
// a kick, and no trace. Expected bodies are written from those format strings.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "avic_test_util.h"
#include "devices/clock.h"
#include "trace/trace_sink.h"
#include "virt/avic.h"

namespace apicv::virt {
namespace {

using testing::Icrl;
using testing::MakeViews;
using testing::RecordingOps;
using testing::Topology;
using testing::XApicIcrh;

constexpr uint32_t kNotRunning = 1;

std::vector<std::string> Bodies(const trace::TraceSink& sink) {
  std::vector<std::string> out;
  for (const auto& l : sink.ring_lines()) {
    const size_t p = l.find(" kvm_");
    if (p != std::string::npos) out.push_back(l.substr(p + 1));
  }
  return out;
}

class AvicKickTraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sink.set_ring_capacity(100);
    for (int i = 0; i < 4; ++i) {
      avic.init_vcpu(i, static_cast<uint32_t>(i));
      // Host APIC IDs 0x10.. so the doorbell's apicid is visibly not the vCPU id.
      avic.vcpu_load(i, 0x10 + static_cast<uint32_t>(i));
      avic.vcpu_put(i);
    }
  }
  FakeClock clock;
  trace::TraceSink sink{clock};
  RecordingOps ops{MakeViews(Topology::kPhysicalXApic, 4)};
  Avic avic{AvicConfig{.trace = &sink}, 4};
};

TEST_F(AvicKickTraceTest, AcceptThenDoorbellForATargetInGuestMode) {
  ops.in_guest[1] = true;
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(1), kNotRunning, 1, ops);
  EXPECT_EQ(Bodies(sink),
            (std::vector<std::string>{
                "kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x01000000:00000040, id=1, index=1",
                "kvm_apicv_accept_irq: apicid 1 vec 64 (Fixed|edge)",
                "kvm_avic_doorbell: vcpuid=1, apicid=17"}));
  EXPECT_EQ(ops.doorbells, std::vector<int>{1});
}

TEST_F(AvicKickTraceTest, WakeUpHasNoDoorbellAndInhibitedTargetNoAccept) {
  ops.active[3] = false;
  avic.avic_incomplete_ipi_interception(0, Icrl(0x41, false), XApicIcrh(2), kNotRunning, 2, ops);
  avic.avic_incomplete_ipi_interception(0, Icrl(0x42, false), XApicIcrh(3), kNotRunning, 3, ops);
  EXPECT_EQ(Bodies(sink),
            (std::vector<std::string>{
                "kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x02000000:00000041, id=1, index=2",
                "kvm_apicv_accept_irq: apicid 2 vec 65 (Fixed|edge)",
                "kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x03000000:00000042, id=1, index=3"}));
  EXPECT_EQ(ops.wakes, std::vector<int>{2});
  EXPECT_EQ(ops.events, std::vector<int>{3});
}

TEST_F(AvicKickTraceTest, NoDoorbellTraceToTheSendersOwnPcpu) {
  // vCPU 1 now runs on the pCPU the sender (vCPU 0) exits on: avic_ring_doorbell() skips it.
  avic.vcpu_load(0, 0x30);
  avic.vcpu_load(1, 0x30);
  ops.in_guest[1] = true;
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(1), kNotRunning, 1, ops);
  const auto b = Bodies(sink);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1], "kvm_apicv_accept_irq: apicid 1 vec 64 (Fixed|edge)");
}

TEST_F(AvicKickTraceTest, SlowPathLineWhenTheFastPathDeclines) {
  // Broadcast destination 0xFF: the fast path declines, the walk kicks vCPUs 1-3.
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(0xFF), kNotRunning, 1, ops);
  const auto b = Bodies(sink);
  ASSERT_EQ(b.size(), 6u);
  EXPECT_EQ(b[1], "kvm_avic_kick_vcpu_slowpath: icrh:icrl=0xff000000:00000040, index=1");
  // Broadcast matches the source too (kvm_apic_match_dest with no shorthand).
  EXPECT_EQ(b[2], "kvm_apicv_accept_irq: apicid 0 vec 64 (Fixed|edge)");
  EXPECT_EQ(b[5], "kvm_apicv_accept_irq: apicid 3 vec 64 (Fixed|edge)");
}

TEST_F(AvicKickTraceTest, DeviceTraceSinkCanBeSwitchedOff) {
  avic.set_device_trace(nullptr);
  ops.in_guest[1] = true;
  avic.avic_incomplete_ipi_interception(0, Icrl(0x40, false), XApicIcrh(1), kNotRunning, 1, ops);
  EXPECT_EQ(Bodies(sink),
            (std::vector<std::string>{
                "kvm_avic_incomplete_ipi: vcpu=0, icrh:icrl=0x01000000:00000040, id=1, index=1"}));
}

}  // namespace
}  // namespace apicv::virt
