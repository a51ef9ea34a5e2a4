// Architectural register state a backend loads into a vCPU, in backend-neutral terms: the boot
// entry a loader asks for (BootImage -> BootCpuState), the INIT state (SDM vol. 3A 10.1.1,
// Table 10-1 "IA-32 and Intel 64 Processor States Following Power-up, Reset, or INIT") and the
// SIPI start (SDM vol. 3A 8.4.4.1 / 11.4.4: CS.selector = vector << 8, CS.base = vector << 12,
// IP = 0). The KVM backend copies these into kvm_regs/kvm_sregs; the emu backend into its CPU.
// Registers not listed are zero. Not supported: FPU/SSE/XSAVE state, MSRs other than EFER, SMM,
// DR0-DR7 (their reset values are left to the backend).
#pragma once

#include <cstdint>

#include "platform/boot_loader.h"

namespace apicv::platform {

// A segment register with its hidden descriptor cache (SDM vol. 3A 3.4.5 descriptor fields).
struct SegmentState {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0;  // byte granular (already expanded when g is set)
  uint8_t type = 0;    // descriptor type field (e.g. 0xB: code execute/read accessed)
  uint8_t dpl = 0;
  bool s = true;  // code/data (true) or system (false)
  bool present = true;
  bool db = false;  // default operation size 32 bits
  bool l = false;   // 64-bit code segment
  bool g = false;   // 4 KiB granularity
};

struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0xFFFF;
};

inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Nw = 1ull << 29;
inline constexpr uint64_t kCr0Cd = 1ull << 30;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;
inline constexpr uint64_t kRflagsFixed = 1ull << 1;  // bit 1 always reads 1

struct CpuState {
  EntryMode mode = EntryMode::kReal16;
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rflags = kRflagsFixed;
  uint64_t rax = 0;
  uint64_t rbx = 0;
  SegmentState cs, ds, es, fs, gs, ss;
  SegmentState ldtr, tr;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0;
  uint64_t cr2 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  uint64_t efer = 0;
};

// The state after power-up, reset or INIT (SDM Table 10-1): real mode, CS F000h base FFFF0000h,
// IP FFF0h, CR0 60000010h (CD, NW, ET), everything else zero, GDTR/IDTR base 0 limit FFFFh.
CpuState InitCpuState();

// The INIT state with the SIPI start applied (CS = vector << 8, base vector << 12, IP 0).
CpuState SipiCpuState(uint8_t vector);

// The boot CPU's state at the loader's entry, starting from InitCpuState():
//  - kReal16: CS/DS/ES/FS/GS/SS selector 0, base 0, limit FFFFh; RSP 7C00h; CR0 as after INIT.
//  - kProtected32 (Multiboot §3.2): flat 4 GiB 32-bit segments (CS selector 10h, data 18h),
//    CR0 = PE|ET, paging off, EAX = boot.eax (multiboot magic), EBX = boot.ebx (info address);
//    GDTR is left as after INIT (the spec lets it be invalid).
//  - kLong64: 64-bit code segment (selector 8h, L=1), flat data (10h), GDTR = boot.gdt_*,
//    CR3 = boot.cr3, CR4.PAE, CR0 = PE|ET|PG, EFER.LME|LMA, RSP 80000h.
CpuState BootCpuState(const BootImage& boot);

}  // namespace apicv::platform
