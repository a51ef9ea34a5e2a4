// The guest CPU model (`-cpu MODEL[,+feature|-feature|feature=on|off|pmu=on|off|vendor=V...]`,
// QEMU's spelling) for the features guests probe before using them: x2APIC (CPUID.1:ECX[21]),
// the TSC-deadline timer (CPUID.1:ECX[24]), the vPMU (CPUID leaf 0AH / Fn8000_0001_ECX[23]) and
// the vendor string (leaves 0 and 8000_0000H). Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 app. E.
// A model edits the VmConfig, and from there both what every backend's CPUID shows
// (ApplyCpuModel on the guest's leaves, KVM's included) and what apicv's irqchip then enforces the
// way KVM derives it from the guest's CPUID (kvm_vcpu_after_set_cpuid): without x2APIC,
// IA32_APIC_BASE.EXTD is reserved (#GP); without TSC-deadline, LVTT's mode field is one bit
// (apic->lapic_timer.timer_mode_mask); with pmu=off, every PMU MSR #GPs.
// Not supported: models other than max, host and qemu64; features other than the four above
// (QEMU's other flags are refused, not ignored); -cpu host's "every host feature" under emu.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "virt/vm_config.h"

namespace apicv::platform {

struct CpuModel {
  std::string name = "max";
  bool needs_kvm = false;  // `host`: what KVM supports on this host (QEMU: KVM/HVF only)
  bool x2apic = true;
  bool tsc_deadline = true;
  bool pmu = true;
  std::optional<virt::PmuVendor> vendor;  // vendor=GenuineIntel|AuthenticAMD
};

// Bad -cpu input; what() is one line without the "-cpu: " prefix.
struct CpuModelError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Parses MODEL[,item...]; items apply left to right after the model's defaults.
CpuModel ParseCpuModel(const std::string& spec);

// `-cpu help`: the models and the features with their spellings.
const char* CpuModelHelp();

// Writes the model into the VM configuration (x2apic, tsc_deadline, pmu, and the vendor into
// pmu_vendor with cpuid_vendor set when the model or vendor= names one).
void ApplyCpuModel(const CpuModel& model, virt::VmConfig& config);

}  // namespace apicv::platform
