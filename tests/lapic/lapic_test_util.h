// Small helpers shared by the LAPIC tests: 32-bit MMIO access and x2APIC enabling.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "devices/lapic.h"

namespace apicv::lapic_test {

inline LapicOutput Write(Lapic& apic, uint32_t offset, uint32_t value, uint64_t now = 0) {
  uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                  static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
  return apic.mmio_write(offset, b, 4, now);
}

inline uint32_t Read(Lapic& apic, uint32_t offset, uint64_t now = 0) {
  uint8_t b[4] = {0xAA, 0xAA, 0xAA, 0xAA};
  apic.mmio_read(offset, b, 4, now);
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
         static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
}

// Software-enable the APIC with spurious vector 0xFF.
inline void SwEnable(Lapic& apic) {
  Write(apic, x86::kApicSpiv, 0x1FF);
}

// xAPIC -> x2APIC as a guest does it (EN already set, then EXTD).
inline void EnterX2Apic(Lapic& apic) {
  const MsrAccess r =
      apic.set_apic_base(x86::kApicDefaultBase | x86::kApicBaseEnable | x86::kApicBaseExtd |
                             (apic.get_apic_base() & x86::kApicBaseBsp),
                         /*host_initiated=*/false);
  ASSERT_FALSE(r.gp);
  ASSERT_EQ(apic.mode(), ApicMode::kX2Apic);
}

inline x86::InterruptRequest Fixed(uint8_t vector, bool level_trigger = false) {
  x86::InterruptRequest r;
  r.vector = vector;
  r.delivery_mode = x86::DeliveryMode::kFixed;
  r.trigger_level = level_trigger;
  r.level = true;
  return r;
}

}  // namespace apicv::lapic_test
