// The VM's vPMU glue (KVM pmu.c); see vm_pmu.h.
#include "virt/vm_pmu.h"

#include "x86/apic_defs.h"

namespace apicv::virt {

namespace {

// PMU MSRs served by the vPMU (Intel v2 and AMD legacy / core extension).
bool IsPmuMsrRange(uint32_t msr) {
  return (msr >= 0xC1 && msr <= 0xC4) || (msr >= 0x186 && msr <= 0x189) ||
         (msr >= 0x309 && msr <= 0x30B) || (msr >= 0x38D && msr <= 0x390) || msr == 0x345 ||
         (msr >= 0xC0010000 && msr <= 0xC0010007) || (msr >= 0xC0010200 && msr <= 0xC001020B);
}

}  // namespace

VmPmu::VmPmu(const VmConfig& config, const Clock& clock, uint64_t tsc_khz, VcpuDevices& vcpus,
             VcpuRequestSet& reqs)
    : pmi_delivery_(config.pmi_delivery),
      enabled_(config.pmu),
      clock_(clock),
      tsc_khz_(tsc_khz),
      vcpus_(vcpus),
      reqs_(reqs),
      deadline_(std::make_unique<uint64_t[]>(static_cast<size_t>(vcpus.size()))) {
  for (int i = 0; i < vcpus.size(); ++i) deadline_[static_cast<size_t>(i)] = UINT64_MAX;
}

AccessResult VmPmu::rdmsr(int vcpu, uint32_t msr, uint64_t* value) {
  if (!IsPmuMsrRange(msr)) return AccessResult::kNotMine;
  if (!enabled_) return AccessResult::kGp;  // pmu=off: no PMU MSRs (KVM: no counters)
  switch (vcpus_.pmu(vcpu).rdmsr(msr, value)) {
    case PmuMsrResult::kOk:
      return AccessResult::kHandled;
    case PmuMsrResult::kGp:
    case PmuMsrResult::kNotPmu:
      return AccessResult::kGp;
  }
  return AccessResult::kGp;
}

AccessResult VmPmu::wrmsr(int vcpu, uint32_t msr, uint64_t value) {
  if (!IsPmuMsrRange(msr)) return AccessResult::kNotMine;
  if (!enabled_) return AccessResult::kGp;
  Pmu& pmu = vcpus_.pmu(vcpu);
  switch (pmu.wrmsr(msr, value)) {
    case PmuMsrResult::kOk:
      // Writing a counter or control can complete an overflow immediately (counter at -1 with
      // status bits); pick up a PMI request if one was raised.
      if (pmu.take_pmi_request()) reqs_.vcpu(vcpu).make_request(kReqPmi);
      // Cycle counters count from now: the time before this write (in the VMM) is not theirs.
      if (pmu.any_counter_enabled()) pmu.advance_cycles(clock_.now_ns(), clock_.tsc(), 0, true);
      return AccessResult::kHandled;
    case PmuMsrResult::kGp:
    case PmuMsrResult::kNotPmu:
      return AccessResult::kGp;
  }
  return AccessResult::kGp;
}

void VmPmu::deliver_pmi(int vcpu) {
  // kvm_apic_local_deliver(LVTPC); since 2023 (a16eb25b09c0, restricted to Intel in 2024) LVTPC is
  // masked on delivery so a second PMI cannot follow before the guest's handler unmasks it.
  const bool mask = pmi_delivery_ == PmiDelivery::kCurrent && vcpus_.pmu(vcpu).mask_lvtpc_on_pmi();
  if (vcpus_.lapic(vcpu).local_deliver(x86::kApicLvtPc, mask)) {
    pmis_.fetch_add(1, std::memory_order_relaxed);
    // An LVTPC in NMI mode queued the NMI in the Lapic's latch.
    reqs_.vcpu(vcpu).make_request(kReqEvent);
  }
}

void VmPmu::instruction_emulated(int vcpu) {
  // kvm_pmu_trigger_event(PERF_COUNT_HW_INSTRUCTIONS) from kvm_skip_emulated_instruction().
  instructions_retired(vcpu, 1, /*cpl=*/0);
}

bool VmPmu::instructions_retired(int vcpu, uint64_t count, uint8_t cpl) {
  Pmu& pmu = vcpus_.pmu(vcpu);
  const PmuOverflow ov = pmu.instruction_retired(cpl, count);
  if (!ov.pmi) return false;
  pmu.take_pmi_request();
  if (pmi_delivery_ == PmiDelivery::kLegacy) {
    // Before 73554b29bd70 an irq_work delivered the PMI at once, beside the request below; an
    // overflow in the same exit therefore produced two PMIs.
    deliver_pmi(vcpu);
  }
  reqs_.vcpu(vcpu).make_request(kReqPmi);
  return true;
}

uint64_t VmPmu::instructions_to_pmi(int vcpu, uint8_t cpl) {
  return vcpus_.pmu(vcpu).instructions_to_pmi(cpl);
}

// Cycle counters count guest time only: the interval from entry to exit, as a perf event that
// excludes the host does. Entry resynchronises (time in the VMM or in HLT does not count), exit
// counts.
bool VmPmu::cycles_enter(int vcpu) {
  Pmu& pmu = vcpus_.pmu(vcpu);
  uint64_t& deadline = deadline_[static_cast<size_t>(vcpu)];
  if (!pmu.any_counter_enabled()) [[likely]] {
    if (deadline == UINT64_MAX) return false;
    deadline = UINT64_MAX;
    return true;
  }
  pmu.advance_cycles(clock_.now_ns(), clock_.tsc(), 0, /*halted=*/true);
  const uint64_t d = pmu.next_cycles_overflow_ns(tsc_khz_);
  if (d == deadline) return false;
  // The timer service kicks the vCPU out of the guest when the counter would wrap.
  deadline = d;
  return true;
}

void VmPmu::cycles_exit(int vcpu) {
  Pmu& pmu = vcpus_.pmu(vcpu);
  if (!pmu.any_counter_enabled()) [[likely]]
    return;
  const PmuOverflow ov = pmu.advance_cycles(clock_.now_ns(), clock_.tsc(), 0, /*halted=*/false);
  // A perf overflow: KVM_REQ_PMI only (kvm_perf_overflow), in both delivery modes.
  if (ov.pmi && pmu.take_pmi_request()) reqs_.vcpu(vcpu).make_request(kReqPmi);
}

}  // namespace apicv::virt
