// Guest CPUID: KVM_GET_SUPPORTED_CPUID with x2APIC (leaf 1 ECX[21]), TSC-deadline (leaf 1
// ECX[24]) and the hypervisor bit (ECX[31]) advertised, and the APIC ID of each vCPU in leaf 1
// EBX[31:24] and in EDX of every leaf 0xB / 0x1F subleaf (SDM vol. 2A, CPUID). Not supported:
// If KVM_GET_SUPPORTED_CPUID fails, the host's CPUID is used instead.
// The PMU leaves follow the PMU apicv's irqchip emulates (PatchCpuidForPmu): Intel SDM vol. 2A
// CPUID leaf 0AH and vol. 3B 20.2.1-20.2.2 (architectural PMU v2); AMD APM vol. 3 appendix E
// (Fn8000_0001_ECX PerfCtrExtCore/NB/LLC, Fn8000_0022 PerfMonV2). With KVM's irqchip
// (GuestPmu::kKeep) the leaves stay as KVM reports them.
// Not supported: topology other than "one thread per package" in leaf 0xB's shift fields (left as
// KVM reports); CPUID.1:ECX.PDCM / IA32_PERF_CAPABILITIES (apicv's irqchip runs its PMU without
// full-width writes); AMD PerfMonV2 and the northbridge / LLC counter extensions (always hidden
// under apicv's irqchip).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "virt/vm_config.h"

namespace apicv::kvm {

// The fixed part of struct kvm_cpuid2. Under C++ the uapi header's flexible array member makes
// sizeof(kvm_cpuid2) 12 instead of the kernel's 8, which changes the ioctl numbers built from it
// (the kernel then answers EINVAL); these use the kernel's layout.
struct KvmCpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(KvmCpuid2Header) == 8);
inline constexpr unsigned long kIoctlGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
inline constexpr unsigned long kIoctlSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuid2Header);

// Serialises entries after the 8-byte header, as the kernel expects.
std::vector<uint8_t> EncodeCpuid2(const std::vector<kvm_cpuid_entry2>& entries);

inline constexpr uint32_t kCpuid1EcxX2Apic = 1u << 21;
inline constexpr uint32_t kCpuid1EcxTscDeadline = 1u << 24;
inline constexpr uint32_t kCpuid1EcxHypervisor = 1u << 31;

// Rewrites a supported-CPUID list for the vCPU whose APIC ID is `apic_id`.
void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id);

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

// Makes the PMU leaves describe `pmu`:
//  - kIntelV2: leaf 0AH = the Pmu's CpuidLeafA() (version 2, 4 GP counters of 48 bits, EBX
//    length 7 with only core cycles / instructions / reference cycles available, 3 fixed
//    counters of 48 bits). The entry is added if KVM listed none, and leaf 0's maximum basic
//    leaf is raised to 0AH if lower. The AMD extension bits are cleared (those MSRs are not
//    emulated in this model).
//  - kAmd: leaf 0AH zero (AMD has no architectural PMU leaf); Fn8000_0001_ECX PerfCtrExtCore set
//    iff amd_core_ext, PerfCtrExtNB / PerfCtrExtLLC cleared; Fn8000_0022 zeroed (no PerfMonV2).
//  - kKeep: nothing changes.
void PatchCpuidForPmu(std::vector<kvm_cpuid_entry2>& entries, const GuestPmu& pmu);

// PatchCpuidForVcpu then PatchCpuidForPmu: the guest CPUID of one vCPU.
void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id,
                       const GuestPmu& pmu);

// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; empty when it fails.
std::vector<kvm_cpuid_entry2> GetSupportedCpuidFromKvm(int kvm_fd);
// The basic and extended leaves of the host's CPUID (MONITOR and VMX cleared).
std::vector<kvm_cpuid_entry2> HostCpuid();
// KVM's list, or HostCpuid() when KVM_GET_SUPPORTED_CPUID is unavailable.
std::vector<kvm_cpuid_entry2> GetSupportedCpuid(int kvm_fd);

}  // namespace apicv::kvm
