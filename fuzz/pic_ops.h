// Op decoder for the 8259A pair fuzzer (pic_fuzz.cc) and its replay test
// (tests/pic/hostile_replay_test.cc): guest bytes on 0x20/0x21/0xA0/0xA1/0x4D0/0x4D1 (and stray
// ports), IRQ line changes and INTA cycles, with the 8259A datasheet's invariants checked after
// every op. Not supported: nothing beyond Pic's own list.
#pragma once

#include <cstdint>
#include <string>

#include "devices/pic.h"
#include "fuzz_input.h"
#include "x86/pic_defs.h"

namespace apicv::fuzz {

inline constexpr uint16_t kPicPorts[] = {0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1};

inline void CheckPicInvariants(Pic& pic, size_t op, Verdict& v) {
  using namespace x86;
  // ELCR: IRQ 0, 1, 2, 8 and 13 are always edge (PIIX ELCR masks, as KVM).
  v.check((pic.elcr(0) & ~kPicElcrMaskMaster) == 0, op, "master ELCR reserved bits set");
  v.check((pic.elcr(1) & ~kPicElcrMaskSlave) == 0, op, "slave ELCR reserved bits set");
  uint8_t e0 = 0, e1 = 0;
  pic.pio_read(kPicElcrMaster, &e0);
  pic.pio_read(kPicElcrSlave, &e1);
  v.check(e0 == pic.elcr(0) && e1 == pic.elcr(1), op, "ELCR read-back differs");
  // ICW2 in 8086 mode supplies T7-T3 only.
  v.check((pic.irq_base(0) & 7) == 0 && (pic.irq_base(1) & 7) == 0, op, "ICW2 bits 2:0 kept");
  // INT can only be high with an unmasked request on the master.
  if (pic.output()) {
    v.check((pic.irr(0) & ~pic.imr(0)) != 0, op, "INT high without an unmasked master request");
  }
  v.check(pic.lowest_priority(0) < 8 && pic.lowest_priority(1) < 8, op, "priority out of range");
  v.check((pic.elcr(0) & (1u << kPicCascadeIrq)) == 0, op, "cascade input level-triggered");
}

inline std::string RunPicOps(const uint8_t* data, size_t size) {
  using namespace x86;
  OpReader in(data, size);
  Pic pic;
  Verdict v;
  for (size_t op = 1; !in.done() && op <= kMaxOpsPerInput && v.ok(); ++op) {
    const uint8_t kind = in.u8();
    switch (kind % 7) {
      case 0: {  // OUT
        const uint8_t s = in.u8();
        const uint16_t port = (s & 0x80) ? in.u16() : kPicPorts[s % 6];
        pic.pio_write(port, in.u8());
        break;
      }
      case 1: {  // IN
        const uint8_t s = in.u8();
        const uint16_t port = (s & 0x80) ? in.u16() : kPicPorts[s % 6];
        uint8_t val = 0;
        pic.pio_read(port, &val);
        if (!Pic::handles_port(port)) v.check(val == 0xFF, op, "unhandled port read != 0xFF");
        break;
      }
      case 2:  // an IRQ line changes (16..31 must be ignored)
        pic.set_irq(in.u8() % 32, in.flag());
        break;
      case 3: {  // INTA cycle
        const bool had_int = pic.output();
        const uint8_t base0 = pic.irq_base(0), base1 = pic.irq_base(1);
        const uint8_t vec = pic.acknowledge();
        const uint8_t hi = vec & 0xF8;
        v.check(hi == base0 || hi == base1, op, "INTA vector outside both ICW2 bases");
        if (!had_int) v.check(vec == static_cast<uint8_t>(base0 + 7), op, "spurious != IR7");
        break;
      }
      case 4: {  // a guest initialising both chips the PC way, with fuzzed words
        const uint8_t icw1 = 0x10 | (in.u8() & 0x0F);
        pic.pio_write(0x20, icw1);
        pic.pio_write(0x21, in.u8());
        pic.pio_write(0x21, in.u8());
        pic.pio_write(0x21, in.u8());
        pic.pio_write(0xA0, 0x11);
        pic.pio_write(0xA1, in.u8());
        pic.pio_write(0xA1, 0x02);
        pic.pio_write(0xA1, in.u8());
        break;
      }
      case 5: {  // a device pulses or holds a line
        const unsigned irq = in.u8() % 16;
        pic.set_irq(irq, true);
        if (in.flag()) pic.set_irq(irq, false);
        break;
      }
      default:
        pic.reset();
        v.check(!pic.output() && pic.irr(0) == 0 && pic.isr(1) == 0 && pic.elcr(0) == 0, op,
                "reset state");
        break;
    }
    CheckPicInvariants(pic, op, v);
  }
  return v.message();
}

}  // namespace apicv::fuzz
