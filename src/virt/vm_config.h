// Configuration of apicv's virtualization layer: the knobs that select KVM behaviours (vendor,
// enable_apicv, IRQ-window strategy, irqchip placement, PIT lost-tick policy, ...).
#pragma once

#include <cstdint>
#include <string>

namespace apicv::virt {

enum class VendorModel : uint8_t { kSvm, kVmx };              // --vendor svm|vmx
enum class IrqWindowMode : uint8_t { kLegacy, kCounted };     // --irqwin legacy|counted
enum class IrqchipPlacement : uint8_t { kOn, kSplit, kOff };  // -machine kernel-irqchip=
enum class PitPolicy : uint8_t { kDelay, kDiscard };          // -global kvm-pit.lost_tick_policy=
enum class AvicKick : uint8_t { kFast, kSlow };               // --avic-kick fast|slow
enum class ApicIdCheck : uint8_t { kCurrent, k2022 };         // --apic-id-check current|2022
enum class PmiDelivery : uint8_t { kCurrent, kLegacy };       // --pmi-delivery current|legacy
enum class PmuVendor : uint8_t { kIntel, kAmd };
// KVM_CAP_X2APIC_API's Suppress-EOI-Broadcast flags, meaningful with kernel-irqchip=split only
// (KVM rejects them otherwise): --suppress-eoi-broadcast quirk|enable|disable.
//   kQuirk    no flag: LVR[24] advertised to x2APIC guests, SVR[12] writable but ignored (every
//             level EOI still exits to the VMM's IOAPIC);
//   kEnabled  KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST: advertised and honoured: with SVR[12] set
//             the LAPIC EOI does not reach the IOAPIC, the guest writes the IOAPIC's EOI register
//             (the VMM-layer IOAPIC is then version 0x20);
//   kDisabled KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST: not advertised, SVR[12] reserved.
enum class SuppressEoiBroadcast : uint8_t { kQuirk, kEnabled, kDisabled };

struct VmConfig {
  int nr_vcpus = 1;
  VendorModel vendor = VendorModel::kSvm;
  bool enable_apicv = true;  // --avic on|off (KVM's avic / enable_apicv module parameter)
  IrqWindowMode irqwin = IrqWindowMode::kCounted;
  IrqchipPlacement placement = IrqchipPlacement::kOn;
  PitPolicy pit_policy = PitPolicy::kDelay;
  AvicKick avic_kick = AvicKick::kFast;
  ApicIdCheck apic_id_check = ApicIdCheck::kCurrent;
  PmiDelivery pmi_delivery = PmiDelivery::kCurrent;
  PmuVendor pmu_vendor = PmuVendor::kIntel;
  bool esr_sdm_mode = false;  // false: KVM parity (no ESR error bits)
  // Set by a backend that hands every guest CR8 / TPR write to the irqchip as it happens (the
  // software CPU): no window is kept open to catch a TPR lowered without an exit.
  bool tpr_writes_exit = false;
  uint64_t tsc_khz = 0;            // guest TSC frequency; 0 = ask the backend
  uint64_t halt_poll_ns = 200000;  // initial adaptive halt-poll window (KVM halt_poll_ns)
  // kvm.vector_hashing: lowest-priority interrupts pick their target by vector hashing (default);
  // off, the target with the lowest apic_arb_prio wins (arrival counts, KVM's arbitration).
  bool vector_hashing = true;
  // Guest MAXPHYADDR: IA32_APIC_BASE bits at and above it are reserved (#GP); 32..52.
  uint32_t maxphyaddr = 46;
  SuppressEoiBroadcast suppress_eoi_broadcast = SuppressEoiBroadcast::kQuirk;
  // The guest CPU model's features (-cpu, platform/cpu_model.h): what the guest's CPUID shows and,
  // as KVM derives it from that CPUID, what the irqchip allows.
  bool x2apic = true;         // CPUID.1:ECX[21]; false: IA32_APIC_BASE.EXTD is reserved (#GP)
  bool tsc_deadline = true;   // CPUID.1:ECX[24]; false: LVTT mode mask 1 << 17 (no TSC-deadline)
  bool pmu = true;            // false (pmu=off): no vPMU leaves, every PMU MSR #GPs
  bool cpuid_vendor = false;  // true: CPUID's vendor string is pmu_vendor's (-cpu vendor=)
};

}  // namespace apicv::virt
