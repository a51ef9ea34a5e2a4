// Virtual time for -accel emu (docs/emu.md), with QEMU's `-icount shift=N,sleep=off` meaning:
// every retired guest instruction is 2^N ns of the executing vCPU's own clock, and an idle machine
// jumps to its next deadline. Each vCPU has its own clock; what the VM sees as "now" is the clock
// of the vCPU on whose behalf it is called (an MMIO access, an MSR, a trace line), or the
// scheduler's time when it services timers between quanta. The guest TSC is derived from the same
// nanoseconds, so TSC-deadline values convert back exactly.
// Single-threaded (the deterministic scheduler); not for the parallel mode's concurrent readers.
#pragma once

#include <cstdint>

#include "cpu/cpu.h"
#include "devices/clock.h"

namespace apicv::emu {

class VirtualClock final : public Clock {
 public:
  VirtualClock(unsigned shift, uint64_t tsc_khz) : shift_(shift), tsc_khz_(tsc_khz) {}

  uint64_t now_ns() const override {
    if (cpu_ == nullptr) return base_ns_;
    return base_ns_ + ((cpu_->retired() - base_retired_) << shift_);
  }
  uint64_t tsc() const override {
    const unsigned __int128 t = static_cast<unsigned __int128>(now_ns()) * tsc_khz_;
    return static_cast<uint64_t>(t / 1'000'000);
  }
  uint64_t tsc_khz() const override { return tsc_khz_; }

  // Time runs on `cpu`'s instructions from `ns` on (a vCPU's quantum starts).
  void follow(const cpu::Cpu* cpu, uint64_t ns) {
    cpu_ = cpu;
    base_ns_ = ns;
    base_retired_ = cpu ? cpu->retired() : 0;
  }
  // Time stands at `ns` (the scheduler between quanta).
  void set(uint64_t ns) { follow(nullptr, ns); }
  unsigned shift() const { return shift_; }

 private:
  const unsigned shift_;
  const uint64_t tsc_khz_;
  const cpu::Cpu* cpu_ = nullptr;
  uint64_t base_ns_ = 0;
  uint64_t base_retired_ = 0;
};

}  // namespace apicv::emu
