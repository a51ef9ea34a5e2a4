// The local APIC timer's counting state: one-shot, periodic and TSC-deadline modes.
// Intel SDM vol. 3A 11.5.4 (APIC timer), 11.5.4.1 (TSC-deadline mode); KVM lapic.c behaviour as in
// spec §9.4. Time is an input (`now_ns`); the timer never reads a clock. The owner (Lapic) decides
// what to deliver; this class only knows when the next expiry is and what TMCCT reads.
//
// Not supported: the "timer advance" (KVM's timer_advance_ns) early-fire tuning; the hardware
// VMX-preemption-timer offload; LVT timer mode 3 (reserved by the SDM) behaves as one-shot, as in
// KVM where it is neither periodic nor TSC-deadline.
#pragma once

#include <cstdint>

#include "x86/apic_defs.h"

namespace apicv {

class LapicTimer {
 public:
  static constexpr uint64_t kNone = UINT64_MAX;

  struct Params {
    uint64_t bus_cycle_ns = 1;          // length of one APIC bus cycle (KVM apic_bus_cycle_ns)
    uint64_t min_periodic_ns = 200000;  // KVM min_timer_period_us = 200
    uint64_t tsc_khz = 1000000;         // guest TSC frequency, for IA32_TSC_DEADLINE
  };

  // TDCR bits 0, 1 and 3 select the divisor (SDM Figure 11-10): 0->2, 1->4, 2->8, 3->16, 8->32,
  // 9->64, 0xA->128, 0xB->1.
  static constexpr uint32_t DivideFromTdcr(uint32_t tdcr) {
    const uint32_t sel = (tdcr & 3) | ((tdcr & 8) >> 1);
    return 1u << ((sel + 1) & 7);
  }

  explicit LapicTimer(const Params& params);

  // RESET/INIT: disarmed, TMICT 0, divide-by-2, mode one-shot.
  void reset();

  // The LVTT timer-mode field changed to `mode_bits` (LVTT[18:17] after masking). Entering or
  // leaving TSC-deadline mode cancels the timer and zeroes TMICT and the deadline (KVM
  // apic_update_lvtt); switching between one-shot and periodic keeps the countdown running.
  void set_mode(uint32_t mode_bits);
  x86::TimerMode mode() const { return mode_; }

  // TMICT write: ignored in TSC-deadline mode; otherwise cancels and restarts; 0 stops.
  void write_tmict(uint32_t value, uint64_t now_ns);
  uint32_t tmict() const { return tmict_; }

  // TDCR write (stored & 0xB). A divisor change while counting rescales the remaining time.
  void write_tdcr(uint32_t value, uint64_t now_ns);
  uint32_t tdcr() const { return tdcr_; }
  uint32_t divide() const { return divide_; }

  // TMCCT: 0 in TSC-deadline mode, when TMICT is 0 or after a one-shot expired; otherwise the
  // remaining bus cycles / divisor, never above TMICT.
  uint32_t current_count(uint64_t now_ns) const;

  // IA32_TSC_DEADLINE write: ignored outside TSC-deadline mode. 0 disarms. A deadline at or before
  // `now_tsc` is due immediately (deadline_ns() == now_ns). With tsc_khz == 0 it never fires.
  void write_tsc_deadline(uint64_t tsc, uint64_t now_ns, uint64_t now_tsc);
  // IA32_TSC_DEADLINE read: 0 outside TSC-deadline mode and after expiry.
  uint64_t tsc_deadline() const {
    return mode_ == x86::TimerMode::kTscDeadline ? tsc_deadline_ : 0;
  }

  // Absolute expiry time, kNone when disarmed.
  uint64_t deadline_ns() const { return target_ns_; }
  bool due(uint64_t now_ns) const { return target_ns_ != kNone && now_ns >= target_ns_; }
  uint64_t period_ns() const { return period_ns_; }

  // Called when the expiry has been handled: one-shot and TSC-deadline disarm (TSC deadline
  // cleared); periodic re-arms at target + period, skipping whole periods when far behind so that
  // a late caller gets one coalesced interrupt and the phase never drifts.
  void expire(uint64_t now_ns);

  void cancel() { target_ns_ = kNone; }

 private:
  uint64_t compute_period() const;

  Params params_;
  x86::TimerMode mode_ = x86::TimerMode::kOneShot;
  uint32_t tmict_ = 0;
  uint32_t tdcr_ = 0;
  uint32_t divide_ = 2;
  uint64_t period_ns_ = 0;
  uint64_t target_ns_ = kNone;
  uint64_t tsc_deadline_ = 0;
};

}  // namespace apicv
