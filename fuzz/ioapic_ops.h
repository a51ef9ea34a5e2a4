// Op decoder for the I/O APIC fuzzer (ioapic_fuzz.cc) and its replay test
// (tests/ioapic/hostile_replay_test.cc): guest IOREGSEL/IOWIN accesses at any offset and size,
// input pin changes, EOI broadcasts and forward-moving time, with the 82093AA datasheet's
// invariants (3.2.1-3.2.4) checked after every op. Not supported: nothing beyond IoApic's own
// list.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>

#include "devices/ioapic.h"
#include "fuzz_input.h"
#include "x86/ioapic_defs.h"

namespace apicv::fuzz {

inline void CheckIoApicInvariants(IoApic& io, size_t op, Verdict& v) {
  using namespace x86;
  // Version register (index 1): maximum redirection entry 23, version 0x11 (datasheet 3.2.2).
  const uint8_t sel = io.ioregsel();
  uint32_t val = 0;
  uint32_t idx = kIoApicIndexVersion;
  io.mmio_write(kIoApicRegSelect, &idx, 4, 0);
  io.mmio_read(kIoApicRegWindow, &val, 4, 0);
  if (val != 0x00170011u) v.fail(op, "version register changed: " + std::to_string(val));
  idx = kIoApicIndexId;
  io.mmio_write(kIoApicRegSelect, &idx, 4, 0);
  io.mmio_read(kIoApicRegWindow, &val, 4, 0);
  v.check((val & ~0x0F000000u) == 0, op, "ID register reserved bits set");
  idx = sel;
  io.mmio_write(kIoApicRegSelect, &idx, 4, 0);  // restore the guest's selection
  v.check(io.ioregsel() == sel, op, "IOREGSEL not restored");

  v.check((io.irr() >> kIoApicNumPins) == 0, op, "IRR beyond pin 23");
  for (unsigned pin = 0; pin < kIoApicNumPins; ++pin) {
    const uint64_t e = io.rte(pin);
    if ((e & ~(kRteWritable | kRteRemoteIrr | kRteDeliveryStatus)) != 0) {
      v.fail(op, "RTE reserved bits set on pin " + std::to_string(pin));
    }
    v.check((e & kRteDeliveryStatus) == 0, op, "delivery status set");
    if (e & kRteRemoteIrr) {
      v.check(e & kRteTriggerLevel, op, "remote IRR on an edge-triggered pin");
    }
  }
  v.check(io.rte(kIoApicNumPins) == 0, op, "RTE beyond the last pin");
}

inline void CheckIoApicOutput(const IoApic& io, const IoApicOutput& out, size_t op, Verdict& v) {
  using namespace x86;
  v.check(out.num_deliveries <= kIoApicNumPins, op, "too many deliveries");
  uint32_t seen = 0;
  for (unsigned i = 0; i < out.num_deliveries && i < kIoApicNumPins; ++i) {
    const IoApicDelivery& d = out.deliveries[i];
    if (!v.check(d.pin < kIoApicNumPins, op, "delivery from a bogus pin")) return;
    v.check(!(seen & (1u << d.pin)), op, "two deliveries from one pin in one call");
    seen |= 1u << d.pin;
    const uint64_t e = io.rte(d.pin);
    v.check(d.irq.vector == (e & kRteVectorMask), op, "delivered vector != RTE vector");
    v.check(!(e & kRteMasked), op, "delivery from a masked pin");
    if (e & kRteTriggerLevel) v.check(e & kRteRemoteIrr, op, "level delivery without remote IRR");
  }
  v.check((out.acked_pins >> kIoApicNumPins) == 0, op, "acked pin beyond 23");
  v.check((out.mask_changed_pins >> kIoApicNumPins) == 0, op, "mask change beyond pin 23");
}

inline std::string RunIoApicOps(const uint8_t* data, size_t size) {
  using namespace x86;
  OpReader in(data, size);
  const uint8_t c = in.u8();
  IoApicConfig cfg;
  cfg.honor_polarity = c & 1;
  if (c & 2) cfg.storm_threshold = 1 + (c >> 4);  // reach the storm guard quickly
  if (c & 4) cfg.storm_delay_ns = (c & 8) ? UINT64_MAX : 0;
  IoApic io(cfg);
  Verdict v;
  uint64_t now = 0;
  uint32_t pin_levels = 0;  // electrical levels the harness drove
  for (size_t op = 1; !in.done() && op <= kMaxOpsPerInput && v.ok(); ++op) {
    const uint8_t kind = in.u8();
    IoApicOutput out;
    switch (kind % 8) {
      case 0: {  // MMIO write, any offset and size
        const uint8_t s = in.u8();
        const uint32_t off = (s & 1) ? in.u8() : ((s & 2) ? kIoApicRegWindow : kIoApicRegSelect);
        const unsigned len = (s & 4) ? in.u8() % 10 : 4;
        const uint64_t val = in.u64();
        out = io.mmio_write(off, &val, len, now);
        break;
      }
      case 1: {  // MMIO read
        const uint8_t s = in.u8();
        const uint32_t off = (s & 1) ? in.u16() : ((s & 2) ? kIoApicRegWindow : kIoApicRegSelect);
        const unsigned len = (s & 4) ? in.u8() % 10 : 4;
        uint8_t buf[16] = {};
        out = io.mmio_read(off, buf, len, now);
        for (unsigned i = len; i < sizeof(buf); ++i) {
          v.check(buf[i] == 0, op, "MMIO read wrote past len");
        }
        break;
      }
      case 2: {  // program one RTE dword the way an OS does: IOREGSEL then IOWIN
        const uint8_t s = in.u8();
        uint32_t idx = kIoApicIndexRedirBase + (s % 50);
        const uint32_t val = in.u32();
        io.mmio_write(kIoApicRegSelect, &idx, 4, now);
        out = io.mmio_write(kIoApicRegWindow, &val, 4, now);
        if (idx < kIoApicIndexRedirBase + 2 * kIoApicNumPins) {
          uint32_t back = 0;
          io.mmio_read(kIoApicRegWindow, &back, 4, now);
          const unsigned pin = (idx - kIoApicIndexRedirBase) / 2;
          const uint64_t e = io.rte(pin);
          v.check(back == ((idx & 1) ? static_cast<uint32_t>(e >> 32) : static_cast<uint32_t>(e)),
                  op, "IOWIN read does not match the RTE");
        }
        break;
      }
      case 3: {  // an input pin changes (pins >= 24 must be ignored)
        const unsigned pin = in.u8() % 32;
        const bool level = in.flag();
        const uint64_t e = io.rte(pin);
        const bool was_high = pin < kIoApicNumPins && (pin_levels & (1u << pin));
        const bool low_active = cfg.honor_polarity && (e & kRtePolarityLow);
        out = io.set_irq(pin, level, now);
        if (pin < kIoApicNumPins) {
          pin_levels = level ? (pin_levels | (1u << pin)) : (pin_levels & ~(1u << pin));
        }
        // Datasheet 3.2.4: an unmasked edge pin sends a message on its asserting edge; an
        // unmasked level pin with remote IRR clear sends one when asserted.
        bool must_deliver = false;
        if (pin < kIoApicNumPins && !low_active && level && !(e & kRteMasked)) {
          must_deliver = (e & kRteTriggerLevel) ? !(e & kRteRemoteIrr) : !was_high;
        }
        if (must_deliver) {
          bool found = false;
          for (unsigned k = 0; k < out.num_deliveries; ++k) found |= out.deliveries[k].pin == pin;
          v.check(found, op, "asserted unmasked pin sent no message");
        }
        if (pin >= kIoApicNumPins) v.check(out.num_deliveries == 0, op, "pin >= 24 delivered");
        break;
      }
      case 4: {  // EOI broadcast, mostly for a vector some RTE uses
        const uint8_t s = in.u8();
        const uint8_t vec =
            (s & 1) ? in.u8()
                    : static_cast<uint8_t>(io.rte((s >> 1) % kIoApicNumPins) & kRteVectorMask);
        out = io.eoi(vec, s & 0x80, now);
        break;
      }
      case 5: {  // time passes; service the storm guard when due
        const uint8_t s = in.u8();
        const uint64_t delta = (s & 1) ? in.u64() >> 2 : in.u32();
        now = now > UINT64_MAX / 2 - delta ? UINT64_MAX / 2 : now + delta;
        if (io.next_deadline_ns() <= now) {
          out = io.poll(now);
          v.check(io.next_deadline_ns() > now, op, "storm deferral still due after poll");
        }
        break;
      }
      case 6:
        io.reset();
        pin_levels = 0;
        v.check(io.irr() == 0 && io.ioregsel() == 0 && io.id() == 0, op, "reset state");
        for (unsigned pin = 0; pin < kIoApicNumPins; ++pin) {
          v.check(io.rte(pin) == kRteMasked, op, "RTE not masked after reset");
        }
        break;
      default: {
        std::bitset<256> handled;
        const uint8_t flip = in.u8();
        io.handled_vectors(handled, in.u32(),
                           [&](const InterruptRequest& r) { return (r.vector ^ flip) & 1; });
        break;
      }
    }
    CheckIoApicOutput(io, out, op, v);
    CheckIoApicInvariants(io, op, v);
  }
  return v.message();
}

}  // namespace apicv::fuzz
