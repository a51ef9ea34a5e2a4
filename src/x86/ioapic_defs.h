// I/O APIC architectural constants: MMIO window, indirect register indices and redirection-table
// entry (RTE) fields. Intel 82093AA I/O APIC datasheet 3.0 (register map), 3.2.4 (IOREDTBL).
// Stateless: constants and field helpers only. The version 0x20 EOI register (offset 0x40) is
// not described here because KVM's IOAPIC (version 0x11) has none.
#pragma once

#include <cstdint>

namespace apicv::x86 {

constexpr uint64_t kIoApicDefaultBase = 0xFEC00000ull;
constexpr uint64_t kIoApicMmioSize = 0x100;  // KVM claims a 256-byte window
constexpr uint32_t kIoApicRegSelect = 0x00;  // IOREGSEL
constexpr uint32_t kIoApicRegWindow = 0x10;  // IOWIN

// Indirect register indices (datasheet 3.1).
constexpr uint8_t kIoApicIndexId = 0x00;
constexpr uint8_t kIoApicIndexVersion = 0x01;
constexpr uint8_t kIoApicIndexArbitration = 0x02;
constexpr uint8_t kIoApicIndexRedirBase = 0x10;  // RTE n: low dword 0x10+2n, high dword 0x11+2n

constexpr unsigned kIoApicNumPins = 24;
constexpr uint8_t kIoApicVersion = 0x11;  // what KVM reports (82093AA is also 0x11)
// Version 0x20 (ICH / QEMU's userspace IOAPIC default): adds the EOI register, which a guest
// that suppresses LAPIC EOI broadcasts (directed EOI) writes with the vector to complete.
constexpr uint8_t kIoApicVersionEoiRegister = 0x20;
constexpr uint32_t kIoApicRegEoi = 0x40;

// RTE fields (datasheet 3.2.4).
constexpr uint64_t kRteVectorMask = 0xFF;
constexpr unsigned kRteDeliveryModeShift = 8;
constexpr uint64_t kRteDeliveryModeMask = 7ull << 8;
constexpr uint64_t kRteDestLogical = 1ull << 11;
constexpr uint64_t kRteDeliveryStatus = 1ull << 12;  // read-only
constexpr uint64_t kRtePolarityLow = 1ull << 13;
constexpr uint64_t kRteRemoteIrr = 1ull << 14;  // read-only
constexpr uint64_t kRteTriggerLevel = 1ull << 15;
constexpr uint64_t kRteMasked = 1ull << 16;
constexpr unsigned kRteDestShift = 56;
constexpr uint64_t kRteDestMask = 0xFFull << 56;
// Bits a guest can change: everything except delivery status, remote IRR and reserved 55:17.
constexpr uint64_t kRteWritable = kRteVectorMask | kRteDeliveryModeMask | kRteDestLogical |
                                  kRtePolarityLow | kRteTriggerLevel | kRteMasked | kRteDestMask;
constexpr uint64_t kRteResetValue = kRteMasked;

}  // namespace apicv::x86
