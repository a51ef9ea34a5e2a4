// See apic_topology.h.
#include "apic_topology.h"

#include <cstddef>

#include "x86/apic_defs.h"

namespace apicv::bench {

std::vector<irq::ApicView> MakeApicViews(ApicTopology topology, int n) {
  std::vector<irq::ApicView> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    irq::ApicView& a = v[static_cast<size_t>(i)];
    a.vcpu_id = static_cast<uint32_t>(i);
    a.present = true;
    a.sw_enabled = true;
    a.xapic_id = static_cast<uint8_t>(i);
    switch (topology) {
      case ApicTopology::kPhysical:
      case ApicTopology::kX2ApicLogical:
        a.x2apic = true;
        a.ldr = x86::X2ApicLdr(a.vcpu_id);
        break;
      case ApicTopology::kFlat:
        a.dfr = x86::kDfrFlat;
        a.ldr = 1u << (24 + i);
        break;
      case ApicTopology::kCluster:
        a.dfr = irq::kDfrCluster;
        a.ldr = (static_cast<uint32_t>(i / 4) << 28) | (1u << (24 + i % 4));
        break;
    }
  }
  return v;
}

}  // namespace apicv::bench
