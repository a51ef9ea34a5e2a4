// Small fixed-function ports of a PC: isa-debug-exit (QEMU, port 0xF4: exit status
// (value << 1) | 1), the reset control register 0xCF9 (Intel PCH datasheet "Reset Control
// Register": a write with SYS_RST/RST_CPU bit 2 set resets), the 8042 keyboard controller
// (0x64 command 0xFE pulses the reset line; status reads 0 = buffers empty), and the benchmark
// sample port 0x2100 (apicv's own: a 32-bit write appends a sample), the PIT edge counter port
// 0x2104 (apicv's own: a 32-bit read gives the low 32 bits of the PIT channel 0 rising edges the
// irqchip generated, all ones when the PIT is not apicv's). Not supported: the rest of
// the 8042 (no keyboard, no A20 gate control: A20 is always enabled), 0xCF9 full/soft reset
// distinction (all resets are the same system reset).
#pragma once

#include <cstdint>

namespace apicv::platform {

inline constexpr uint16_t kDebugExitPort = 0xF4;
inline constexpr uint16_t kResetControlPort = 0xCF9;
inline constexpr uint16_t kKbcDataPort = 0x60;
inline constexpr uint16_t kKbcCommandPort = 0x64;
inline constexpr uint16_t kSamplePort = 0x2100;
inline constexpr uint16_t kPitEdgesPort = 0x2104;  // read-only, 32-bit
inline constexpr uint16_t kTestDevBase = 0x2000;
inline constexpr uint16_t kTestDevCount = 0x18;

// Exit status of the VMM for a guest write of `value` to isa-debug-exit.
inline int DebugExitStatus(uint32_t value) {
  return static_cast<int>(((value << 1) | 1) & 0xFF);
}

// 0xCF9: bit 2 requests the reset; bits 1 and 3 choose hard/full reset (all equivalent here).
class ResetControl {
 public:
  // Returns true when the write requests a system reset.
  bool Write(uint8_t value) {
    rcr_ = value & 0x0A;  // bit 2 is write-only (self-clearing), others are stored
    return (value & 0x04) != 0;
  }
  uint8_t Read() const { return rcr_; }
  void Reset() { rcr_ = 0; }

 private:
  uint8_t rcr_ = 0;
};

// Keyboard controller reset line: command 0xFE at port 0x64.
inline bool KbcCommandRequestsReset(uint8_t command) {
  return command == 0xFE;
}

// ISA IRQ line N for a test-device port, or -1.
inline int TestDevLine(uint16_t port) {
  return port >= kTestDevBase && port < kTestDevBase + kTestDevCount ? port - kTestDevBase : -1;
}

}  // namespace apicv::platform
