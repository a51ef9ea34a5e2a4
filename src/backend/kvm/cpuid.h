// Guest CPUID under KVM: KVM_GET_SUPPORTED_CPUID (or the host's CPUID when that fails) as the base
// set, merged with the leaves apicv advertises (platform/cpuid.h: x2APIC, TSC-deadline,
// hypervisor bit, APIC IDs in leaves 1 / 0xB / 0x1F, PMU leaves), and the KVM_SET_CPUID2
// encoding. With KVM's irqchip (GuestPmu::kKeep) the PMU leaves stay as KVM reports them.
// Not supported: see platform/cpuid.h.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "platform/cpuid.h"
#include "virt/vm_config.h"

namespace apicv::kvm {

using platform::GuestPmu;
using platform::GuestPmuFor;
using platform::kCpuid1EcxHypervisor;
using platform::kCpuid1EcxTscDeadline;
using platform::kCpuid1EcxX2Apic;
using platform::kCpuidExtEcxPerfCtrExtCore;
using platform::kCpuidExtEcxPerfCtrExtLlc;
using platform::kCpuidExtEcxPerfCtrExtNb;
using platform::kCpuidExtFeatures;
using platform::kCpuidExtPerfmonDebug;
using platform::kCpuidLeafArchPerfmon;

static_assert(platform::kCpuidFlagSignificantIndex == KVM_CPUID_FLAG_SIGNIFCANT_INDEX);

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

// Conversions to and from the platform's entries (same fields; KVM's padding is kept by the
// patch functions below and zero in FromPlatform).
std::vector<platform::CpuidEntry> ToPlatform(const std::vector<kvm_cpuid_entry2>& entries);
std::vector<kvm_cpuid_entry2> FromPlatform(const std::vector<platform::CpuidEntry>& entries);

// The platform's patches applied to a KVM list in place: entries keep their order, new leaves
// are appended.
void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id);
void PatchCpuidForPmu(std::vector<kvm_cpuid_entry2>& entries, const GuestPmu& pmu);
void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id,
                       const GuestPmu& pmu);
// platform::PatchCpuidForCpuModel (the -cpu model in `config`) on a KVM list.
void PatchCpuidForCpuModel(std::vector<kvm_cpuid_entry2>& entries, const virt::VmConfig& config);

// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; empty when it fails.
std::vector<kvm_cpuid_entry2> GetSupportedCpuidFromKvm(int kvm_fd);
// platform::HostCpuid() in KVM's layout.
std::vector<kvm_cpuid_entry2> HostCpuid();
// KVM's list, or HostCpuid() when KVM_GET_SUPPORTED_CPUID is unavailable.
std::vector<kvm_cpuid_entry2> GetSupportedCpuid(int kvm_fd);

}  // namespace apicv::kvm
