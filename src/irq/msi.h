// MSI address/data decode into an APIC bus request, as KVM's kvm_set_msi_irq() does.
// Intel SDM vol. 3A 11.11.1 (message address: 0xFEE, dest ID [19:12], RH bit 3, DM bit 2),
// 11.11.2 (message data: vector [7:0], delivery mode [10:8], level bit 14, trigger bit 15).
// Not supported: interrupt remapping (IOMMU IRTE format, address bit 4); the caller checks
// IsMsiAddress() and routes other addresses as memory writes.
#pragma once

#include <cstdint>

#include "x86/interrupt.h"

namespace apicv::irq {

struct MsiOptions {
  // KVM_CAP_X2APIC_API: destination bits 31:8 come from address bits 63:40.
  bool x2apic_format = false;
  // Extended destination ID (KVM_FEATURE_MSI_EXT_DEST_ID): destination bits 14:8 from address
  // bits 11:5, giving 15-bit APIC IDs without interrupt remapping.
  bool extended_dest_id = false;
};

// Address bits 31:20 must be 0xFEE for the write to be an interrupt message.
constexpr bool IsMsiAddress(uint64_t addr) {
  return (addr & 0xFFF00000ull) == 0xFEE00000ull;
}

// Decodes an MSI. The result is an IOAPIC/MSI message (from_ipi false, no source), never a
// shorthand. `level` is always asserted, as KVM sets it: an MSI is a single edge of a message and
// data bit 14 carries no deassert meaning on the APIC bus.
x86::InterruptRequest DecodeMsi(uint64_t addr, uint32_t data, MsiOptions options = {});

}  // namespace apicv::irq
