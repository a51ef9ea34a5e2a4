// Op decoder for the 8254 fuzzer (pit_fuzz.cc) and its replay test
// (tests/pit/hostile_replay_test.cc): guest bytes on 0x40-0x43 and 0x61, gate changes, IRQ0
// acks and mask changes, and forward-moving time serviced like a host timer, with the 8254
// datasheet's invariants and the "no busy host timer" guarantee checked after every op.
// Not supported: nothing beyond Pit's own list.
#pragma once

#include <cstdint>
#include <string>

#include "devices/pit.h"
#include "fuzz_input.h"
#include "x86/pit_defs.h"

namespace apicv::fuzz {

inline constexpr uint16_t kPitPorts[] = {0x40, 0x41, 0x42, 0x43, 0x61};

inline void CheckPitOutput(const PitOutput& out, const PitConfig& cfg, const Pit& pit, size_t op,
                           Verdict& v) {
  v.check(out.irq0_pulses <= 1, op, "more than one IRQ0 pulse in one call");
  v.check(pit.pending() <= cfg.max_pending, op, "pending ticks above max_pending");
}

inline void CheckPitInvariants(Pit& pit, uint64_t now, size_t op, Verdict& v) {
  for (unsigned c = 0; c < 3; ++c) {
    v.check(pit.mode(c) <= 5, op, "mode above 5");
    (void)pit.out(c, now);
    (void)pit.count(c, now);
  }
  // Port 0x61: bit 0 gate 2, bit 5 OUT2 (datasheet OUT of counter 2), bits 7:6 read 0 here.
  const uint8_t b = pit.pio_read(0x61, now);
  v.check(((b >> 5) & 1) == static_cast<uint8_t>(pit.out(2, now)), op, "0x61 bit 5 != OUT2");
}

inline std::string RunPitOps(const uint8_t* data, size_t size) {
  OpReader in(data, size);
  const uint8_t c = in.u8();
  PitConfig cfg;
  cfg.policy = (c & 1) ? LostTickPolicy::kDiscard : LostTickPolicy::kDelay;
  if (c & 2) cfg.min_period_ns = 200000;
  if (c & 4) cfg.max_pending = 1 + (c >> 4);
  Pit pit(cfg);
  Verdict v;
  uint64_t now = 0;
  bool gate0 = true;  // channel 0's gate (tied high on a PC; fuzzed here)
  for (size_t op = 1; !in.done() && op <= kMaxOpsPerInput && v.ok(); ++op) {
    const uint8_t kind = in.u8();
    PitOutput out;
    switch (kind % 9) {
      case 0: {  // OUT
        const uint8_t s = in.u8();
        const uint16_t port = (s & 0x80) ? in.u16() : kPitPorts[s % 5];
        out = pit.pio_write(port, in.u8(), now);
        break;
      }
      case 1: {  // IN
        const uint8_t s = in.u8();
        const uint16_t port = (s & 0x80) ? in.u16() : kPitPorts[s % 5];
        (void)pit.pio_read(port, now);
        break;
      }
      case 2: {  // program a channel the usual way: control word, then LSB/MSB
        const uint8_t ch = in.u8() % 3;
        const uint8_t mode = in.u8() % 8;
        const bool bcd = in.flag();
        pit.pio_write(0x43, static_cast<uint8_t>((ch << 6) | (3 << 4) | (mode << 1) | bcd), now);
        const uint8_t lsb = in.u8(), msb = in.u8();
        pit.pio_write(static_cast<uint16_t>(0x40 + ch), lsb, now);
        out = pit.pio_write(static_cast<uint16_t>(0x40 + ch), msb, now);
        // Channel 0, binary mode 2 or 3, no clamp, gate high: the first IRQ0 edge comes N clocks
        // after the count is written (8254 datasheet; count 0 means 65536).
        if (ch == 0 && !bcd && (mode & 2) != 0 && cfg.min_period_ns == 0 && gate0) {
          const uint64_t n = (static_cast<uint64_t>(msb) << 8 | lsb) == 0
                                 ? 0x10000
                                 : (static_cast<uint64_t>(msb) << 8 | lsb);
          const uint64_t first = now + (n * 1'000'000'000ull + 1193182 - 1) / 1193182;
          v.check(pit.next_deadline_ns() == first, op, "mode 2 first IRQ0 edge misplaced");
        }
        break;
      }
      case 3: {  // time passes: the host timer fires at the deadline the PIT asked for
        const uint8_t s = in.u8();
        uint64_t delta = (s & 1) ? in.u32() : (static_cast<uint64_t>(in.u16()) << (s >> 4));
        if (s & 2) delta = in.u64() >> 2;
        now = now > UINT64_MAX / 2 - delta ? UINT64_MAX / 2 : now + delta;
        if (pit.next_deadline_ns() <= now) {
          out = pit.on_timer(now);
          CheckPitOutput(out, cfg, pit, op, v);
          v.check(pit.next_deadline_ns() > now, op,
                  "channel 0 still due after on_timer (a host timer would spin)");
        }
        break;
      }
      case 4:  // EOI of the PIT's vector
        out = pit.ack_irq();
        break;
      case 5: {
        const unsigned ch = in.u8() % 4;
        const bool level = in.flag();
        out = pit.set_gate(ch, level, now);
        if (ch == 0) gate0 = level;
        break;
      }
      case 6:
        pit.irq0_mask_changed(in.flag());
        break;
      case 7:
        pit.set_lost_tick_policy(in.flag() ? LostTickPolicy::kDiscard : LostTickPolicy::kDelay);
        break;
      default:
        pit.reset(now);
        gate0 = true;
        v.check(pit.pending() == 0, op, "pending after reset");
        break;
    }
    CheckPitOutput(out, cfg, pit, op, v);
    CheckPitInvariants(pit, now, op, v);
  }
  return v.message();
}

}  // namespace apicv::fuzz
