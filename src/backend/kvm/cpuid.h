// Guest CPUID: KVM_GET_SUPPORTED_CPUID with x2APIC (leaf 1 ECX[21]), TSC-deadline (leaf 1
// ECX[24]) and the hypervisor bit (ECX[31]) advertised, and the APIC ID of each vCPU in leaf 1
// EBX[31:24] and in EDX of every leaf 0xB / 0x1F subleaf (SDM vol. 2A, CPUID). Not supported:
// If KVM_GET_SUPPORTED_CPUID fails, the host's CPUID is used instead.
// Not supported: topology other than "one thread per package" in leaf 0xB's shift fields (left as
// KVM reports).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

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

// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; empty when it fails.
std::vector<kvm_cpuid_entry2> GetSupportedCpuidFromKvm(int kvm_fd);
// The basic and extended leaves of the host's CPUID (MONITOR and VMX cleared).
std::vector<kvm_cpuid_entry2> HostCpuid();
// KVM's list, or HostCpuid() when KVM_GET_SUPPORTED_CPUID is unavailable.
std::vector<kvm_cpuid_entry2> GetSupportedCpuid(int kvm_fd);

}  // namespace apicv::kvm
