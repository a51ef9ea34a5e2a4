// Differential test (tests/cpu/cpu_differential_test.cc): the address layout shared by the native
// child and the interpreter, and the records they produce. Both run the same bytes at the same
// *virtual* addresses, so RIP values, RSP values and memory addresses compare directly.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace apicv::cpu::difftest {

// User-visible layout (both sides): one code page, two scratch pages (data, then the stack), and
// an unmapped guard page after them (the #PF probes aim at it). All inside the first GiB, where
// mmap(MAP_FIXED_NOREPLACE) in the child finds free address space.
inline constexpr uint64_t kCodeVa = 0x10000000;
inline constexpr uint64_t kCodeSize = 0x1000;
inline constexpr uint64_t kScratchVa = 0x10010000;
inline constexpr uint64_t kScratchSize = 0x2000;
inline constexpr uint64_t kGuardVa = kScratchVa + kScratchSize;
inline constexpr uint64_t kStackInit = kScratchVa + 0x1800;
// Room after the sequence for the end marker: the native side jumps back to its trampoline
// (FF 25 00000000 + 8-byte address = 14 bytes, or a 7-byte far JMP from compatibility mode),
// the interpreter side executes INT3.
inline constexpr uint64_t kMaxSeqBytes = 0xE00;
// Native compatibility-mode runs: 64-bit stubs at the end of the code page that far-jump into
// the 32-bit sequence (CS = kLinuxUser32Cs) and back to 64-bit code (CS = kLinuxUserCs).
inline constexpr uint64_t kEnter32Off = 0xF00, kLeave32Off = 0xF40;
inline constexpr uint16_t kLinuxUserCs = 0x33, kLinuxUser32Cs = 0x23, kLinuxUserDs = 0x2B;

// One generated sequence.
struct Sequence {
  uint64_t seed = 0;
  std::vector<uint8_t> code;
  std::vector<uint32_t> offs;  // offset of each instruction; offs.size() instructions
  // 1 for an instruction a taken forward branch jumps over (not counted as executed).
  std::vector<uint8_t> maybe_skipped;
  // Before instruction i (index offs.size() = after the last one): RFLAGS bits and GPRs
  // (bit n = GPR n) whose value the SDM leaves undefined at that point; they are masked in the
  // comparison. Filled by the generator from per-instruction rules (diff_gen.h).
  std::vector<uint32_t> undef_flags;
  std::vector<uint16_t> undef_gprs;
  std::array<uint64_t, 16> gpr{};
  uint64_t rflags = 0x202;
  std::vector<uint8_t> scratch;  // initial contents of [kScratchVa, kScratchVa + kScratchSize)
  // A REP string instruction retires once per iteration (docs/cpu.md), so the instruction count
  // of such a sequence is not known before it runs.
  bool has_rep = false;
  // 32-bit code in compatibility mode (else 64-bit mode).
  bool compat32 = false;
  // JMP +0 inserted before a CMPXCHG8B for the qemu-i386 oracle (diff_gen.h, cmpxchg_wide).
  unsigned qemu_tb_breaks = 0;
};

// How a sequence ended.
struct Outcome {
  bool faulted = false;
  uint8_t vector = 0;  // exception vector when faulted
  uint64_t error = 0;  // error code (#GP / #PF), 0 otherwise
  uint64_t cr2 = 0;    // #PF linear address
  uint64_t rip = 0;    // RIP of the faulting instruction, or the end of the sequence
  std::array<uint64_t, 16> gpr{};
  uint64_t rflags = 0;
  std::array<uint8_t, kScratchSize> scratch{};
};

}  // namespace apicv::cpu::difftest
