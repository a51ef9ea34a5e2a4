// Local APIC timer arithmetic. Intel SDM vol. 3A 11.5.4; see lapic_timer.h for what is not
// supported.
#include "devices/lapic_timer.h"

#include <algorithm>

namespace apicv {
namespace {

// Guest-chosen counts times configured cycle lengths can exceed 64 bits; saturate instead of
// wrapping so a huge TMICT means "far future", never "already due".
uint64_t SatMul(uint64_t a, uint64_t b) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  return p > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(p);
}

uint64_t SatAdd(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

// An armed timer's expiry; kNone (UINT64_MAX) is reserved for "disarmed", so the farthest possible
// expiry is one nanosecond before it.
uint64_t ExpiryAt(uint64_t now, uint64_t delta) {
  return std::min(SatAdd(now, delta), LapicTimer::kNone - 1);
}

x86::TimerMode ModeFromBits(uint32_t bits) {
  switch (bits & 3) {
    case 1:
      return x86::TimerMode::kPeriodic;
    case 2:
      return x86::TimerMode::kTscDeadline;
    default:  // 0, and reserved 3 (one-shot-like in KVM)
      return x86::TimerMode::kOneShot;
  }
}

}  // namespace

LapicTimer::LapicTimer(const Params& params) : params_(params) {
  // Configuration, not guest input, but keep the arithmetic well defined.
  params_.bus_cycle_ns = std::max<uint64_t>(params_.bus_cycle_ns, 1);
  reset();
}

void LapicTimer::reset() {
  mode_ = x86::TimerMode::kOneShot;
  tmict_ = 0;
  tdcr_ = 0;
  divide_ = DivideFromTdcr(0);
  period_ns_ = 0;
  target_ns_ = kNone;
  tsc_deadline_ = 0;
}

uint64_t LapicTimer::compute_period() const {
  uint64_t p = SatMul(SatMul(tmict_, params_.bus_cycle_ns), divide_);
  // Only periodic mode is clamped: a one-shot cannot flood the host.
  if (p != 0 && mode_ == x86::TimerMode::kPeriodic && p < params_.min_periodic_ns) {
    p = params_.min_periodic_ns;
  }
  return p;
}

void LapicTimer::set_mode(uint32_t mode_bits) {
  const x86::TimerMode next = ModeFromBits(mode_bits);
  if (next == mode_) return;
  const bool was_deadline = mode_ == x86::TimerMode::kTscDeadline;
  const bool is_deadline = next == x86::TimerMode::kTscDeadline;
  mode_ = next;
  if (was_deadline != is_deadline) {
    target_ns_ = kNone;
    tmict_ = 0;
    period_ns_ = 0;
    tsc_deadline_ = 0;
    return;
  }
  // One-shot <-> periodic: the running countdown continues; the new mode decides what happens at
  // expiry, and periodic mode re-applies the minimum period.
  if (tmict_ != 0) period_ns_ = compute_period();
}

void LapicTimer::write_tmict(uint32_t value, uint64_t now_ns) {
  if (mode_ == x86::TimerMode::kTscDeadline) return;
  target_ns_ = kNone;
  tmict_ = value;
  period_ns_ = compute_period();
  if (period_ns_ != 0) target_ns_ = ExpiryAt(now_ns, period_ns_);
}

void LapicTimer::write_tdcr(uint32_t value, uint64_t now_ns) {
  const uint32_t old_divide = divide_;
  tdcr_ = value & 0xB;
  divide_ = DivideFromTdcr(tdcr_);
  if (divide_ == old_divide || mode_ == x86::TimerMode::kTscDeadline || tmict_ == 0) return;
  period_ns_ = compute_period();
  if (target_ns_ == kNone) return;
  const uint64_t remaining = target_ns_ > now_ns ? target_ns_ - now_ns : 0;
  const unsigned __int128 scaled = static_cast<unsigned __int128>(remaining) * divide_ / old_divide;
  target_ns_ = ExpiryAt(now_ns, scaled > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(scaled));
}

uint32_t LapicTimer::current_count(uint64_t now_ns) const {
  if (mode_ == x86::TimerMode::kTscDeadline || tmict_ == 0 || period_ns_ == 0 ||
      target_ns_ == kNone) {
    return 0;
  }
  uint64_t remaining = target_ns_ > now_ns ? target_ns_ - now_ns : 0;
  if (remaining > period_ns_) remaining %= period_ns_;
  const uint64_t count = remaining / SatMul(params_.bus_cycle_ns, divide_);
  return static_cast<uint32_t>(std::min<uint64_t>(count, tmict_));
}

void LapicTimer::write_tsc_deadline(uint64_t tsc, uint64_t now_ns, uint64_t now_tsc) {
  if (mode_ != x86::TimerMode::kTscDeadline) return;
  target_ns_ = kNone;
  tsc_deadline_ = tsc;
  if (tsc == 0 || params_.tsc_khz == 0) return;
  if (tsc <= now_tsc) {
    target_ns_ = now_ns;
    return;
  }
  // ns = cycles * 10^6 / kHz.
  const unsigned __int128 ns =
      static_cast<unsigned __int128>(tsc - now_tsc) * 1000000u / params_.tsc_khz;
  target_ns_ = ExpiryAt(now_ns, ns > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(ns));
}

void LapicTimer::expire(uint64_t now_ns) {
  if (target_ns_ == kNone) return;
  switch (mode_) {
    case x86::TimerMode::kTscDeadline:
      tsc_deadline_ = 0;
      target_ns_ = kNone;
      return;
    case x86::TimerMode::kPeriodic: {
      if (period_ns_ == 0) {
        target_ns_ = kNone;
        return;
      }
      uint64_t periods = 1;
      if (now_ns >= target_ns_) periods = (now_ns - target_ns_) / period_ns_ + 1;
      target_ns_ = ExpiryAt(target_ns_, SatMul(periods, period_ns_));
      return;
    }
    case x86::TimerMode::kOneShot:
      target_ns_ = kNone;
      return;
  }
}

}  // namespace apicv
