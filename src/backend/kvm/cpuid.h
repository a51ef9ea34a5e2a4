// Guest CPUID: KVM_GET_SUPPORTED_CPUID with x2APIC (leaf 1 ECX[21]), TSC-deadline (leaf 1
// ECX[24]) and the hypervisor bit (ECX[31]) advertised, and the APIC ID of each vCPU in leaf 1
// EBX[31:24] and in EDX of every leaf 0xB / 0x1F subleaf (SDM vol. 2A, CPUID). Not supported:
// KVM_GET_SUPPORTED_CPUID failing (as on this nested host) falls back to the host's CPUID.
// Not supported: topology other than "one thread per package" in leaf 0xB's shift fields (left as
// KVM reports).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace apicv::kvm {

inline constexpr uint32_t kCpuid1EcxX2Apic = 1u << 21;
inline constexpr uint32_t kCpuid1EcxTscDeadline = 1u << 24;
inline constexpr uint32_t kCpuid1EcxHypervisor = 1u << 31;

// Rewrites a supported-CPUID list for the vCPU whose APIC ID is `apic_id`.
void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id);

// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; empty when the host rejects it.
std::vector<kvm_cpuid_entry2> GetSupportedCpuidFromKvm(int kvm_fd);
// The basic and extended leaves of the host's CPUID (MONITOR and VMX cleared).
std::vector<kvm_cpuid_entry2> HostCpuid();
// KVM's list, or HostCpuid() when KVM_GET_SUPPORTED_CPUID is unavailable.
std::vector<kvm_cpuid_entry2> GetSupportedCpuid(int kvm_fd);

}  // namespace apicv::kvm
