// The routing layer's read-only view of one local APIC: exactly the fields that decide where an
// interrupt goes (KVM's kvm_apic_map inputs). Intel SDM vol. 3A 11.4.6 (APIC ID), 11.6.2.2 (LDR,
// DFR), 11.12.5/11.12.10 (x2APIC ID and derived LDR); spec §6.3-§6.5.
// The routing layer never sees the Lapic class; the virtualization layer fills these in.
// Not supported: APIC hotplug of vCPUs (the view span is the full set of vCPUs).
#pragma once

#include <cstdint>

#include "x86/apic_defs.h"

namespace apicv::irq {

// DFR model 0000b (cluster); x86::kDfrFlat is model 1111b (SDM 11.6.2.2).
constexpr uint32_t kDfrCluster = 0x0FFFFFFF;

struct ApicView {
  uint32_t vcpu_id = 0;     // KVM vcpu_id; also the x2APIC ID (KVM hardcodes x2APIC ID = vcpu_id)
  bool present = false;     // APIC hardware-enabled (IA32_APIC_BASE.EN), KVM's kvm_apic_present()
  bool x2apic = false;      // IA32_APIC_BASE.EXTD
  bool sw_enabled = false;  // SPIV bit 8
  uint8_t xapic_id = 0;     // APIC_ID[31:24] (only meaningful in xAPIC mode)
  uint32_t ldr = 0;         // raw LDR register; in x2APIC mode the derived value is used instead
  uint32_t dfr = x86::kDfrFlat;  // raw DFR register (xAPIC only)
  uint32_t arb_prio = 0;         // KVM's apic_arb_prio (incremented per accepted lowest-prio IRQ)

  uint32_t x2apic_id() const { return vcpu_id; }
  // The LDR as the architecture defines it for the current mode: read-only and derived from the
  // x2APIC ID in x2APIC mode (SDM 11.12.10.2), so a stale raw value can never desynchronise the
  // map.
  uint32_t effective_ldr() const { return x2apic ? x86::X2ApicLdr(vcpu_id) : ldr; }
};

}  // namespace apicv::irq
