// The VM's per-vCPU timer deadlines as the timer seam sees them (virt/timer_service.h): each
// vCPU publishes the earliest of its LAPIC timer / TSC deadline and its vPMU cycle-overflow
// deadline; the timer service kicks the vCPU once per deadline value that passed (KVM:
// apic_timer_fn -> kvm_inject_apic_timer_irqs runs on the vCPU after the kick), and tells the
// VM's TimerService whenever the VM-wide next deadline may have moved. The device timers (PIT,
// IOAPIC re-delivery) are the IrqchipGlue's; ApicvVm::service_timers() runs both.
//
// Threading: publish() on the owner vCPU's thread; service_vcpus() by the one servicing thread
// (the host timer thread or a virtual-time backend); next_vcpu_deadline() and deadline_changed()
// anywhere. Lock-free (atomics per vCPU).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "virt/timer_service.h"
#include "virt/vcpu_request.h"

namespace apicv::virt {

class VmTimers {
 public:
  explicit VmTimers(VcpuRequestSet& reqs);
  VmTimers(const VmTimers&) = delete;
  VmTimers& operator=(const VmTimers&) = delete;

  // The service that hears of deadline changes (set once, before vCPUs run).
  void set_service(TimerService* service) { service_ = service; }
  // Tells the timer service that the VM's next deadline may have moved (no VM lock held).
  void deadline_changed() {
    if (service_) service_->deadline_changed();
  }
  // The vCPU's earliest own deadline (LAPIC timer / TSC deadline, vPMU overflow), owner thread.
  void publish(int vcpu, uint64_t deadline_ns);
  // RESET: nothing armed (the reset notifies the service once for the whole VM).
  void clear(int vcpu);
  // Requests KVM_REQ_EVENT and kicks every vCPU whose published deadline is at or before `now`,
  // once per deadline value (an expired deadline the vCPU has not serviced yet is not due again).
  void service_vcpus(uint64_t now_ns);
  // The earliest published deadline not yet kicked for; UINT64_MAX when none.
  uint64_t next_vcpu_deadline() const;

 private:
  struct alignas(64) PerVcpu {
    std::atomic<uint64_t> deadline{UINT64_MAX};
    // The deadline service_vcpus() last kicked for (written by the servicing thread, read by
    // next_vcpu_deadline() on any thread).
    std::atomic<uint64_t> kicked{UINT64_MAX};
  };
  VcpuRequestSet& reqs_;
  std::unique_ptr<PerVcpu[]> per_vcpu_;
  TimerService* service_ = nullptr;
};

}  // namespace apicv::virt
