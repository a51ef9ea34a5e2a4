// Adaptive halt polling, KVM's halt_poll_ns algorithm (virt/kvm/kvm_main.c, kvm_vcpu_halt and
// grow/shrink_halt_poll_ns): a halted vCPU first busy-polls for up to poll_ns() before sleeping.
// A wake-up after a sleep shorter than the maximum grows the window (x2, starting at 10 us); a
// wake-up that took longer than the maximum, or an invalid wake-up, shrinks it (to 0 with KVM's
// default shrink factor 0). Pure arithmetic: the caller measures time.
#pragma once

#include <cstdint>

namespace apicv::kvm {

class HaltPollController {
 public:
  static constexpr uint64_t kGrowStartNs = 10000;  // halt_poll_ns_grow_start
  static constexpr unsigned kGrow = 2;             // halt_poll_ns_grow
  static constexpr unsigned kShrink = 0;           // halt_poll_ns_shrink

  explicit HaltPollController(uint64_t max_ns) : max_ns_(max_ns) {}

  uint64_t poll_ns() const { return poll_ns_; }
  uint64_t max_ns() const { return max_ns_; }

  // After one halt: `halt_ns` is how long the vCPU was halted in total, `valid_wakeup` whether it
  // woke for an event (not a stop/spurious wake).
  void Update(uint64_t halt_ns, bool valid_wakeup) {
    if (max_ns_ == 0) {
      poll_ns_ = 0;
    } else if (!valid_wakeup) {
      Shrink();
    } else if (halt_ns <= poll_ns_) {
      // Woke while polling: the window is right.
    } else if (poll_ns_ != 0 && halt_ns > max_ns_) {
      Shrink();
    } else if (poll_ns_ < max_ns_ && halt_ns < max_ns_) {
      Grow();
    }
  }

 private:
  void Grow() {
    uint64_t v = poll_ns_ * kGrow;
    if (v < kGrowStartNs) v = kGrowStartNs;
    poll_ns_ = v > max_ns_ ? max_ns_ : v;
  }
  void Shrink() { poll_ns_ = kShrink == 0 ? 0 : poll_ns_ / kShrink; }

  uint64_t max_ns_;
  uint64_t poll_ns_ = 0;
};

}  // namespace apicv::kvm
