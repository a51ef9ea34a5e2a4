// Differential test: runs a sequence in apicv's interpreter at CPL 3 in 64-bit mode,
// compatibility mode or legacy 32-bit protected mode, at the same virtual addresses as the
// reference child (diff_layout.h).
//
// Guest physical memory (4 MiB):
//   0x1000 PML4, 0x2000 PDPT, 0x3000 PD, 0x4000 PT (4-level paging, SDM vol. 3A 4.5)
//   0x10000 GDT, 0x11000 IDT (32 interrupt gates), 0x12000 64-bit TSS (RSP0, I/O map base past
//   the limit: IN/OUT at CPL 3 with IOPL 0 raise #GP), 0x13000 + 16 * v: the handler of vector v
//   (HLT), kernel stack below 0x1F000. Virtual 0-2 MiB maps them 1:1, supervisor-only (2 MiB page).
//   0x200000 code page, 0x201000-0x202FFF scratch: mapped user-writable at kCodeVa and kScratchVa;
//   kGuardVa is not present.
// The state is set directly: CR0 = PE|MP|ET|NE|WP|PG, CR4 = PAE, EFER = LME|LMA|NXE, CS = 0x33
// (64-bit code, DPL 3) or 0x23 (32-bit code: compatibility mode), SS/DS/ES/FS/GS = 0x2B (data,
// DPL 3), as Linux runs user code.
// Legacy 32-bit protected mode (Mode::kLegacy32, the mode qemu-i386 runs i386 code in): EFER =
// NXE only (IA-32e off), PAE paging from the PDPT at 0x5000 (its entry 0 is the same page
// directory, so the same mappings), the 32-bit IDT at 0x11800 (interrupt gates to the same HLT
// handlers through the 32-bit kernel code segment 0x50) and the busy 32-bit TSS 0x58 at 0x12800
// (ESP0/SS0 = the kernel stack / 0x10); the exception frame is 32-bit (SDM vol. 3A 6.12.1).
// The guest copy of a sequence ends with INT3 (gate DPL 3): the end is vector 3 with the return
// RIP just past it; any other vector is a fault of the sequence. Either way the handler's HLT
// stops run(), and the user state is read back from the exception frame (SDM vol. 3A 6.14.2).
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "cpu/cpu.h"
#include "diff_layout.h"

namespace apicv::cpu::difftest {

// No I/O, MMIO, MSR, CR8, CPUID or RDTSC is expected at CPL 3 here: each one is recorded as an
// error of the interpreter.
class NoIoHost : public CpuHost {
 public:
  std::string errors;
  uint32_t pio_in(uint16_t port, unsigned) override {
    note("pio_in " + std::to_string(port));
    return ~0u;
  }
  void pio_out(uint16_t port, unsigned, uint32_t) override {
    note("pio_out " + std::to_string(port));
  }
  void mmio_read(uint64_t gpa, void* data, unsigned len) override {
    note("mmio_read " + std::to_string(gpa));
    std::memset(data, 0xFF, len);
  }
  void mmio_write(uint64_t gpa, const void*, unsigned) override {
    note("mmio_write " + std::to_string(gpa));
  }
  MsrResult rdmsr(uint32_t msr, uint64_t* v) override {
    note("rdmsr " + std::to_string(msr));
    *v = 0;
    return MsrResult::kGp;
  }
  MsrResult wrmsr(uint32_t msr, uint64_t) override {
    note("wrmsr " + std::to_string(msr));
    return MsrResult::kGp;
  }
  uint64_t read_cr8() override {
    note("read_cr8");
    return 0;
  }
  void write_cr8(uint64_t) override { note("write_cr8"); }
  CpuidLeaf cpuid(uint32_t leaf, uint32_t) override {
    note("cpuid " + std::to_string(leaf));
    return {};
  }
  uint64_t rdtsc() override {
    note("rdtsc");
    return 0;
  }
  uint64_t tsc_aux() override {
    note("tsc_aux");
    return 0;
  }

 private:
  void note(const std::string& s) {
    if (errors.size() < 200) errors += "unexpected host call: " + s + "; ";
  }
};

class GuestRunner {
 public:
  // The mode the sequence runs in: 64-bit, or 32-bit code (Sequence::compat32) in compatibility
  // mode or in legacy protected mode.
  enum class Mode { kNative, kLegacy32 };

  static constexpr uint64_t kRamSize = 4u << 20;
  static constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000;
  static constexpr uint64_t kPdptPae = 0x5000;
  static constexpr uint64_t kGdt = 0x10000, kIdt = 0x11000, kTss = 0x12000, kHandlers = 0x13000;
  static constexpr uint64_t kIdt32 = 0x11800, kTss32 = 0x12800;
  static constexpr uint64_t kKernelStack = 0x1F000;
  static constexpr uint64_t kCodePa = 0x200000, kScratchPa = 0x201000;
  static constexpr uint16_t kUserCs = 0x33, kUserDs = 0x2B, kTr = 0x40;
  static constexpr uint16_t kKernelCs32 = 0x50, kKernelDs = 0x10, kTr32 = 0x58;

  GuestRunner()
      : mem_(static_cast<uint8_t*>(std::aligned_alloc(4096, kRamSize))),
        ram_(mem_.get(), kRamSize),
        cpu_(ram_, host_) {
    std::memset(mem_.get(), 0, kRamSize);
    constexpr uint64_t kP = 1, kRw = 2, kUs = 4, kPs = 0x80;
    put64(kPml4, kPdpt | kP | kRw | kUs);
    put64(kPdpt, kPd | kP | kRw | kUs);
    put64(kPd, 0 | kP | kRw | kPs);  // 0-2 MiB, supervisor
    put64(kPd + 8 * (kCodeVa >> 21 & 511), kPt | kP | kRw | kUs);
    put64(kPt + 8 * (kCodeVa >> 12 & 511), kCodePa | kP | kRw | kUs);
    for (uint64_t k = 0; k < kScratchSize / 4096; ++k) {
      put64(kPt + 8 * ((kScratchVa >> 12 & 511) + k), (kScratchPa + 4096 * k) | kP | kRw | kUs);
    }
    // GDT: 0x08 kernel code (64-bit), 0x10 kernel data, 0x23 user code (32-bit), 0x2B user data,
    // 0x33 user code (64-bit), 0x40 busy 64-bit TSS (16 bytes), 0x50 kernel code (32-bit), 0x58
    // busy 32-bit TSS (the last two for legacy protected mode).
    put64(kGdt + 0x08, 0x00AF9B000000FFFFull);
    put64(kGdt + 0x10, 0x00CF93000000FFFFull);
    put64(kGdt + 0x20, 0x00CFFB000000FFFFull);  // 0x23: user code, 32-bit
    put64(kGdt + 0x28, 0x00CFF3000000FFFFull);
    put64(kGdt + 0x30, 0x00AFFB000000FFFFull);
    const uint64_t tss_limit = 0x67;
    put64(kGdt + kTr,
          tss_limit | (kTss & 0xFFFFFF) << 16 | 0x8Bull << 40 | (kTss >> 24 & 0xFF) << 56);
    put64(kGdt + kTr + 8, kTss >> 32);
    put64(kTss + 4, kKernelStack);                         // RSP0
    std::memcpy(mem_.get() + kTss + 0x66, "\x68\x00", 2);  // I/O map base beyond the limit
    // Legacy protected mode: PAE PDPT (a PDPTE has no R/W or U/S bit: SDM vol. 3A 4.4.1), a
    // 32-bit kernel code segment and a busy 32-bit TSS with ESP0/SS0 and no I/O map either.
    put64(kPdptPae, kPd | kP);
    put64(kGdt + kKernelCs32, 0x00CF9B000000FFFFull);
    put64(kGdt + kTr32,
          tss_limit | (kTss32 & 0xFFFFFF) << 16 | 0x8Bull << 40 | (kTss32 >> 24 & 0xFF) << 56);
    put32(kTss32 + 4, kKernelStack);  // ESP0
    put32(kTss32 + 8, kKernelDs);     // SS0
    std::memcpy(mem_.get() + kTss32 + 0x66, "\x68\x00", 2);
    for (uint64_t v = 0; v < 32; ++v) {
      const uint64_t off = kHandlers + 16 * v;
      const uint64_t dpl = v == 3 ? 3 : 0;
      put64(kIdt + 16 * v, (off & 0xFFFF) | 0x08ull << 16 | 0xEull << 40 | dpl << 45 | 1ull << 47 |
                               (off >> 16 & 0xFFFF) << 48);
      put64(kIdt + 16 * v + 8, off >> 32);
      // 32-bit interrupt gate (type 0xE).
      put64(kIdt32 + 8 * v, (off & 0xFFFF) | uint64_t{kKernelCs32} << 16 | 0xEull << 40 |
                                dpl << 45 | 1ull << 47 | (off >> 16 & 0xFFFF) << 48);
      std::memset(mem_.get() + off, 0xF4, 16);  // HLT
    }
  }

  // Runs `s` to its end marker or first fault; returns "" or an error of the interpreter that
  // is not a state difference.
  std::string run(const Sequence& s, Outcome& o, Mode mode = Mode::kNative) {
    const bool legacy = mode == Mode::kLegacy32;
    load(s, legacy);
    const RunResult rr = cpu_.run(1000000);
    CpuState& st = cpu_.state();
    if (rr.reason != StopReason::kHlt) {
      return "interpreter did not reach an exception handler (stop reason " +
             std::to_string(static_cast<int>(rr.reason)) + ", rip " + hex(st.rip) + ")";
    }
    const uint64_t h = st.rip - 1;
    if (h < kHandlers || h >= kHandlers + 32 * 16 || (h - kHandlers) % 16 != 0) {
      return "interpreter halted outside the handlers at " + hex(st.rip);
    }
    const auto vector = static_cast<uint8_t>((h - kHandlers) / 16);
    // The frame: [error code,] RIP, CS, RFLAGS, RSP, SS; 8-byte slots in IA-32e mode, 4-byte
    // ones in legacy mode (a selector's slot has undefined upper bits there: masked).
    const unsigned slot = legacy ? 4 : 8;
    auto get = [&](uint64_t pa) { return legacy ? get64(pa) & 0xFFFFFFFFu : get64(pa); };
    uint64_t sp = legacy ? st.gpr[kRsp] & 0xFFFFFFFFu : st.gpr[kRsp];
    const bool has_err = vector == 8 || (vector >= 10 && vector <= 14) || vector == 17;
    o.error = 0;
    if (has_err) {
      o.error = get(sp);
      sp += slot;
    }
    const uint64_t rip = get(sp), cs = get(sp + slot) & 0xFFFF, rflags = get(sp + 2 * slot),
                   rsp = get(sp + 3 * slot), ss = get(sp + 4 * slot) & 0xFFFF;
    if (cs != (s.compat32 ? kLinuxUser32Cs : kUserCs) || ss != kUserDs) {
      return "exception frame holds CS " + hex(cs) + " SS " + hex(ss) + " (vector " +
             std::to_string(vector) + ")";
    }
    const uint64_t end = kCodeVa + s.code.size();
    if (vector == 3 && rip == end + 1) {
      o.faulted = false;
      o.vector = 0;
      o.rip = end;
    } else {
      o.faulted = true;
      o.vector = vector;
      o.rip = rip;
    }
    o.cr2 = o.faulted && vector == 14 ? st.cr2 : 0;
    o.rflags = rflags;
    for (int r = 0; r < 16; ++r) o.gpr[r] = st.gpr[r];
    o.gpr[kRsp] = rsp;
    std::memcpy(o.scratch.data(), mem_.get() + kScratchPa, kScratchSize);
    return host_.errors;
  }

  // Runs `s` with run(budget = its instruction count) and reads the result from Cpu::state()
  // (no exception frame in between): the state the platform sees when a run ends on the budget.
  // Only for sequences that complete and have no REP string instruction.
  std::string run_budget(const Sequence& s, Outcome& o, Mode mode = Mode::kNative) {
    load(s, mode == Mode::kLegacy32);
    const RunResult rr = cpu_.run(s.offs.size());
    const CpuState& st = cpu_.state();
    if (rr.reason != StopReason::kBudget || rr.retired != s.offs.size()) {
      return "run(" + std::to_string(s.offs.size()) + ") stopped with reason " +
             std::to_string(static_cast<int>(rr.reason)) + " after " + std::to_string(rr.retired) +
             " instructions";
    }
    o.faulted = false;
    o.vector = 0;
    o.error = o.cr2 = 0;
    o.rip = st.rip;
    o.rflags = st.rflags;
    for (int r = 0; r < 16; ++r) o.gpr[r] = st.gpr[r];
    std::memcpy(o.scratch.data(), mem_.get() + kScratchPa, kScratchSize);
    return host_.errors;
  }

  static std::string hex(uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "%#llx", static_cast<unsigned long long>(v));
    return b;
  }

 private:
  void load(const Sequence& s, bool legacy) {
    uint8_t* code = mem_.get() + kCodePa;
    std::memset(code, 0, kCodeSize);
    std::memcpy(code, s.code.data(), s.code.size());
    code[s.code.size()] = 0xCC;  // INT3
    ram_.note_write(kCodePa, kCodeSize);
    std::memcpy(mem_.get() + kScratchPa, s.scratch.data(), kScratchSize);
    ram_.note_write(kScratchPa, kScratchSize);
    host_.errors.clear();

    CpuState& st = cpu_.state();
    // Legacy mode has only the 32-bit registers.
    for (int r = 0; r < 16; ++r)
      st.gpr[r] = legacy ? (r < 8 ? s.gpr[r] & 0xFFFFFFFFu : 0) : s.gpr[r];
    st.rip = kCodeVa;
    st.rflags = s.rflags;
    st.seg[kCs] = s.compat32 ? Segment{kLinuxUser32Cs, 0, 0xFFFFFFFF, 0xC0FB}
                             : Segment{kUserCs, 0, 0xFFFFFFFF, 0xA0FB};
    for (uint8_t i : {kEs, kSs, kDs, kFs, kGs}) st.seg[i] = Segment{kUserDs, 0, 0xFFFFFFFF, 0xC0F3};
    st.gdtr = TableReg{kGdt, 0x5F};
    st.idtr = legacy ? TableReg{kIdt32, 32 * 8 - 1} : TableReg{kIdt, 32 * 16 - 1};
    st.tr = legacy ? Segment{kTr32, kTss32, 0x67, 0x8B} : Segment{kTr, kTss, 0x67, 0x8B};
    st.ldtr = Segment{0, 0, 0, 0x10082};
    st.cr0 = 0x80010033;  // PG | WP | NE | ET | MP | PE
    st.cr4 = kCr4Pae;
    st.cr3 = legacy ? kPdptPae : kPml4;
    st.cr2 = 0;
    st.efer = legacy ? kEferNxe : kEferLme | kEferLma | kEferNxe;
    st.activity = Activity::kActive;
    st.sti_shadow = st.mov_ss_shadow = false;
    st.nmi_blocked = false;
    cpu_.state_changed();
  }

  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  void put64(uint64_t pa, uint64_t v) { std::memcpy(mem_.get() + pa, &v, 8); }
  void put32(uint64_t pa, uint32_t v) { std::memcpy(mem_.get() + pa, &v, 4); }
  uint64_t get64(uint64_t pa) const {
    uint64_t v = 0;
    if (pa + 8 <= kRamSize) std::memcpy(&v, mem_.get() + pa, 8);
    return v;
  }

  std::unique_ptr<uint8_t, Free> mem_;
  NoIoHost host_;
  GuestRam ram_;
  Cpu cpu_;
};

}  // namespace apicv::cpu::difftest
