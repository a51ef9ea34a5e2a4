// 8259A programmable interrupt controller constants: PC/AT port map and command-word bits.
// Intel 8259A datasheet (ICW1-4, OCW1-3); PIIX/ICH datasheets for the ELCR ports 0x4D0/0x4D1.
// Stateless: constants only.
#pragma once

#include <cstdint>

namespace apicv::x86 {

constexpr uint16_t kPicMasterCmd = 0x20;
constexpr uint16_t kPicMasterData = 0x21;
constexpr uint16_t kPicSlaveCmd = 0xA0;
constexpr uint16_t kPicSlaveData = 0xA1;
constexpr uint16_t kPicElcrMaster = 0x4D0;
constexpr uint16_t kPicElcrSlave = 0x4D1;

// IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge on a PC; KVM enforces it with these.
constexpr uint8_t kPicElcrMaskMaster = 0xF8;
constexpr uint8_t kPicElcrMaskSlave = 0xDE;

constexpr unsigned kPicCascadeIrq = 2;  // the slave's INT drives master IR2
constexpr unsigned kPicNumIrqs = 16;

// ICW1 (written to the command port with bit 4 set).
constexpr uint8_t kIcw1Init = 0x10;
constexpr uint8_t kIcw1Ltim = 0x08;  // level-triggered mode
constexpr uint8_t kIcw1Sngl = 0x02;  // single (no ICW3)
constexpr uint8_t kIcw1Ic4 = 0x01;   // ICW4 follows
// ICW4.
constexpr uint8_t kIcw4Sfnm = 0x10;  // special fully nested mode
constexpr uint8_t kIcw4Aeoi = 0x02;
constexpr uint8_t kIcw4Upm = 0x01;  // 8086/8088 mode
// OCW3 (command port, bit 4 clear, bit 3 set).
constexpr uint8_t kOcw3Select = 0x08;
constexpr uint8_t kOcw3Esmm = 0x40;
constexpr uint8_t kOcw3Smm = 0x20;
constexpr uint8_t kOcw3Poll = 0x04;
constexpr uint8_t kOcw3Rr = 0x02;
constexpr uint8_t kOcw3Ris = 0x01;

}  // namespace apicv::x86
