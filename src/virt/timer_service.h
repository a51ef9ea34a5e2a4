// The timer seam between a VM and its backend: who wakes the VM when one of its timers is due.
//
// An ApicvVm owns timers (PIT channel 0, the IOAPIC's storm-guard re-delivery, each vCPU's LAPIC
// timer / TSC deadline and vPMU cycle overflow) but never waits for them itself. It exposes
//   uint64_t next_deadline_ns();          // VM-wide: the earliest of all of them
//   uint64_t service_timers(uint64_t now); // fire / kick what is due at `now`
// and tells a TimerService whenever its next deadline may have moved. The backend chooses the
// service:
//   - HostTimerService (host_timer_service.h, the default): a host thread that sleeps until the
//     deadline on the VM's Clock and calls service_timers(), as KVM's hrtimers do.
//   - its own (a virtual-time backend): deadline_changed() notes that next_deadline_ns() must be
//     read again; the backend calls service_timers(t) itself when its virtual time reaches it.
//     The VM starts no thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace apicv::virt {

class TimerService {
 public:
  virtual ~TimerService() = default;
  // The VM's next_deadline_ns() may have changed (a timer was armed, re-armed or cancelled, or
  // the VM was reset). Called from any thread, vCPU threads included, with no VM lock held. It
  // must not block and must not call back into the VM.
  virtual void deadline_changed() = 0;
};

// A service that only counts notifications: for backends that poll next_deadline_ns() after
// every step anyway, and for tests.
class ManualTimerService final : public TimerService {
 public:
  void deadline_changed() override { changes_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t changes() const { return changes_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> changes_{0};
};

}  // namespace apicv::virt
