// Small helpers to build ApicView topologies for the routing tests.
#pragma once

#include <cstdint>
#include <vector>

#include "irq/apic_view.h"

namespace apicv::irq::testing {

// Hardware- and software-enabled xAPIC with the reset xAPIC ID (u8)vcpu_id.
inline ApicView XApic(uint32_t vcpu_id, uint32_t ldr = 0, uint32_t dfr = x86::kDfrFlat) {
  ApicView v;
  v.vcpu_id = vcpu_id;
  v.present = true;
  v.sw_enabled = true;
  v.xapic_id = static_cast<uint8_t>(vcpu_id);
  v.ldr = ldr;
  v.dfr = dfr;
  return v;
}

inline ApicView X2Apic(uint32_t vcpu_id) {
  ApicView v = XApic(vcpu_id);
  v.x2apic = true;
  v.ldr = x86::X2ApicLdr(vcpu_id);
  return v;
}

// xAPIC flat logical ID: one bit of the 8-bit logical ID in LDR[31:24].
inline uint32_t FlatLdr(unsigned bit) {
  return 1u << (24 + bit);
}
// xAPIC cluster logical ID: cluster in LDR[31:28], member bit in LDR[27:24].
inline uint32_t ClusterLdr(unsigned cluster, unsigned bit) {
  return (cluster << 28) | (1u << (24 + bit));
}

inline std::vector<ApicView> X2ApicVcpus(uint32_t n) {
  std::vector<ApicView> v;
  for (uint32_t i = 0; i < n; ++i) v.push_back(X2Apic(i));
  return v;
}

}  // namespace apicv::irq::testing
