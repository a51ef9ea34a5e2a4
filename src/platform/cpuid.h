// The CPUID leaves apicv advertises, whatever executes the guest: x2APIC (leaf 1 ECX[21]),
// TSC-deadline (leaf 1 ECX[24]) and the hypervisor bit (ECX[31]), the APIC ID of each vCPU in
// leaf 1 EBX[31:24] and in EDX of every leaf 0xB / 0x1F subleaf (SDM vol. 2A, CPUID), and the
// PMU leaves of the PMU apicv's irqchip emulates (PatchCpuidForPmu): Intel SDM vol. 2A CPUID
// leaf 0AH and vol. 3B 20.2.1-20.2.2 (architectural PMU v2); AMD APM vol. 3 appendix E
// (Fn8000_0001_ECX PerfCtrExtCore/NB/LLC, Fn8000_0022 PerfMonV2).
// Each backend supplies a base set describing what its CPU implements (KVM: its
// KVM_GET_SUPPORTED_CPUID list; emu: the software CPU's own leaves) and ApicvCpuid() patches it.
// No hypervisor leaf (0x40000000) is added: a base set that has one keeps it.
// Not supported: topology other than "one thread per package" in leaf 0xB's shift fields (left as
// the base set says); CPUID.1:ECX.PDCM / IA32_PERF_CAPABILITIES (apicv's irqchip runs its PMU
// without full-width writes); AMD PerfMonV2 and the northbridge / LLC counter extensions (always
// hidden under apicv's irqchip); Intel's "leaf above the maximum returns the highest basic leaf"
// rule in FindCpuid (a missing leaf reads as zeros).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "virt/vm_config.h"

namespace apicv::platform {

// One CPUID leaf/subleaf; the field layout and flag value mirror KVM's kvm_cpuid_entry2 so a
// backend can convert without reinterpreting anything.
struct CpuidEntry {
  uint32_t function = 0;
  uint32_t index = 0;
  uint32_t flags = 0;  // kCpuidFlagSignificantIndex: `index` selects the subleaf
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
inline constexpr uint32_t kCpuidFlagSignificantIndex = 1;

inline constexpr uint32_t kCpuid1EcxX2Apic = 1u << 21;
inline constexpr uint32_t kCpuid1EcxTscDeadline = 1u << 24;
inline constexpr uint32_t kCpuid1EcxHypervisor = 1u << 31;

inline constexpr uint32_t kCpuidLeafArchPerfmon = 0xA;
inline constexpr uint32_t kCpuidExtFeatures = 0x80000001;
inline constexpr uint32_t kCpuidExtPerfmonDebug = 0x80000022;  // AMD ExtPerfMonAndDbg
inline constexpr uint32_t kCpuidExtEcxPerfCtrExtCore = 1u << 23;
inline constexpr uint32_t kCpuidExtEcxPerfCtrExtNb = 1u << 24;
inline constexpr uint32_t kCpuidExtEcxPerfCtrExtLlc = 1u << 28;

// Which PMU the guest must be told about.
struct GuestPmu {
  enum class Kind : uint8_t {
    kKeep,     // KVM's irqchip: KVM's own vPMU leaves, untouched
    kIntelV2,  // apicv Pmu, PmuModel::kIntelV2
    kAmd,      // apicv Pmu, PmuModel::kAmd
  };
  Kind kind = Kind::kKeep;
  bool amd_core_ext = false;  // AMD: the 0xC0010200.. core-extension MSRs are emulated
};

// The guest PMU for a run: kKeep unless apicv's irqchip is in use (`apicv_irqchip`), then the
// model selected by config.pmu_vendor (the same choice ApicvVm makes for its Pmu devices).
GuestPmu GuestPmuFor(bool apicv_irqchip, const virt::VmConfig& config);

// Sets x2APIC, TSC-deadline and hypervisor in leaf 1 and the vCPU's APIC ID in leaf 1 (low 8
// bits; larger IDs are only visible through leaf 0xB) and leaves 0xB / 0x1F.
void PatchCpuidForVcpu(std::vector<CpuidEntry>& entries, uint32_t apic_id);

// Makes the PMU leaves describe `pmu`:
//  - kIntelV2: leaf 0AH = the Pmu's CpuidLeafA() (version 2, 4 GP counters of 48 bits, EBX
//    length 7 with only core cycles / instructions / reference cycles available, 3 fixed
//    counters of 48 bits). The entry is added if the base set has none, and leaf 0's maximum
//    basic leaf is raised to 0AH if lower. The AMD extension bits are cleared.
//  - kAmd: leaf 0AH zero (AMD has no architectural PMU leaf); Fn8000_0001_ECX PerfCtrExtCore set
//    iff amd_core_ext, PerfCtrExtNB / PerfCtrExtLLC cleared; Fn8000_0022 zeroed (no PerfMonV2).
//  - kKeep: nothing changes.
void PatchCpuidForPmu(std::vector<CpuidEntry>& entries, const GuestPmu& pmu);

// PatchCpuidForVcpu then PatchCpuidForPmu.
void PatchCpuidForVcpu(std::vector<CpuidEntry>& entries, uint32_t apic_id, const GuestPmu& pmu);

// The guest CPUID of vCPU `apic_id`: `base` (what the executing CPU implements) with apicv's
// leaves applied.
std::vector<CpuidEntry> ApicvCpuid(std::vector<CpuidEntry> base, uint32_t apic_id,
                                   const GuestPmu& pmu);

// Applies the guest CPU model (-cpu, platform/cpu_model.h) carried by `config`, after the patches
// above: clears x2APIC / TSC-deadline in leaf 1 when the model lacks them; with pmu=off zeroes
// leaf 0AH and clears Fn8000_0001_ECX's PerfCtrExt bits and Fn8000_0022; with cpuid_vendor
// writes pmu_vendor's vendor string into leaves 0 and 8000_0000H.
void PatchCpuidForCpuModel(std::vector<CpuidEntry>& entries, const virt::VmConfig& config);

// The entry a CPUID instruction with EAX=function, ECX=index reads (index ignored unless the
// entry has kCpuidFlagSignificantIndex), or nullptr.
const CpuidEntry* FindCpuid(std::span<const CpuidEntry> entries, uint32_t function, uint32_t index);

// The basic and extended leaves of the host's CPUID (MONITOR and VMX cleared).
std::vector<CpuidEntry> HostCpuid();

}  // namespace apicv::platform
