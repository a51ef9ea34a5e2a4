// The per-vCPU architectural devices every VM component works on: each vCPU's Lapic (SDM vol. 3A
// ch. 11) and Pmu (SDM vol. 3B ch. 20 / APM vol. 2 13.2). KVM keeps them in vcpu->arch.apic and
// vcpu->arch.pmu; the VM components reach them through here.
//
// Threading: a vCPU's Lapic and Pmu belong to that vCPU's thread (or to a caller that has every
// vCPU stopped: construction, reset); other threads only use the Lapic's lock-free posting
// (post, post_nmi, post_init, post_sipi). No lock.
#pragma once

#include <memory>
#include <vector>

#include "devices/lapic.h"
#include "devices/pmu/pmu.h"

namespace apicv::virt {

class VcpuDevices {
 public:
  VcpuDevices(int nr_vcpus, const LapicConfig& lc, const PmuConfig& pc) {
    slots_.reserve(static_cast<size_t>(nr_vcpus));
    for (int i = 0; i < nr_vcpus; ++i) slots_.push_back(std::make_unique<Slot>(i, lc, pc));
  }
  int size() const { return static_cast<int>(slots_.size()); }
  Lapic& lapic(int vcpu) { return slots_[static_cast<size_t>(vcpu)]->lapic; }
  const Lapic& lapic(int vcpu) const { return slots_[static_cast<size_t>(vcpu)]->lapic; }
  Pmu& pmu(int vcpu) { return slots_[static_cast<size_t>(vcpu)]->pmu; }

 private:
  // One allocation per vCPU keeps vCPUs' devices off each other's cache lines.
  struct Slot {
    Slot(int id, const LapicConfig& lc, const PmuConfig& pc)
        : lapic(static_cast<uint32_t>(id), id == 0, lc), pmu(pc) {}
    Lapic lapic;
    Pmu pmu;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace apicv::virt
