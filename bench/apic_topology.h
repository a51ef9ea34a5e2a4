// vCPU APIC views for the routing and AVIC benchmarks: n present, software-enabled APICs with
// APIC ID = vCPU id in one of the addressing topologies the fast paths distinguish.
#pragma once

#include <vector>

#include "irq/apic_view.h"

namespace apicv::bench {

enum class ApicTopology {
  kPhysical,       // x2APIC IDs (physical routing beyond 255 vCPUs needs them)
  kFlat,           // xAPIC flat logical: one LDR bit per vCPU (at most 8)
  kCluster,        // xAPIC cluster logical: 4 vCPUs per cluster (at most 60)
  kX2ApicLogical,  // x2APIC logical: LDR derived from the ID
};

std::vector<irq::ApicView> MakeApicViews(ApicTopology topology, int n);

}  // namespace apicv::bench
