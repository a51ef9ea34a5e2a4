// Hostile instruction streams for apicv's software CPU (issue 12): the input's bytes become guest
// code and data, executed from a mode the first byte picks (64-bit CPL 0 or 3, 32-bit protected,
// real mode), with every IDT gate pointing at a HLT handler. Whatever the bytes, run() must
// return within its budget, never crash or touch host memory outside guest RAM (ASan), and leave
// an architecturally possible state. Used by cpu_fuzz.cc (libFuzzer) and by
// tests/cpu/hostile_replay_test.cc (fixed seeds in CI).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu.h"

namespace apicv::fuzz {

class CpuFuzzHost final : public cpu::CpuHost {
 public:
  uint32_t pio_in(uint16_t, unsigned) override { return 0xFFFFFFFF; }
  void pio_out(uint16_t, unsigned, uint32_t) override { ++accesses; }
  void mmio_read(uint64_t, void* data, unsigned len) override {
    std::memset(data, 0xFF, len);
    ++accesses;
  }
  void mmio_write(uint64_t, const void*, unsigned) override { ++accesses; }
  cpu::MsrResult rdmsr(uint32_t, uint64_t* v) override {
    *v = 0;
    return cpu::MsrResult::kGp;
  }
  cpu::MsrResult wrmsr(uint32_t, uint64_t) override { return cpu::MsrResult::kGp; }
  uint64_t read_cr8() override { return cr8; }
  void write_cr8(uint64_t v) override { cr8 = v; }
  cpu::CpuidLeaf cpuid(uint32_t, uint32_t) override { return {}; }
  uint64_t rdtsc() override { return tsc += 7; }
  uint64_t tsc_aux() override { return 0; }
  uint64_t accesses = 0, cr8 = 0, tsc = 0;
};

inline std::string RunCpuOps(const uint8_t* data, size_t size) {
  constexpr uint64_t kRam = 4ull << 20, kCode = 0x100000, kData = 0x200000, kHandler = 0x7000;
  std::vector<uint8_t> ram(kRam, 0);
  auto put64 = [&](uint64_t gpa, uint64_t v) { std::memcpy(ram.data() + gpa, &v, 8); };
  const uint8_t mode = size > 0 ? data[0] % 4 : 0;
  const uint8_t* body = size > 0 ? data + 1 : data;
  const size_t n = size > 0 ? size - 1 : 0;
  std::memcpy(ram.data() + kCode, body, n < 0x10000 ? n : 0x10000);
  std::memcpy(ram.data() + kData, body, n < 0x10000 ? n : 0x10000);
  // Identity map of the first 1 GiB (2 MiB pages, user), GDT, a 64-bit IDT of HLT gates.
  put64(0x1000, 0x2000 | 7);
  put64(0x2000, 0x3000 | 7);
  for (uint64_t i = 0; i < 512; ++i) put64(0x3000 + i * 8, (i << 21) | 0x87);
  put64(0x6000 + 0x08, 0x00AF9A000000FFFFull);
  put64(0x6000 + 0x10, 0x00CF92000000FFFFull);
  put64(0x6000 + 0x18, 0x00AFFA000000FFFFull);
  put64(0x6000 + 0x20, 0x00CFF2000000FFFFull);
  put64(0x6000 + 0x28, 0x00CF9A000000FFFFull);  // 32-bit code
  ram[kHandler] = 0xF4;                         // hlt
  for (uint64_t v = 0; v < 256; ++v) {
    const uint64_t lo = (kHandler & 0xFFFF) | (0x08ull << 16) | (0xEEull << 40);
    put64(0x8000 + v * 16, lo);
    put64(0x8000 + v * 16 + 8, 0);
  }
  cpu::GuestRam gram(ram.data(), kRam);
  CpuFuzzHost host;
  cpu::Cpu c(gram, host);
  cpu::CpuState& s = c.state();
  s.gdtr = {0x6000, 0x2F};
  s.idtr = {0x8000, 0xFFF};
  s.rip = kCode;
  s.gpr[cpu::kRsp] = 0x80000;
  for (int r = 0; r < 16; ++r) {
    if (r != cpu::kRsp) s.gpr[r] = kData + static_cast<uint64_t>(r) * 64;
  }
  if (mode <= 1) {  // 64-bit, CPL 0 or 3
    s.cr0 = 0x80050033;
    s.cr3 = 0x1000;
    s.cr4 = 0x20;
    s.efer = 0xD01;
    const bool user = mode == 1;
    s.seg[cpu::kCs] = cpu::Segment{static_cast<uint16_t>(user ? 0x1B : 0x08), 0, 0xFFFFFFFF,
                                   user ? 0xA0FBu : 0xA09Bu};
    for (uint8_t i : {cpu::kEs, cpu::kSs, cpu::kDs, cpu::kFs, cpu::kGs}) {
      s.seg[i] = cpu::Segment{static_cast<uint16_t>(user ? 0x23 : 0x10), 0, 0xFFFFFFFF,
                              user ? 0xC0F3u : 0xC093u};
    }
    s.tr = cpu::Segment{0, 0x5000, 0x67, 0x8B};
  } else if (mode == 2) {  // 32-bit protected mode, paging off
    s.cr0 = 0x11;
    s.seg[cpu::kCs] = cpu::Segment{0x28, 0, 0xFFFFFFFF, 0xC09B};
    for (uint8_t i : {cpu::kEs, cpu::kSs, cpu::kDs, cpu::kFs, cpu::kGs}) {
      s.seg[i] = cpu::Segment{0x10, 0, 0xFFFFFFFF, 0xC093};
    }
    s.idtr = {0x8000, 0x7FF};
  } else {  // real mode at 1000:0000 (linear 0x10000; the code is copied there too)
    std::memcpy(ram.data() + 0x10000, body, n < 0x10000 ? n : 0x10000);
    s.seg[cpu::kCs] = cpu::Segment{0x1000, 0x10000, 0xFFFF, 0x9B};
    s.rip = 0;
    s.idtr = {0, 0x3FF};
  }
  c.state_changed();
  constexpr uint64_t kBudget = 3000;
  uint64_t total = 0;
  for (int round = 0; round < 4; ++round) {
    const cpu::RunResult r = c.run(kBudget);
    total += r.retired;
    if (r.retired > kBudget) return "run retired " + std::to_string(r.retired) + " > budget";
    if (s.activity != cpu::Activity::kActive && s.activity != cpu::Activity::kHalted &&
        s.activity != cpu::Activity::kShutdown && s.activity != cpu::Activity::kWaitForSipi) {
      return "invalid activity state";
    }
    if ((s.efer & 0x400) && (s.seg[cpu::kCs].ar & 0x2000)) {
      if (static_cast<uint64_t>(static_cast<int64_t>(s.rip << 16) >> 16) != s.rip) {
        return "non-canonical RIP in 64-bit mode";
      }
    }
    if ((s.rflags & 2) == 0) return "RFLAGS bit 1 clear";
    if (r.reason == cpu::StopReason::kShutdown || r.reason == cpu::StopReason::kNotActive) break;
    if (r.reason == cpu::StopReason::kHlt) s.activity = cpu::Activity::kActive;  // resume past HLT
  }
  if (c.retired() != total) return "retired() disagrees with the runs' sum";
  return "";
}

}  // namespace apicv::fuzz
