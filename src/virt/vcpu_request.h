// Per-vCPU request bits, vCPU mode and kick-and-wait: KVM's kvm_make_request() /
// kvm_check_request(), vcpu->mode (OUTSIDE_GUEST_MODE, IN_GUEST_MODE, EXITING_GUEST_MODE) and
// kvm_make_all_cpus_request() from virt/kvm/kvm_main.c and include/linux/kvm_host.h. Shared by
// every backend. Lock-free: request words and modes are atomics, so any thread may post a request.
//
// Protocol (the ordering KVM relies on, spec §2.3/§2.6):
//   vCPU thread:  process requests -> enter_guest_mode() [mode := IN_GUEST, seq_cst] -> if
//                 requests_pending(): exit_guest_mode() and loop -> run guest until mode() ==
//                 EXITING or the guest exits -> exit_guest_mode() [mode := OUTSIDE, exit count++].
//   requester:    make_request() [seq_cst] -> cmpxchg IN_GUEST -> EXITING -> kick callback.
// Because both sides use sequentially consistent operations, either the vCPU sees the request
// before entering or the requester sees IN_GUEST and kicks it; a request is never lost.
//
// Not supported: READING_SHADOW_PAGE_TABLES mode, KVM_REQUEST_NO_ACTION, arch request numbers
// beyond the 64 bits of one word (kMaxRequests).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

namespace apicv::virt {

// Request numbers (bit positions). Flags live in the request table, not in the number.
enum VcpuRequest : unsigned {
  kReqEvent = 0,        // KVM_REQ_EVENT: re-evaluate pending events before the next entry
  kReqApicvUpdate = 1,  // KVM_REQ_APICV_UPDATE: apply the VM-wide inhibit state (WAIT|NO_WAKEUP)
  kReqPmi = 2,          // KVM_REQ_PMI: deliver a PMI through LVTPC
  kReqPmu = 3,          // KVM_REQ_PMU: reprogram counters
  kReqScanIoapic = 4,   // KVM_REQ_SCAN_IOAPIC: recompute EOI-exit bitmap / handled vectors
  kReqUnblock = 5,      // KVM_REQ_UNBLOCK: leave a halt wait
  kMaxRequests = 64,
};

// KVM_REQUEST_WAIT: the requester waits until each kicked vCPU has left guest mode.
// KVM_REQUEST_NO_WAKEUP: vCPUs blocked in halt are not woken (they process it when they run).
enum RequestFlags : unsigned { kRequestNone = 0, kRequestWait = 1, kRequestNoWakeup = 2 };

constexpr unsigned RequestFlagsOf(unsigned req) {
  return req == kReqApicvUpdate ? (kRequestWait | kRequestNoWakeup) : kRequestNone;
}

enum class VcpuMode : uint8_t { kOutsideGuestMode, kInGuestMode, kExitingGuestMode };

// One vCPU's request word and mode. Cache-line sized so vCPUs do not false-share.
class alignas(64) VcpuRequests {
 public:
  // kvm_make_request(): publish the bit. seq_cst pairs with enter_guest_mode().
  void make_request(unsigned req) { requests_.fetch_or(Bit(req), std::memory_order_seq_cst); }
  // kvm_test_request(): peek without consuming.
  bool test_request(unsigned req) const {
    return requests_.load(std::memory_order_acquire) & Bit(req);
  }
  // kvm_check_request(): test-and-clear; acquire so the requester's prior writes are visible.
  bool check_request(unsigned req) {
    if (!(requests_.load(std::memory_order_acquire) & Bit(req))) return false;
    return requests_.fetch_and(~Bit(req), std::memory_order_acq_rel) & Bit(req);
  }
  bool requests_pending() const { return requests_.load(std::memory_order_seq_cst) != 0; }
  uint64_t pending_mask() const { return requests_.load(std::memory_order_acquire); }

  // smp_store_mb(vcpu->mode, IN_GUEST_MODE). The caller must then check requests_pending().
  void enter_guest_mode() { mode_.store(VcpuMode::kInGuestMode, std::memory_order_seq_cst); }
  // vcpu->mode = OUTSIDE_GUEST_MODE after the exit; bumping exits_ lets waiters see a completed
  // exit even if the vCPU re-entered before they looked at the mode.
  void exit_guest_mode() {
    exits_.fetch_add(1, std::memory_order_seq_cst);
    mode_.store(VcpuMode::kOutsideGuestMode, std::memory_order_seq_cst);
  }
  VcpuMode mode() const { return mode_.load(std::memory_order_seq_cst); }
  // True once a kick asked this vCPU to leave the guest (the synthetic guest polls this).
  bool exit_requested() const { return mode() == VcpuMode::kExitingGuestMode; }

  // kvm_vcpu_exiting_guest_mode(): cmpxchg IN_GUEST -> EXITING; returns the mode seen.
  VcpuMode exiting_guest_mode() {
    VcpuMode expected = VcpuMode::kInGuestMode;
    mode_.compare_exchange_strong(expected, VcpuMode::kExitingGuestMode, std::memory_order_seq_cst);
    return expected;
  }
  uint64_t exit_count() const { return exits_.load(std::memory_order_seq_cst); }

  // Halt state, for KVM_REQUEST_NO_WAKEUP (kvm_vcpu_wake_up only wakes blocked vCPUs).
  void set_blocked(bool blocked) { blocked_.store(blocked, std::memory_order_seq_cst); }
  bool blocked() const { return blocked_.load(std::memory_order_seq_cst); }

 private:
  static constexpr uint64_t Bit(unsigned req) { return 1ull << (req & (kMaxRequests - 1)); }

  std::atomic<uint64_t> requests_{0};
  std::atomic<VcpuMode> mode_{VcpuMode::kOutsideGuestMode};
  std::atomic<bool> blocked_{false};
  std::atomic<uint64_t> exits_{0};
};

// All vCPUs of a VM plus the backend's kick/wake callbacks.
class VcpuRequestSet {
 public:
  // kick(vcpu): force a vCPU that is in guest mode to exit (KVM: IPI / signal / immediate_exit).
  // wake(vcpu): wake a vCPU blocked in halt. Both may be empty (synthetic vCPUs poll their mode).
  // Both are called without any apicv lock other than the caller's, and must not block.
  using KickFn = std::function<void(int vcpu)>;
  explicit VcpuRequestSet(int nr_vcpus, KickFn kick = {}, KickFn wake = {});

  int nr_vcpus() const { return nr_vcpus_; }
  VcpuRequests& vcpu(int i) { return vcpus_[i]; }
  const VcpuRequests& vcpu(int i) const { return vcpus_[i]; }

  // kvm_make_request() + kvm_vcpu_kick(): post to one vCPU and kick it if it is in the guest.
  void make_request_and_kick(int vcpu, unsigned req);
  // kvm_vcpu_kick(): IN_GUEST -> EXITING and the kick callback; wakes a blocked vCPU.
  void kick_vcpu(int vcpu);

  // kvm_make_all_cpus_request(): set `req` on every vCPU, kick those in guest mode, and when the
  // request has KVM_REQUEST_WAIT wait until each kicked vCPU completed an exit. Returns the number
  // of vCPUs kicked. The wait spins (yielding); the vCPU side never takes a lock to leave the
  // guest, so holding apicv_update_lock for write while waiting cannot deadlock.
  int make_all_cpus_request(unsigned req);

  uint64_t kicks() const { return kicks_.load(std::memory_order_relaxed); }
  uint64_t broadcasts() const { return broadcasts_.load(std::memory_order_relaxed); }

 private:
  int nr_vcpus_;
  std::unique_ptr<VcpuRequests[]> vcpus_;
  KickFn kick_;
  KickFn wake_;
  std::atomic<uint64_t> kicks_{0};
  std::atomic<uint64_t> broadcasts_{0};
};

}  // namespace apicv::virt
