// The shared exit dispatch (platform/machine.h): which device serves a port / MMIO / MSR access,
// the stop requests guest writes raise (QEMU isa-debug-exit: (value << 1) | 1; Intel PCH Reset
// Control Register 0xCF9 bit 2; 8042 command 0xFE), what unclaimed accesses read, and the order
// against the IrqChip (claimed accesses never reach the system ports).
#include "platform/machine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "virt/vm.h"
#include "virt/vm_config.h"

namespace apicv::platform {
namespace {

constexpr uint64_t kRam = 64ull << 20;

// Claims port 0x3F8 (the UART's) and MSR 0x1234, refuses MSR 0x4321 with #GP; nothing else.
class ClaimingChip final : public virt::IrqChip {
 public:
  int port_outs = 0;
  virt::AccessResult mmio_read(int, uint64_t gpa, void* data, unsigned len) override {
    if (gpa != 0xFEC00000) return virt::AccessResult::kNotMine;
    std::memset(data, 0x5A, len);
    return virt::AccessResult::kHandled;
  }
  virt::AccessResult mmio_write(int, uint64_t gpa, const void*, unsigned) override {
    return gpa == 0xFEC00000 ? virt::AccessResult::kHandled : virt::AccessResult::kNotMine;
  }
  virt::AccessResult pio_in(int, uint16_t port, void* data, unsigned len) override {
    if (port != 0x3F8) return virt::AccessResult::kNotMine;
    std::memset(data, 0x77, len);
    return virt::AccessResult::kHandled;
  }
  virt::AccessResult pio_out(int, uint16_t port, const void*, unsigned) override {
    if (port != 0x3F8) return virt::AccessResult::kNotMine;
    ++port_outs;
    return virt::AccessResult::kHandled;
  }
  virt::AccessResult rdmsr(int, uint32_t msr, uint64_t* value) override {
    if (msr == 0x1234) {
      *value = 0xABCD;
      return virt::AccessResult::kHandled;
    }
    return msr == 0x4321 ? virt::AccessResult::kGp : virt::AccessResult::kNotMine;
  }
  virt::AccessResult wrmsr(int, uint32_t msr, uint64_t) override {
    if (msr == 0x1234) return virt::AccessResult::kHandled;
    return msr == 0x4321 ? virt::AccessResult::kGp : virt::AccessResult::kNotMine;
  }
  void set_cr8(int, uint64_t) override {}
  uint64_t get_cr8(int) override { return 0; }
  virt::Injection check_and_inject_events(int, bool, bool) override { return {}; }
  void interrupt_window_exit(int) override {}
  void vcpu_enter(int) override {}
  void vcpu_exit(int) override {}
  bool has_events(int, bool) override { return false; }
  uint64_t next_deadline_ns(int) override { return UINT64_MAX; }
  void run_timers(int) override {}
  uint64_t next_deadline_ns() override { return UINT64_MAX; }
  uint64_t service_timers(uint64_t) override { return UINT64_MAX; }
  virt::MpEvent take_mp_event(int) override { return {}; }
  void instruction_emulated(int) override {}
  uint64_t pit_irq0_edges() override { return edges; }
  void reset() override {}
  void set_kick(std::function<void(int)>) override {}
  uint64_t edges = UINT64_MAX;
};

StopRequest Out8(Machine& m, uint16_t port, uint8_t v) {
  return m.PioOut(0, port, &v, 1);
}
uint32_t In(Machine& m, uint16_t port, unsigned size) {
  uint8_t buf[4] = {0, 0, 0, 0};
  m.PioIn(0, port, buf, size);
  uint32_t v = 0;
  std::memcpy(&v, buf, 4);
  return v;
}

TEST(MachinePorts, DebugExitStopsWithShiftedStatus) {
  Machine m(kRam, 1, nullptr, nullptr);
  StopRequest s = Out8(m, kDebugExitPort, 0);
  EXPECT_EQ(s.kind, StopKind::kDebugExit);
  EXPECT_EQ(s.code, 1);
  s = Out8(m, kDebugExitPort, 0x10);
  EXPECT_EQ(s.kind, StopKind::kDebugExit);
  EXPECT_EQ(s.code, 0x21);
  // A 32-bit write: the status is the low byte of (value << 1) | 1, as a process exit status.
  const uint32_t v = 0x180;
  s = m.PioOut(0, kDebugExitPort, reinterpret_cast<const uint8_t*>(&v), 4);
  EXPECT_EQ(s.code, 0x01);
}

TEST(MachinePorts, ResetControlBit2AndKbcPulseReset) {
  Machine m(kRam, 1, nullptr, nullptr);
  EXPECT_FALSE(Out8(m, kResetControlPort, 0x02));  // hard-reset select only: no reset yet
  EXPECT_EQ(In(m, kResetControlPort, 1), 0x02u);
  const StopRequest s = Out8(m, kResetControlPort, 0x06);
  EXPECT_EQ(s.kind, StopKind::kReset);
  EXPECT_EQ(s.code, 0);
  // 16-bit writes to 0xCF9 are not the reset register's width: unknown, no reset.
  const uint16_t w = 0x06;
  EXPECT_FALSE(m.PioOut(0, kResetControlPort, reinterpret_cast<const uint8_t*>(&w), 2));
  EXPECT_FALSE(Out8(m, kKbcCommandPort, 0xFD));
  EXPECT_EQ(Out8(m, kKbcCommandPort, 0xFE).kind, StopKind::kReset);
  EXPECT_EQ(In(m, kKbcCommandPort, 1), 0u);  // status: buffers empty
  m.Reset();
  EXPECT_EQ(In(m, kResetControlPort, 1), 0u);
}

TEST(MachinePorts, UnknownPortsReadAllOnesByWidthAndAreLoggedOnce) {
  Machine m(kRam, 1, nullptr, nullptr);
  EXPECT_EQ(In(m, 0x80, 1), 0xFFu);
  EXPECT_EQ(In(m, 0x80, 2), 0xFFFFu);
  EXPECT_EQ(In(m, 0x80, 4), 0xFFFFFFFFu);
  EXPECT_EQ(m.unknown_logged(), 1u);
  EXPECT_FALSE(Out8(m, 0x80, 1));
  EXPECT_EQ(m.unknown_logged(), 1u);  // one entry per unknown port, read or written
  EXPECT_FALSE(Out8(m, 0x81, 1));
  EXPECT_EQ(m.unknown_logged(), 2u);
  // Hostile guests cannot grow the log without bound.
  for (uint16_t p = 0x100; p < 0x300; ++p) In(m, p, 1);
  EXPECT_EQ(m.unknown_logged(), 64u);
}

TEST(MachinePorts, UartFwCfgAndSamplesWithoutIrqChip) {
  std::string out;
  Machine m(
      kRam, 3, [&](uint8_t b) { out.push_back(static_cast<char>(b)); }, nullptr);
  Out8(m, 0x3F8, 'o');
  Out8(m, 0x3F8, 'k');
  EXPECT_EQ(out, "ok");
  EXPECT_EQ(In(m, 0x3FD, 1) & 0x60u, 0x60u);  // THRE|TEMT
  const uint16_t sel = FwCfg::kNbCpus;
  m.PioOut(0, FwCfg::kSelectorPort, reinterpret_cast<const uint8_t*>(&sel), 2);
  EXPECT_EQ(In(m, FwCfg::kDataPort, 2), 3u);
  const uint32_t sample = 0xCAFEF00D;
  m.PioOut(0, kSamplePort, reinterpret_cast<const uint8_t*>(&sample), 4);
  m.PioOut(0, kSamplePort, reinterpret_cast<const uint8_t*>(&sample), 2);  // not 32-bit: ignored
  EXPECT_EQ(m.TakeSamples(), std::vector<uint32_t>{0xCAFEF00D});
  EXPECT_TRUE(m.TakeSamples().empty());
}

TEST(MachinePorts, RepOutsServesEveryAccessAndReportsTheFirstStop) {
  std::string out;
  Machine m(
      kRam, 1, [&](uint8_t b) { out.push_back(static_cast<char>(b)); }, nullptr);
  uint8_t data[3] = {'a', 'b', 'c'};
  EXPECT_FALSE(m.Pio(0, true, 0x3F8, data, 1, 3));
  EXPECT_EQ(out, "abc");
  uint8_t codes[2] = {2, 5};
  const StopRequest s = m.Pio(0, true, kDebugExitPort, codes, 1, 2);
  EXPECT_EQ(s.code, 5);
  uint8_t in[4] = {0, 0, 0, 0};
  m.Pio(0, false, 0x80, in, 2, 2);
  EXPECT_EQ(in[0] & in[1] & in[2] & in[3], 0xFF);
}

TEST(MachinePorts, TestDevicePortsGoToTheIrqLineOnlyWithoutIrqChip) {
  std::vector<std::pair<uint32_t, bool>> lines;
  Machine m(kRam, 1, nullptr, nullptr);
  Out8(m, kTestDevBase + 4, 1);
  EXPECT_EQ(m.unknown_logged(), 1u);  // no handler: logged
  m.set_irq_line_handler([&](uint32_t l, bool level) { lines.emplace_back(l, level); });
  Out8(m, kTestDevBase + 4, 1);
  Out8(m, kTestDevBase + 4, 0);
  Out8(m, kTestDevBase + 0x17, 2);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], std::make_pair(4u, true));
  EXPECT_EQ(lines[1], std::make_pair(4u, false));
  EXPECT_EQ(lines[2], std::make_pair(0x17u, true));
  EXPECT_EQ(In(m, kTestDevBase + 4, 1), 0u);

  ClaimingChip chip;
  Machine with_chip(kRam, 1, nullptr, &chip);
  with_chip.set_irq_line_handler([&](uint32_t l, bool level) { lines.emplace_back(l, level); });
  Out8(with_chip, kTestDevBase + 4, 1);
  EXPECT_EQ(lines.size(), 3u);  // the IrqChip owns the test device when there is one
}

TEST(MachinePorts, IrqChipClaimsBeforeTheSystemPorts) {
  std::string out;
  ClaimingChip chip;
  Machine m(
      kRam, 1, [&](uint8_t b) { out.push_back(static_cast<char>(b)); }, &chip);
  Out8(m, 0x3F8, 'x');
  EXPECT_EQ(chip.port_outs, 1);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(In(m, 0x3F8, 1), 0x77u);
  Out8(m, 0x3F9, 0x0F);  // not claimed: the UART's IER
  EXPECT_EQ(In(m, 0x3F9, 1), 0x0Fu);
}

TEST(MachineMmio, UnclaimedReadsAllOnesAndWidthIsClampedTo8) {
  ClaimingChip chip;
  Machine m(kRam, 1, nullptr, &chip);
  uint8_t buf[16];
  std::memset(buf, 0, sizeof buf);
  m.MmioRead(0, 0xFED00000, buf, 16);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(buf[i], 0xFF) << i;
  for (int i = 8; i < 16; ++i) EXPECT_EQ(buf[i], 0) << i;
  m.MmioRead(0, 0xFEC00000, buf, 4);
  EXPECT_EQ(buf[0], 0x5A);
  EXPECT_EQ(buf[3], 0x5A);
  const size_t logged = m.unknown_logged();
  m.MmioWrite(0, 0xFEC00000, buf, 4);
  EXPECT_EQ(m.unknown_logged(), logged);
  m.MmioWrite(0, 0xFED00040, buf, 4);
  EXPECT_EQ(m.unknown_logged(), logged + 1);
}

TEST(MachineMsr, IrqChipResultThenMissPolicy) {
  ClaimingChip chip;
  Machine m(kRam, 1, nullptr, &chip);
  uint64_t v = 7;
  EXPECT_TRUE(m.Rdmsr(0, 0x1234, &v, MsrMiss::kGp));
  EXPECT_EQ(v, 0xABCDu);
  v = 7;
  EXPECT_FALSE(m.Rdmsr(0, 0x4321, &v, MsrMiss::kReadZero));  // the IrqChip's #GP wins
  EXPECT_EQ(v, 7u);
  EXPECT_FALSE(m.Rdmsr(0, 0x999, &v, MsrMiss::kGp));
  EXPECT_EQ(v, 7u);
  EXPECT_TRUE(m.Rdmsr(0, 0x999, &v, MsrMiss::kReadZero));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(m.Wrmsr(0, 0x1234, 1, MsrMiss::kGp));
  EXPECT_FALSE(m.Wrmsr(0, 0x4321, 1, MsrMiss::kReadZero));
  EXPECT_FALSE(m.Wrmsr(0, 0x999, 1, MsrMiss::kGp));
  EXPECT_TRUE(m.Wrmsr(0, 0x999, 1, MsrMiss::kReadZero));
  Machine none(kRam, 1, nullptr, nullptr);
  EXPECT_FALSE(none.Rdmsr(0, 0x1B, &v, MsrMiss::kGp));
}

// With apicv's own IrqChip: the LAPIC page and x2APIC MSRs are served, the rest is not.
TEST(MachineWithApicvVm, LapicMmioAndX2ApicMsrsReachTheVm) {
  FakeClock clock(1'000'000'000);
  virt::VmConfig cfg;
  cfg.nr_vcpus = 2;
  std::unique_ptr<virt::IrqChip> chip = virt::CreateApicvIrqChip(cfg, clock, nullptr);
  Machine m(kRam, 2, nullptr, chip.get());
  uint8_t buf[4];
  m.MmioRead(1, 0xFEE00020, buf, 4);  // APIC ID register: vCPU 1's ID in bits 31:24 (SDM 11.4.6)
  uint32_t id = 0;
  std::memcpy(&id, buf, 4);
  EXPECT_EQ(id >> 24, 1u);
  m.MmioRead(0, 0xFEE00030, buf, 4);  // version register: not all ones
  uint32_t ver = 0;
  std::memcpy(&ver, buf, 4);
  EXPECT_NE(ver, 0xFFFFFFFFu);
  EXPECT_EQ(m.unknown_logged(), 0u);
  // IA32_APIC_BASE is the LAPIC's; x2APIC ID MSR 0x802 faults while in xAPIC mode (SDM 11.12.1.2).
  uint64_t v = 0;
  EXPECT_TRUE(m.Rdmsr(0, 0x1B, &v, MsrMiss::kGp));
  EXPECT_EQ(v & 0xFFFFF000u, 0xFEE00000u);
  EXPECT_FALSE(m.Rdmsr(0, 0x802, &v, MsrMiss::kReadZero));
}

// Port 0x2104: the irqchip's PIT edge count, 32-bit reads only; read-only; all ones when the
// irqchip does not own the PIT (or there is none).
TEST(MachinePorts, PitEdgeCounterReadsTheIrqChipsCount) {
  Machine bare(kRam, 1, nullptr, nullptr);
  EXPECT_EQ(In(bare, kPitEdgesPort, 4), 0xFFFFFFFFu);
  ClaimingChip chip;
  Machine m(kRam, 1, nullptr, &chip);
  EXPECT_EQ(In(m, kPitEdgesPort, 4), 0xFFFFFFFFu);  // the default: not apicv's PIT
  chip.edges = 0x1'0000'0007ull;                    // low 32 bits
  EXPECT_EQ(In(m, kPitEdgesPort, 4), 7u);
  EXPECT_EQ(In(m, kPitEdgesPort, 1), 0xFFu);  // not the register's width: unknown port
  const uint32_t v = 0;
  EXPECT_FALSE(m.PioOut(0, kPitEdgesPort, reinterpret_cast<const uint8_t*>(&v), 4));
  EXPECT_EQ(In(m, kPitEdgesPort, 4), 7u);
}

}  // namespace
}  // namespace apicv::platform
