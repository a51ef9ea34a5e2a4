// Small definitions the VM's components share: the host APIC ID a vCPU runs on, the ICR words a
// guest wrote (rebuilt from its decoded request), and a LAPIC's identity as the routing layer
// sees it. Not a public interface.
#pragma once

#include <cstdint>

#include "devices/lapic.h"
#include "irq/apic_view.h"
#include "x86/apic_defs.h"

namespace apicv::virt {

// A vCPU stays on "its" pCPU: the host APIC ID in its AVIC physical table entry and its PiDesc's
// NDST is its index.
inline uint32_t HostApicId(int vcpu) {
  return static_cast<uint32_t>(vcpu) & 0xFFF;
}

// The ICR value a guest wrote, rebuilt from its decoded request (x86::DecodeIcr is lossless for
// every field the AVIC hardware and kvm_apic_ipi look at).
inline uint32_t IcrLow(const x86::InterruptRequest& r) {
  return r.vector | (static_cast<uint32_t>(r.delivery_mode) << x86::kIcrDeliveryModeShift) |
         (r.dest_logical ? x86::kIcrDestLogical : 0) | (r.level ? x86::kIcrLevelAssert : 0) |
         (r.trigger_level ? x86::kIcrTriggerLevel : 0) |
         (static_cast<uint32_t>(r.shorthand) << x86::kIcrShorthandShift);
}

inline uint32_t IcrHigh(const x86::InterruptRequest& r) {
  return r.source_x2apic ? r.dest_id : (r.dest_id & 0xFF) << 24;
}

// The routing layer's view of one LAPIC (arbitration priority filled in by the router).
inline irq::ApicView ApicViewOf(const LapicIdentity& id) {
  return {id.vcpu_id, id.hw_enabled, id.x2apic, id.sw_enabled, id.xapic_id, id.ldr, id.dfr, 0};
}

}  // namespace apicv::virt
