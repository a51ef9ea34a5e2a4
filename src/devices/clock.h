// Time sources for the VM: the time base devices run on (now_ns) and the guest's TSC.
//
// Devices never read a clock themselves: callers pass `now_ns`, taken from a Clock, so every
// device is a deterministic function of its inputs. The virtualization layer (ApicvVm) reads
// time only through the Clock its backend gives it, never the host's clocks or RDTSC: a backend
// that runs the guest in virtual time (a software CPU) supplies a Clock whose now_ns() and tsc()
// both derive from its virtual nanoseconds.
//
// The guest TSC (Intel SDM vol. 3B 17.17): tsc() is the value a guest RDTSC would return now,
// counting at tsc_khz() kHz. IA32_TSC_DEADLINE (SDM 11.5.4.1) and the vPMU's cycle counters
// convert through it.
#pragma once

#include <x86intrin.h>

#include <atomic>
#include <cstdint>
#include <ctime>

namespace apicv {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time in nanoseconds.
  virtual uint64_t now_ns() const = 0;
  // The guest's TSC now.
  virtual uint64_t tsc() const = 0;
  // The rate tsc() counts at, in kHz (> 0).
  virtual uint64_t tsc_khz() const = 0;
};

// The host's clocks: CLOCK_MONOTONIC in nanoseconds, and the host TSC as the guest's TSC (the KVM
// backend sets the guest's TSC offset to zero, see src/backend/kvm/kvm_vm.cc).
class MonotonicClock final : public Clock {
 public:
  uint64_t now_ns() const override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
  uint64_t tsc() const override { return __rdtsc(); }
  // Measured once per process against CLOCK_MONOTONIC (20 ms busy wait on the first call).
  uint64_t tsc_khz() const override {
    static const uint64_t khz = [this] {
      const uint64_t t0 = now_ns();
      const uint64_t c0 = __rdtsc();
      while (now_ns() - t0 < 20'000'000) {
      }
      const uint64_t t1 = now_ns();
      const uint64_t c1 = __rdtsc();
      const uint64_t k = (c1 - c0) * 1'000'000 / (t1 - t0);
      return k ? k : 1;
    }();
    return khz;
  }
};

// Manually advanced clock for tests and virtual-time backends. Its TSC is virtual too:
// tsc = now_ns * tsc_khz / 10^6, so a TSC-deadline value converts back to the same nanosecond.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(uint64_t start_ns = 0, uint64_t tsc_khz = kDefaultTscKhz)
      : now_(start_ns), tsc_khz_(tsc_khz ? tsc_khz : kDefaultTscKhz) {}
  uint64_t now_ns() const override { return now_.load(std::memory_order_relaxed); }
  uint64_t tsc() const override {
    // 128-bit product: now_ns * khz overflows 64 bits after ~5 hours at 1 GHz.
    const unsigned __int128 t = static_cast<unsigned __int128>(now_ns()) * tsc_khz_;
    return static_cast<uint64_t>(t / 1'000'000);
  }
  uint64_t tsc_khz() const override { return tsc_khz_; }
  void set(uint64_t ns) { now_.store(ns, std::memory_order_relaxed); }
  void advance(uint64_t ns) { now_.fetch_add(ns, std::memory_order_relaxed); }

  static constexpr uint64_t kDefaultTscKhz = 1'000'000;  // 1 GHz: one tick per nanosecond

 private:
  std::atomic<uint64_t> now_;
  const uint64_t tsc_khz_;
};

}  // namespace apicv
