// Intel 8254 programmable interval timer constants: PC port map, control-word and read-back
// fields, and the PC/AT port 0x61 (NMI status and control) bits that touch counter 2.
// Intel 8254 datasheet (control word format, read-back command, status byte).
// Stateless: constants only.
#pragma once

#include <cstdint>

namespace apicv::x86 {

constexpr uint16_t kPitChannel0 = 0x40;
constexpr uint16_t kPitChannel1 = 0x41;
constexpr uint16_t kPitChannel2 = 0x42;
constexpr uint16_t kPitControl = 0x43;
constexpr uint16_t kPortB = 0x61;  // "NMI status and control" / speaker port

constexpr uint64_t kPitFrequencyHz = 1193182;  // 14.31818 MHz / 12, as KVM uses
constexpr unsigned kPitNumChannels = 3;

// Control word: SC1 SC0 RW1 RW0 M2 M1 M0 BCD.
constexpr unsigned kPitCwSelectShift = 6;
constexpr unsigned kPitCwAccessShift = 4;
constexpr unsigned kPitCwModeShift = 1;
constexpr uint8_t kPitCwBcd = 0x01;
constexpr uint8_t kPitSelectReadBack = 3;

// Access (RW1 RW0).
constexpr uint8_t kPitAccessLatch = 0;
constexpr uint8_t kPitAccessLsb = 1;
constexpr uint8_t kPitAccessMsb = 2;
constexpr uint8_t kPitAccessWord = 3;

// Read-back command: 1 1 /COUNT /STATUS CNT2 CNT1 CNT0 0.
constexpr uint8_t kPitReadBackNoCount = 0x20;
constexpr uint8_t kPitReadBackNoStatus = 0x10;

// Status byte: OUTPUT NULL_COUNT RW1 RW0 M2 M1 M0 BCD.
constexpr uint8_t kPitStatusOut = 0x80;
constexpr uint8_t kPitStatusNullCount = 0x40;

// Port 0x61.
constexpr uint8_t kPortBGate2 = 0x01;
constexpr uint8_t kPortBSpeakerData = 0x02;
constexpr uint8_t kPortBRefresh = 0x10;
constexpr uint8_t kPortBOut2 = 0x20;

}  // namespace apicv::x86
