// An interrupt request on the APIC bus, as KVM's struct kvm_lapic_irq describes one: produced by an
// ICR write, an IOAPIC redirection entry or an MSI, consumed by the routing layer.
// Intel SDM vol. 3A 11.6 (ICR), 11.11 (MSI format); IOAPIC datasheet (82093AA) 3.2.4.
#pragma once

#include <cstdint>

#include "x86/apic_defs.h"

namespace apicv::x86 {

struct InterruptRequest {
  uint8_t vector = 0;
  DeliveryMode delivery_mode = DeliveryMode::kFixed;
  bool dest_logical = false;
  bool level = true;          // ICR level assert (edge interrupts are always asserted)
  bool trigger_level = false; // trigger mode: false = edge
  Shorthand shorthand = Shorthand::kNone;
  uint32_t dest_id = 0;      // 8-bit xAPIC or 32-bit x2APIC destination
  bool msi_redir_hint = false;
  bool from_ipi = false;     // sent by an APIC (ICR/SELF_IPI) rather than IOAPIC/MSI
  bool source_x2apic = false;  // source APIC in x2APIC mode (32-bit destinations)
  int source_vcpu = -1;      // vCPU index of the sender; -1 for IOAPIC/MSI
};

// Decode an ICR (low word, high word) as written by an APIC in the given mode.
inline InterruptRequest DecodeIcr(uint32_t icr_low, uint32_t icr_high, bool x2apic, int source) {
  InterruptRequest r;
  r.vector = icr_low & kIcrVectorMask;
  r.delivery_mode = static_cast<DeliveryMode>((icr_low >> kIcrDeliveryModeShift) & 7);
  r.dest_logical = icr_low & kIcrDestLogical;
  r.level = icr_low & kIcrLevelAssert;
  r.trigger_level = icr_low & kIcrTriggerLevel;
  r.shorthand = static_cast<Shorthand>((icr_low >> kIcrShorthandShift) & 3);
  r.dest_id = x2apic ? icr_high : (icr_high >> 24);
  r.from_ipi = true;
  r.source_x2apic = x2apic;
  r.source_vcpu = source;
  return r;
}

}  // namespace apicv::x86
