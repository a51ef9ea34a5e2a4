// The VM's vPMU glue (KVM pmu.c): PMU MSR accesses, PMI delivery through LVTPC
// (kvm_pmu_deliver_pmi on KVM_REQ_PMI), instructions KVM emulates counted as retired
// (kvm_pmu_trigger_event), and cycle counters counting guest time from entry to exit with their
// overflow deadline for the timer seam. Intel SDM vol. 3B 20.2 (architectural PMU v2), AMD APM
// vol. 2 13.2; the counters themselves are devices/pmu.
//
// Threading: every method runs on the vCPU's own thread (the Pmu and the LVTPC are the vCPU's);
// pmis() anywhere. No lock.
//
// Not supported: the guest's CPL at an exit is unknown without an ioctl per exit, so emulated
// instructions and cycles always count as CPL 0 (OS); cycles count from entry to exit at the TSC
// rate.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "devices/clock.h"
#include "virt/irqchip.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"

namespace apicv::virt {

class VmPmu {
 public:
  VmPmu(const VmConfig& config, const Clock& clock, uint64_t tsc_khz, VcpuDevices& vcpus,
        VcpuRequestSet& reqs);
  VmPmu(const VmPmu&) = delete;
  VmPmu& operator=(const VmPmu&) = delete;

  // PMU MSRs (Intel v2 and AMD legacy / core extension); kNotMine outside them.
  AccessResult rdmsr(int vcpu, uint32_t msr, uint64_t* value);
  AccessResult wrmsr(int vcpu, uint32_t msr, uint64_t value);
  // kvm_pmu_deliver_pmi(): KVM_REQ_PMI, at most one per entry.
  void deliver_pmi(int vcpu);
  // One instruction KVM emulated (kvm_skip_emulated_instruction).
  void instruction_emulated(int vcpu);
  // -accel emu: every instruction the CPU retired (IrqChip::instructions_retired); true when a PMI
  // was raised. instructions_to_pmi: the run-budget cap (IrqChip::instructions_to_pmi).
  bool instructions_retired(int vcpu, uint64_t count, uint8_t cpl);
  uint64_t instructions_to_pmi(int vcpu, uint8_t cpl);
  // Guest entry / exit: cycle counters count the interval between them. cycles_enter() returns
  // true when the vCPU's overflow deadline moved (the caller republishes its timer deadline).
  bool cycles_enter(int vcpu);
  void cycles_exit(int vcpu);
  // When an enabled cycle counter with PMI wraps if the guest keeps running; UINT64_MAX: never.
  uint64_t deadline(int vcpu) const { return deadline_[static_cast<size_t>(vcpu)]; }
  uint64_t pmis() const { return pmis_.load(std::memory_order_relaxed); }

 private:
  const PmiDelivery pmi_delivery_;
  const bool enabled_;  // VmConfig::pmu (-cpu pmu=off: every PMU MSR #GPs)
  const Clock& clock_;
  const uint64_t tsc_khz_;
  VcpuDevices& vcpus_;
  VcpuRequestSet& reqs_;
  std::unique_ptr<uint64_t[]> deadline_;  // per vCPU, owner thread
  std::atomic<uint64_t> pmis_{0};
};

}  // namespace apicv::virt
