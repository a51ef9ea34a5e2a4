// Time source for devices. Devices never read a clock themselves: callers pass `now_ns`, taken
// from a Clock, so every device is a deterministic function of its inputs.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace apicv {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t now_ns() const = 0;
};

// CLOCK_MONOTONIC in nanoseconds.
class MonotonicClock final : public Clock {
 public:
  uint64_t now_ns() const override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
};

// Manually advanced clock for tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(uint64_t start_ns = 0) : now_(start_ns) {}
  uint64_t now_ns() const override { return now_.load(std::memory_order_relaxed); }
  void set(uint64_t ns) { now_.store(ns, std::memory_order_relaxed); }
  void advance(uint64_t ns) { now_.fetch_add(ns, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> now_;
};

}  // namespace apicv
