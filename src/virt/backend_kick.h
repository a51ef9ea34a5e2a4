// The backend's kick (KVM: the IPI / signal / immediate_exit that forces a vCPU out of KVM_RUN or
// out of a halt wait), as the VM's components call it.
//
// Threading: kick() may run on any thread (vCPU threads, the timer service) while set() swaps the
// callback, so the current callback is an atomic pointer; replaced callbacks are kept until
// destruction (set() runs a handful of times per run). Lock: `mu_` (leaf) serialises set() only.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace apicv::virt {

class BackendKick {
 public:
  void set(std::function<void(int vcpu)> kick) {
    std::lock_guard<std::mutex> g(mu_);
    holders_.push_back(std::make_unique<std::function<void(int)>>(std::move(kick)));
    current_.store(holders_.back().get(), std::memory_order_release);
  }
  // Must not block; no VM lock is held by the callers that matter (docs/locking.md).
  void kick(int vcpu) const {
    if (auto* k = current_.load(std::memory_order_acquire); k && *k) (*k)(vcpu);
  }

 private:
  std::atomic<const std::function<void(int)>*> current_{nullptr};
  std::mutex mu_;  // guards holders_
  std::vector<std::unique_ptr<std::function<void(int)>>> holders_;
};

}  // namespace apicv::virt
