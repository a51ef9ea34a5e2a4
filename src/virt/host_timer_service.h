// HostTimerService: the host-time TimerService (timer_service.h). One host thread sleeps until
// the VM's next deadline on the VM's Clock (CLOCK_MONOTONIC for the KVM and threaded synthetic
// backends) and calls the VM's service_timers(now), the part KVM's hrtimer callbacks play
// (apic_timer_fn, pit_timer_fn). deadline_changed() wakes it to recompute the deadline.
//
// Threading: the thread starts in the constructor and is joined in the destructor; the service
// callback must stay valid until then (ApicvVm destroys its service before its devices).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "devices/clock.h"
#include "virt/timer_service.h"

namespace apicv::virt {

class HostTimerService final : public TimerService {
 public:
  // `service(now_ns)` fires what is due and returns the next deadline (UINT64_MAX: none).
  HostTimerService(const Clock& clock, std::function<uint64_t(uint64_t now_ns)> service);
  ~HostTimerService() override;
  HostTimerService(const HostTimerService&) = delete;
  HostTimerService& operator=(const HostTimerService&) = delete;

  void deadline_changed() override;

 private:
  void thread_main();

  const Clock& clock_;
  const std::function<uint64_t(uint64_t)> service_;
  std::mutex mu_;  // leaf: never held while calling service_
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  bool poke_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace apicv::virt
