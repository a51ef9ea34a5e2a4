// PC port devices: 16550 UART (NS16550A register map), fw_cfg legacy interface (QEMU
// docs/specs/fw_cfg.txt), isa-debug-exit, 0xCF9 reset control, 8042 reset, test-device lines.
#include <gtest/gtest.h>

#include <string>

#include "platform/fw_cfg.h"
#include "platform/system_ports.h"
#include "platform/uart_16550.h"

namespace apicv::platform {
namespace {

TEST(Uart16550, TransmitsAndReportsTransmitterEmpty) {
  std::string out;
  Uart16550 u([&](uint8_t b) { out.push_back(static_cast<char>(b)); });
  EXPECT_TRUE(u.Claims(0x3F8));
  EXPECT_TRUE(u.Claims(0x3FF));
  EXPECT_FALSE(u.Claims(0x400));
  EXPECT_FALSE(u.Claims(0x3F7));
  u.Write(0x3F8, 'h');
  u.Write(0x3F8, 'i');
  EXPECT_EQ(out, "hi");
  EXPECT_EQ(u.Read(0x3FD), 0x60);      // THRE | TEMT, no data ready
  EXPECT_EQ(u.Read(0x3FA) & 0x01, 1);  // IIR: no interrupt pending
}

TEST(Uart16550, DivisorLatchAndLoopbackDoNotTransmit) {
  std::string out;
  Uart16550 u([&](uint8_t b) { out.push_back(static_cast<char>(b)); });
  u.Write(0x3FB, 0x80);  // DLAB
  u.Write(0x3F8, 0x01);
  u.Write(0x3F9, 0x02);
  EXPECT_EQ(u.Read(0x3F8), 0x01);
  EXPECT_EQ(u.Read(0x3F9), 0x02);
  u.Write(0x3FB, 0x03);  // 8N1, DLAB off
  EXPECT_EQ(out, "");
  u.Write(0x3FC, 0x10);  // loopback
  u.Write(0x3F8, 'x');
  EXPECT_EQ(out, "");
  u.Write(0x3FC, 0x00);
  u.Write(0x3F8, 'y');
  EXPECT_EQ(out, "y");
}

TEST(Uart16550, RegistersMaskReservedBits) {
  Uart16550 u(nullptr);
  u.Write(0x3F9, 0xFF);
  EXPECT_EQ(u.Read(0x3F9), 0x0F);  // IER bits 7:4 reserved
  u.Write(0x3FC, 0xFF);
  EXPECT_EQ(u.Read(0x3FC), 0x1F);  // MCR bits 7:5 reserved
  u.Write(0x3FF, 0x5A);
  EXPECT_EQ(u.Read(0x3FF), 0x5A);  // scratch
  u.Write(0x3F8, 'z');             // null sink must not crash
  u.Write(0x3FD, 0x00);            // LSR is read-only
  EXPECT_EQ(u.Read(0x3FD), 0x60);
}

std::string ReadItem(FwCfg& f, uint16_t sel, int n) {
  f.Out(FwCfg::kSelectorPort, sel, 2);
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(f.In(FwCfg::kDataPort, 1)));
  return s;
}

TEST(FwCfg, SignatureCpuCountAndRamSize) {
  FwCfg f(64ull << 20, 4);
  EXPECT_EQ(ReadItem(f, 0x0000, 4), "QEMU");
  f.Out(FwCfg::kSelectorPort, 0x0005, 2);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 4u);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 0u);
  f.Out(FwCfg::kSelectorPort, 0x0003, 2);
  uint64_t ram = 0;
  for (int i = 0; i < 8; ++i) ram |= static_cast<uint64_t>(f.In(FwCfg::kDataPort, 1)) << (8 * i);
  EXPECT_EQ(ram, 64ull << 20);
}

TEST(FwCfg, UnknownItemsAndReadsPastTheEndReturnZero) {
  FwCfg f(1ull << 30, 288);
  EXPECT_EQ(ReadItem(f, 0x1234, 3), std::string(3, '\0'));
  f.Out(FwCfg::kSelectorPort, 0x0005, 2);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 288u & 0xFF);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 288u >> 8);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 0u);
  // A byte write is not a 16-bit selector write: selection unchanged (still past the end).
  f.Out(FwCfg::kSelectorPort, 0x00, 1);
  EXPECT_EQ(f.In(FwCfg::kDataPort, 1), 0u);
}

TEST(SystemPorts, DebugExitStatusIsValueShiftedOrOne) {
  EXPECT_EQ(DebugExitStatus(0), 1);
  EXPECT_EQ(DebugExitStatus(1), 3);
  EXPECT_EQ(DebugExitStatus(0x10), 0x21);
  EXPECT_EQ(DebugExitStatus(0x7F), 0xFF);
}

TEST(SystemPorts, ResetControlNeedsBitTwo) {
  ResetControl r;
  EXPECT_FALSE(r.Write(0x02));
  EXPECT_EQ(r.Read(), 0x02);
  EXPECT_TRUE(r.Write(0x06));
  EXPECT_TRUE(r.Write(0x0E));
  EXPECT_EQ(r.Read() & 0x04, 0);  // the reset bit does not stick
  EXPECT_FALSE(r.Write(0x08));
  EXPECT_TRUE(KbcCommandRequestsReset(0xFE));
  EXPECT_FALSE(KbcCommandRequestsReset(0xFF));
  EXPECT_FALSE(KbcCommandRequestsReset(0xD1));
}

TEST(SystemPorts, TestDeviceLines) {
  EXPECT_EQ(TestDevLine(0x2000), 0);
  EXPECT_EQ(TestDevLine(0x2017), 23);
  EXPECT_EQ(TestDevLine(0x2018), -1);
  EXPECT_EQ(TestDevLine(0x1FFF), -1);
}

}  // namespace
}  // namespace apicv::platform
