// MSI decode (SDM 11.11).
#include "irq/msi.h"

namespace apicv::irq {

x86::InterruptRequest DecodeMsi(uint64_t addr, uint32_t data, MsiOptions options) {
  x86::InterruptRequest r;
  uint32_t dest = static_cast<uint32_t>(addr >> 12) & 0xFF;
  if (options.extended_dest_id) dest |= (static_cast<uint32_t>(addr >> 5) & 0x7F) << 8;
  if (options.x2apic_format) dest |= static_cast<uint32_t>(addr >> 40) << 8;
  r.dest_id = dest;
  r.msi_redir_hint = (addr >> 3) & 1;
  r.dest_logical = (addr >> 2) & 1;
  r.vector = data & 0xFF;
  r.delivery_mode = static_cast<x86::DeliveryMode>((data >> 8) & 7);
  r.trigger_level = (data >> 15) & 1;
  r.level = true;
  r.shorthand = x86::Shorthand::kNone;
  r.from_ipi = false;
  r.source_x2apic = false;
  r.source_vcpu = -1;
  return r;
}

}  // namespace apicv::irq
