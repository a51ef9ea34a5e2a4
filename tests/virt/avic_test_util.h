// Test double for AvicVcpuOps: records what the AVIC hardware and KVM's kick path did to each vCPU,
// and topology builders for APIC views with the guarantees AVIC runs under (APIC ID == vcpu_id,
// one logical ID per vCPU).
#pragma once

#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "irq/apic_view.h"
#include "virt/avic.h"
#include "x86/apic_defs.h"

namespace apicv::virt::testing {

struct RecordingOps : AvicVcpuOps {
  explicit RecordingOps(std::vector<irq::ApicView> v)
      : views(std::move(v)), in_guest(views.size(), false), active(views.size(), true) {}

  void set_irr(int vcpu, uint8_t vector) override { irr.emplace_back(vcpu, vector); }
  void ring_doorbell(int vcpu) override { doorbells.push_back(vcpu); }
  void wake(int vcpu) override { wakes.push_back(vcpu); }
  void request_event_and_kick(int vcpu) override { events.push_back(vcpu); }
  bool in_guest_mode(int vcpu) override { return in_guest[static_cast<size_t>(vcpu)]; }
  bool apicv_active(int vcpu) override { return active[static_cast<size_t>(vcpu)]; }
  const irq::ApicView& view(int vcpu) override { return views[static_cast<size_t>(vcpu)]; }

  // Every vCPU that received any kind of kick (doorbell, wake or event), as a set.
  std::set<int> kicked() const {
    std::set<int> s(doorbells.begin(), doorbells.end());
    s.insert(wakes.begin(), wakes.end());
    s.insert(events.begin(), events.end());
    return s;
  }
  void clear() {
    irr.clear();
    doorbells.clear();
    wakes.clear();
    events.clear();
  }

  std::vector<irq::ApicView> views;
  std::vector<bool> in_guest;
  std::vector<bool> active;
  std::vector<std::pair<int, uint8_t>> irr;
  std::vector<int> doorbells, wakes, events;
};

enum class Topology { kPhysicalXApic, kPhysicalX2Apic, kFlat, kCluster, kX2ApicLogical };

// n vCPUs, vcpu_id == index == APIC ID, all enabled. Flat: LDR bit i (n <= 8). Cluster: cluster
// i / 4, member bit i % 4 (n <= 60).
inline std::vector<irq::ApicView> MakeViews(Topology t, int n) {
  std::vector<irq::ApicView> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    irq::ApicView& a = v[static_cast<size_t>(i)];
    a.vcpu_id = static_cast<uint32_t>(i);
    a.present = true;
    a.sw_enabled = true;
    a.xapic_id = static_cast<uint8_t>(i);
    switch (t) {
      case Topology::kPhysicalXApic:
        a.dfr = x86::kDfrFlat;
        break;
      case Topology::kPhysicalX2Apic:
      case Topology::kX2ApicLogical:
        a.x2apic = true;
        break;
      case Topology::kFlat:
        a.dfr = x86::kDfrFlat;
        a.ldr = 1u << (24 + i);
        break;
      case Topology::kCluster:
        a.dfr = irq::kDfrCluster;
        a.ldr = (static_cast<uint32_t>(i / 4) << 28) | (1u << (24 + i % 4));
        break;
    }
  }
  return v;
}

// ICR low word: fixed, edge, no shorthand unless given.
inline uint32_t Icrl(uint8_t vector, bool logical, uint32_t extra = 0) {
  return vector | (logical ? x86::kIcrDestLogical : 0u) | extra;
}
inline uint32_t XApicIcrh(uint8_t dest) {
  return static_cast<uint32_t>(dest) << 24;
}

}  // namespace apicv::virt::testing
