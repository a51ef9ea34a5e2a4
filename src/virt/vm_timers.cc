// Per-vCPU timer deadlines behind the timer seam; see vm_timers.h.
#include "virt/vm_timers.h"

#include <algorithm>

namespace apicv::virt {

VmTimers::VmTimers(VcpuRequestSet& reqs)
    : reqs_(reqs), per_vcpu_(std::make_unique<PerVcpu[]>(static_cast<size_t>(reqs.nr_vcpus()))) {}

void VmTimers::publish(int vcpu, uint64_t deadline_ns) {
  if (per_vcpu_[vcpu].deadline.exchange(deadline_ns, std::memory_order_acq_rel) != deadline_ns)
    deadline_changed();
}

void VmTimers::clear(int vcpu) {
  per_vcpu_[vcpu].deadline.store(UINT64_MAX);
}

void VmTimers::service_vcpus(uint64_t t) {
  // apic_timer_fn() / the PMU's overflow: the Lapic and Pmu belong to their vCPU's thread, so the
  // service only makes the request and kicks; the vCPU fires the timer in run_timers().
  for (int i = 0; i < reqs_.nr_vcpus(); ++i) {
    PerVcpu& c = per_vcpu_[i];
    const uint64_t d = c.deadline.load(std::memory_order_acquire);
    if (d <= t && c.kicked.load(std::memory_order_relaxed) != d) {
      c.kicked.store(d, std::memory_order_relaxed);
      reqs_.make_request_and_kick(i, kReqEvent);
    }
  }
}

uint64_t VmTimers::next_vcpu_deadline() const {
  uint64_t next = UINT64_MAX;
  for (int i = 0; i < reqs_.nr_vcpus(); ++i) {
    const uint64_t d = per_vcpu_[i].deadline.load(std::memory_order_acquire);
    if (d != per_vcpu_[i].kicked.load(std::memory_order_relaxed)) next = std::min(next, d);
  }
  return next;
}

}  // namespace apicv::virt
