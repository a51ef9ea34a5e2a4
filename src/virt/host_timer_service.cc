// HostTimerService: see host_timer_service.h.
#include "virt/host_timer_service.h"

#include <chrono>
#include <utility>

namespace apicv::virt {

HostTimerService::HostTimerService(const Clock& clock,
                                   std::function<uint64_t(uint64_t now_ns)> service)
    : clock_(clock), service_(std::move(service)) {
  thread_ = std::thread([this] { thread_main(); });
}

HostTimerService::~HostTimerService() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HostTimerService::deadline_changed() {
  {
    std::lock_guard<std::mutex> g(mu_);
    poke_ = true;
  }
  cv_.notify_one();
}

void HostTimerService::thread_main() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    lk.unlock();
    const uint64_t next = service_(clock_.now_ns());
    lk.lock();
    if (stop_) break;
    // A deadline that changed while servicing: service again before sleeping.
    if (poke_) {
      poke_ = false;
      continue;
    }
    const uint64_t now = clock_.now_ns();
    if (next == UINT64_MAX) {
      cv_.wait(lk, [this] { return stop_ || poke_; });
    } else if (next > now) {
      cv_.wait_for(lk, std::chrono::nanoseconds(next - now), [this] { return stop_ || poke_; });
    }
    poke_ = false;
  }
}

}  // namespace apicv::virt
