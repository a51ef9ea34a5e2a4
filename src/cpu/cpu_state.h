// Architectural state of one x86-64 logical processor (Intel SDM vol. 3A ch. 2, 3.4.3 segment
// registers with their hidden parts, 2.5 control registers, 2.2.1 EFER).
// Segment access rights use the VMX "access rights" layout (SDM vol. 3C 24.4.1): type 3:0, S 4,
// DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16.
// Not modelled: x87/SSE state, MTRRs, debug-breakpoint matching, SMRAM.
#pragma once

#include <array>
#include <cstdint>

namespace apicv::cpu {

enum Gpr : uint8_t {
  kRax, kRcx, kRdx, kRbx, kRsp, kRbp, kRsi, kRdi,
  kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15,
};

enum SegIndex : uint8_t { kEs, kCs, kSs, kDs, kFs, kGs, kSegNone = 0xFF };

struct Segment {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;  // byte granular (G already applied)
  uint32_t ar = 0x93;       // access rights, VMX layout
  unsigned dpl() const { return (ar >> 5) & 3; }
  bool present() const { return (ar & 0x80) != 0; }
  bool db() const { return (ar & 0x4000) != 0; }
  bool l() const { return (ar & 0x2000) != 0; }
};

struct TableReg {
  uint64_t base = 0;
  uint16_t limit = 0xFFFF;
};

enum class Activity : uint8_t { kActive, kHalted, kWaitForSipi, kShutdown };

// RFLAGS bits (SDM vol. 1 3.4.3).
inline constexpr uint64_t kCF = 1u << 0, kPF = 1u << 2, kAF = 1u << 4, kZF = 1u << 6,
                          kSF = 1u << 7, kTF = 1u << 8, kIF = 1u << 9, kDF = 1u << 10,
                          kOF = 1u << 11, kIOPL = 3u << 12, kNT = 1u << 14, kRF = 1u << 16,
                          kVM = 1u << 17, kAC = 1u << 18, kVIF = 1u << 19, kVIP = 1u << 20,
                          kID = 1u << 21;
inline constexpr uint64_t kArithFlags = kCF | kPF | kAF | kZF | kSF | kOF;

// CR0 / CR4 / EFER bits used by the CPU.
inline constexpr uint64_t kCr0Pe = 1u << 0, kCr0Mp = 1u << 1, kCr0Em = 1u << 2,
                          kCr0Ts = 1u << 3, kCr0Et = 1u << 4, kCr0Ne = 1u << 5,
                          kCr0Wp = 1u << 16, kCr0Am = 1u << 18, kCr0Nw = 1u << 29,
                          kCr0Cd = 1u << 30, kCr0Pg = 1u << 31;
inline constexpr uint64_t kCr4Vme = 1u << 0, kCr4Pvi = 1u << 1, kCr4Tsd = 1u << 2,
                          kCr4De = 1u << 3, kCr4Pse = 1u << 4, kCr4Pae = 1u << 5,
                          kCr4Mce = 1u << 6, kCr4Pge = 1u << 7, kCr4Pce = 1u << 8,
                          kCr4Osfxsr = 1u << 9, kCr4Osxmmexcpt = 1u << 10,
                          kCr4Fsgsbase = 1u << 16, kCr4Smep = 1u << 20, kCr4Smap = 1u << 21;
inline constexpr uint64_t kEferSce = 1u << 0, kEferLme = 1u << 8, kEferLma = 1u << 10,
                          kEferNxe = 1u << 11;

struct CpuState {
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0xFFF0;
  uint64_t rflags = 0x2;
  std::array<Segment, 6> seg{};
  Segment ldtr{0, 0, 0xFFFF, 0x82};
  Segment tr{0, 0, 0xFFFF, 0x8B};
  TableReg gdtr, idtr;
  uint64_t cr0 = 0x60000010, cr2 = 0, cr3 = 0, cr4 = 0, efer = 0;
  std::array<uint64_t, 8> dr{0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400};
  // MSRs the CPU owns.
  uint64_t star = 0, lstar = 0, cstar = 0, sfmask = 0, kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;
  Activity activity = Activity::kActive;
  // Blocking by STI / MOV SS (SDM vol. 3A 6.8.3, table 24-3): the instruction after the one that
  // set it runs with interrupts (and, for MOV SS, #DB) held off.
  bool sti_shadow = false;
  bool mov_ss_shadow = false;
  bool nmi_blocked = false;  // from NMI delivery until the next IRET
};

}  // namespace apicv::cpu
