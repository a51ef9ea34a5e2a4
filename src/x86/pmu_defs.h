// Performance-monitoring architectural constants: MSR numbers, event-select / fixed-control
// fields, global control/status layout, CPUID leaf 0xA encoding, and the event codes apicv counts.
// Intel SDM vol. 3B ch. 20 (20.2.1 architectural PMU v1, 20.2.2 v2: fixed counters and the
// GLOBAL_CTRL/STATUS/OVF_CTRL MSRs, 20.2.1.1 CPUID 0xA, 20.2.6 full-width writes);
// AMD APM vol. 2 13.2 (PerfEvtSel/PerfCtr legacy and core-extension MSRs).
// Stateless. Not described here: PEBS, LBR, PerfMon v3+ (AnyThread), v4 (status set/freeze),
// AMD PerfMonV2 global MSRs (0xC0000300..), uncore/northbridge counters.
#pragma once

#include <cstdint>

namespace apicv::x86 {

// --- Intel architectural PMU (SDM 20.2) ---
constexpr uint32_t kMsrIa32Pmc0 = 0xC1;               // IA32_PMCx, x = 0..7 (legacy 32-bit writes)
constexpr uint32_t kMsrIa32PerfEvtSel0 = 0x186;       // IA32_PERFEVTSELx
constexpr uint32_t kMsrIa32PerfCapabilities = 0x345;  // needs CPUID.1:ECX.PDCM
constexpr uint32_t kMsrIa32FixedCtr0 = 0x309;         // IA32_FIXED_CTR0..2
constexpr uint32_t kMsrIa32APmc0 = 0x4C1;             // IA32_A_PMCx: full-width writes
constexpr uint32_t kMsrIa32FixedCtrCtrl = 0x38D;
constexpr uint32_t kMsrIa32PerfGlobalStatus = 0x38E;
constexpr uint32_t kMsrIa32PerfGlobalCtrl = 0x38F;
constexpr uint32_t kMsrIa32PerfGlobalOvfCtrl = 0x390;
// The architecture reserves room for 8 general-purpose counters (CPUID.0AH:EAX[15:8] <= 8 on
// every part with these MSR blocks).
constexpr unsigned kIntelArchMaxGp = 8;
constexpr unsigned kIntelArchMaxFixed = 4;

// IA32_PERF_CAPABILITIES.FW_WRITE (bit 13): IA32_A_PMCx exist (SDM 20.2.6).
constexpr uint64_t kPerfCapFullWidthWrite = 1ull << 13;

// IA32_PERFEVTSELx / AMD PerfEvtSeln fields (SDM Figure 20-1, APM 13.2.1).
constexpr uint64_t kEvtSelEventMask = 0xFF;
constexpr uint64_t kEvtSelUmaskMask = 0xFF00;
constexpr uint64_t kEvtSelUsr = 1ull << 16;
constexpr uint64_t kEvtSelOs = 1ull << 17;
constexpr uint64_t kEvtSelEdge = 1ull << 18;
constexpr uint64_t kEvtSelPc = 1ull << 19;
constexpr uint64_t kEvtSelInt = 1ull << 20;
constexpr uint64_t kEvtSelAnyThread = 1ull << 21;  // v3+; reserved in v2
constexpr uint64_t kEvtSelEn = 1ull << 22;
constexpr uint64_t kEvtSelInv = 1ull << 23;
constexpr uint64_t kEvtSelCmaskShift = 24;
// AMD: EventSelect[11:8] lives in bits 35:32.
constexpr uint64_t kAmdEvtSelEventHiMask = 0xFull << 32;

// Reserved bits of IA32_PERFEVTSELx for a v2 PMU without TSX: 63:32 and AnyThread (bit 21).
// A guest write with any of them set takes #GP (as KVM's intel_pmu_set_msr()).
constexpr uint64_t kIntelV2EvtSelReserved = 0xFFFFFFFF00200000ull;
// Reserved bits of AMD PerfEvtSeln as KVM models them: 63:36 (incl. HostOnly/GuestOnly 41:40),
// bit 21 and bit 19. AMD ignores writes to reserved bits instead of faulting.
constexpr uint64_t kAmdEvtSelReserved = 0xFFFFFFF000280000ull;

// IA32_FIXED_CTR_CTRL: one 4-bit field per fixed counter (SDM Figure 20-2).
constexpr unsigned kFixedCtrlFieldBits = 4;
constexpr uint64_t kFixedCtrlOs = 1u << 0;
constexpr uint64_t kFixedCtrlUsr = 1u << 1;
constexpr uint64_t kFixedCtrlAnyThread = 1u << 2;  // v3+; reserved in v2
constexpr uint64_t kFixedCtrlPmi = 1u << 3;
constexpr uint64_t kFixedCtrlFieldMask = 0xF;
constexpr uint64_t kFixedCtrlFieldValidV2 = kFixedCtrlOs | kFixedCtrlUsr | kFixedCtrlPmi;  // 0xB

constexpr uint64_t FixedCtrlField(uint64_t fixed_ctr_ctrl, unsigned i) {
  return (fixed_ctr_ctrl >> (i * kFixedCtrlFieldBits)) & kFixedCtrlFieldMask;
}

// IA32_PERF_GLOBAL_{CTRL,STATUS,OVF_CTRL}: bit i = IA32_PMCi, bit 32+i = IA32_FIXED_CTRi.
constexpr unsigned kGlobalFixedShift = 32;
constexpr uint64_t kGlobalStatusOvfBuffer = 1ull << 62;  // PEBS/DS buffer overflow
constexpr uint64_t kGlobalStatusCondChgd = 1ull << 63;

// CPUID leaf 0xA (SDM 20.2.1.1, Table "CPUID leaf 0AH").
constexpr uint32_t kCpuidLeafPerfMon = 0xA;
constexpr uint32_t CpuidAEax(unsigned version, unsigned nr_gp, unsigned gp_width,
                             unsigned ebx_length) {
  return (version & 0xFF) | ((nr_gp & 0xFF) << 8) | ((gp_width & 0xFF) << 16) |
         ((ebx_length & 0xFF) << 24);
}
constexpr uint32_t CpuidAEdx(unsigned nr_fixed, unsigned fixed_width) {
  return (nr_fixed & 0x1F) | ((fixed_width & 0xFF) << 5);
}
// CPUID.0AH:EBX: a set bit means the architectural event is NOT available.
enum ArchEventBit : uint32_t {
  kArchEvCoreCycles = 1u << 0,          // 3CH/00H UnHalted Core Cycles
  kArchEvInstructions = 1u << 1,        // C0H/00H Instructions Retired
  kArchEvRefCycles = 1u << 2,           // 3CH/01H UnHalted Reference Cycles
  kArchEvLlcReference = 1u << 3,        // 2EH/4FH
  kArchEvLlcMisses = 1u << 4,           // 2EH/41H
  kArchEvBranchRetired = 1u << 5,       // C4H/00H
  kArchEvBranchMispredicted = 1u << 6,  // C5H/00H
};
constexpr unsigned kArchEventCountV2 = 7;

// Intel architectural event codes (event | umask << 8).
constexpr uint64_t kIntelEvCoreCycles = 0x003C;
constexpr uint64_t kIntelEvRefCycles = 0x013C;
constexpr uint64_t kIntelEvInstructions = 0x00C0;
// What each fixed counter counts (SDM Table 20-2).
constexpr unsigned kFixedInstructions = 0;  // INST_RETIRED.ANY
constexpr unsigned kFixedCoreCycles = 1;    // CPU_CLK_UNHALTED.CORE
constexpr unsigned kFixedRefCycles = 2;     // CPU_CLK_UNHALTED.REF_TSC

// --- AMD (APM vol. 2 13.2) ---
constexpr uint32_t kMsrK7PerfEvtSel0 = 0xC0010000;  // PerfEvtSel0..3
constexpr uint32_t kMsrK7PerfCtr0 = 0xC0010004;     // PerfCtr0..3
constexpr unsigned kAmdLegacyCounters = 4;
// Core performance counter extensions (CPUID Fn8000_0001_ECX[PerfCtrExtCore], bit 23):
// PerfEvtSeln at 0xC0010200 + 2n, PerfCtrn at 0xC0010201 + 2n, n = 0..5. The legacy MSRs alias
// counters 0..3.
constexpr uint32_t kMsrF15hPerfCtl0 = 0xC0010200;
constexpr unsigned kAmdCoreExtCounters = 6;
constexpr uint32_t kCpuid80000001EcxPerfCtrExtCore = 1u << 23;
// AMD event codes (12-bit event in bits 35:32 and 7:0, umask 15:8).
constexpr uint64_t kAmdEvCyclesNotHalted = 0x076;
constexpr uint64_t kAmdEvRetiredInstructions = 0x0C0;

// Counter width apicv advertises (Intel CPUID.0AH EAX[23:16] / EDX[12:5]; AMD counters are 48
// bits).
constexpr unsigned kPmuCounterWidth = 48;
constexpr uint64_t kPmuCounterMask = (1ull << kPmuCounterWidth) - 1;

}  // namespace apicv::x86
