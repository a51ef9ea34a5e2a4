// kvm_make_all_cpus_request() and kicks; see vcpu_request.h for the protocol.
#include "virt/vcpu_request.h"

#include <stdexcept>
#include <thread>
#include <vector>

namespace apicv::virt {

VcpuRequestSet::VcpuRequestSet(int nr_vcpus, KickFn kick, KickFn wake)
    : nr_vcpus_(nr_vcpus), kick_(std::move(kick)), wake_(std::move(wake)) {
  if (nr_vcpus < 1 || nr_vcpus > 4096) {
    throw std::invalid_argument("VcpuRequestSet: unsupported vCPU count (1..4096)");
  }
  vcpus_ = std::make_unique<VcpuRequests[]>(static_cast<size_t>(nr_vcpus));
}

void VcpuRequestSet::kick_vcpu(int vcpu) {
  VcpuRequests& v = vcpus_[vcpu];
  if (v.blocked()) {
    if (wake_) wake_(vcpu);
    return;
  }
  if (v.exiting_guest_mode() == VcpuMode::kInGuestMode) {
    kicks_.fetch_add(1, std::memory_order_relaxed);
    if (kick_) kick_(vcpu);
  }
}

void VcpuRequestSet::make_request_and_kick(int vcpu, unsigned req) {
  vcpus_[vcpu].make_request(req);
  kick_vcpu(vcpu);
}

int VcpuRequestSet::make_all_cpus_request(unsigned req) {
  const unsigned flags = RequestFlagsOf(req);
  const bool wait = flags & kRequestWait;
  broadcasts_.fetch_add(1, std::memory_order_relaxed);
  // Exit counts sampled after the request is visible: a vCPU whose count moves past the sample
  // has left the guest after it could see the request.
  std::vector<uint64_t> seen;
  std::vector<int> waitlist;
  int kicked = 0;
  for (int i = 0; i < nr_vcpus_; ++i) {
    VcpuRequests& v = vcpus_[i];
    v.make_request(req);
    if (!(flags & kRequestNoWakeup) && v.blocked() && wake_) wake_(i);
    const uint64_t exits = v.exit_count();
    const VcpuMode mode = v.exiting_guest_mode();
    // kvm_request_needs_ipi(): WAIT requests also wait for a vCPU already EXITING.
    const bool needs_ipi =
        wait ? mode != VcpuMode::kOutsideGuestMode : mode == VcpuMode::kInGuestMode;
    if (!needs_ipi) continue;
    ++kicked;
    kicks_.fetch_add(1, std::memory_order_relaxed);
    if (kick_) kick_(i);
    if (wait) {
      waitlist.push_back(i);
      seen.push_back(exits);
    }
  }
  for (size_t k = 0; k < waitlist.size(); ++k) {
    const VcpuRequests& v = vcpus_[waitlist[k]];
    while (v.mode() != VcpuMode::kOutsideGuestMode && v.exit_count() == seen[k]) {
      std::this_thread::yield();
    }
  }
  return kicked;
}

}  // namespace apicv::virt
