// ApicvVm's timers: the seam of virt/timer_service.h (VM-wide next deadline and its service), each
// vCPU's LAPIC timer (KVM lapic.c apic_timer_fn -> kvm_inject_apic_timer_irqs on the vCPU) and the
// vPMU cycle-counter overflow deadline (pmu.c). See apicv_vm.h.
#include <algorithm>
#include <bit>

#include "virt/apicv_vm_internal.h"

namespace apicv::virt {

using namespace vm_detail;  // NOLINT: the split files share ApicvVm's private helpers
using x86::DeliveryMode;

uint64_t ApicvVm::service_timers(uint64_t t) {
  PitOutput pout;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    if (pit_.next_deadline_ns() <= t) pout = pit_.on_timer(t);
  }
  pit_output(pout);
  IoApicOutput iout;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    if (ioapic_.next_deadline_ns() <= t) iout = ioapic_.poll(t);
  }
  ioapic_output(iout);
  // apic_timer_fn() / the PMU's overflow: the Lapic and Pmu belong to their vCPU's thread, so the
  // service only makes the request and kicks; the vCPU fires the timer in run_timers(). One kick
  // per deadline value: an expired deadline the vCPU has not serviced yet is not due again.
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    VcpuCtx& c = *vcpus_[static_cast<size_t>(i)];
    const uint64_t d = c.timer_deadline.load(std::memory_order_acquire);
    if (d <= t && c.kicked_deadline.load(std::memory_order_relaxed) != d) {
      c.kicked_deadline.store(d, std::memory_order_relaxed);
      reqs_.make_request_and_kick(i, kReqEvent);
    }
  }
  return next_deadline_ns();
}

uint64_t ApicvVm::next_deadline_ns() {
  uint64_t next = UINT64_MAX;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    next = std::min(next, pit_.next_deadline_ns());
  }
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    next = std::min(next, ioapic_.next_deadline_ns());
  }
  for (const auto& cp : vcpus_) {
    const uint64_t d = cp->timer_deadline.load(std::memory_order_acquire);
    if (d != cp->kicked_deadline.load(std::memory_order_relaxed)) next = std::min(next, d);
  }
  return next;
}

// Cycle counters count guest time only: the interval from entry to exit, as a perf event that
// excludes the host does. Entry resynchronises (time in the VMM or in HLT does not count), exit
// counts. Guest CPL is not known at an exit without an ioctl, so cycles count as CPL 0.
void ApicvVm::pmu_cycles_enter(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (!c.pmu.any_counter_enabled()) [[likely]] {
    if (c.pmu_deadline != UINT64_MAX) {
      c.pmu_deadline = UINT64_MAX;
      note_timer(vcpu);
    }
    return;
  }
  c.pmu.advance_cycles(now(), read_tsc(), 0, /*halted=*/true);
  const uint64_t d = c.pmu.next_cycles_overflow_ns(tsc_khz_);
  if (d != c.pmu_deadline) {
    // The timer service kicks the vCPU out of the guest when the counter would wrap.
    c.pmu_deadline = d;
    note_timer(vcpu);
  }
}

void ApicvVm::pmu_cycles_exit(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (!c.pmu.any_counter_enabled()) [[likely]]
    return;
  const PmuOverflow ov = c.pmu.advance_cycles(now(), read_tsc(), 0, /*halted=*/false);
  // A perf overflow: KVM_REQ_PMI only (kvm_perf_overflow), in both delivery modes.
  if (ov.pmi && c.pmu.take_pmi_request()) reqs_.vcpu(vcpu).make_request(kReqPmi);
}

uint64_t ApicvVm::next_deadline_ns(int vcpu) {
  return vcpus_[static_cast<size_t>(vcpu)]->lapic.next_timer_deadline_ns();
}

void ApicvVm::run_timers(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (c.lapic.next_timer_deadline_ns() <= now()) {
    if (c.lapic.on_timer(now())) reqs_.vcpu(vcpu).make_request(kReqEvent);
    note_timer(vcpu);
  }
}

void ApicvVm::note_timer(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  const uint64_t d = std::min(c.lapic.next_timer_deadline_ns(), c.pmu_deadline);
  if (c.timer_deadline.exchange(d, std::memory_order_acq_rel) != d) timer_deadline_changed();
}

}  // namespace apicv::virt
