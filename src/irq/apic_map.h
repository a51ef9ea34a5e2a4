// ApicMap: KVM's optimized APIC map (kvm_apic_map), an O(1) lookup from an APIC destination to
// vCPU indices, plus the three aliasing results that become APICv inhibits (PHYSICAL_ID_ALIASED,
// LOGICAL_ID_ALIASED, APIC_ID_MODIFIED). Spec §6.2-§6.4; Intel SDM vol. 3A 11.6.2 (destination
// modes), 11.12.10 (x2APIC logical IDs).
// Not supported: concurrent rebuild (the caller serialises rebuilds and publishes the result, as
// KVM does with apic_map_lock + RCU); vCPU ids above kMaxApicId (rejected with an "unsupported"
// error, KVM's KVM_MAX_VCPU_IDS plays the same role).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "irq/apic_view.h"

namespace apicv::irq {

// KVM's enum kvm_apic_logical_mode.
enum class LogicalMode : uint8_t {
  kSwDisabled,    // no software-enabled APIC with a non-zero LDR yet
  kXApicFlat,     // all such APICs in xAPIC flat mode
  kXApicCluster,  // all such APICs in xAPIC cluster mode
  kX2Apic,        // all such APICs in x2APIC mode (clusters reuse the physical map)
  kMapDisabled,   // mixed modes or an LDR that cannot be mapped 1:1 -> slow path
};

const char* LogicalModeName(LogicalMode mode);

struct ApicMapFlags {
  bool phys_id_aliased = false;     // the map could not be built (two APICs with one physical ID)
  bool logical_id_aliased = false;  // no map, or logical map disabled
  bool xapic_id_mismatch = false;   // an xAPIC-mode APIC with xapic_id != (u8)vcpu_id
  bool operator==(const ApicMapFlags&) const = default;
};

struct ApicMapOptions {
  // KVM_CAP_X2APIC_API 32-bit IDs ("x2apic_format"): enables KVM's hotplug hack, where xAPIC-mode
  // APICs are also reachable by their x2APIC ID and xAPIC aliases are silently ignored.
  bool x2apic_format = false;
};

class ApicMap {
 public:
  static constexpr int32_t kNone = -1;
  // Largest vcpu_id (x2APIC ID) a map can hold; bounds the physical map's memory.
  static constexpr uint32_t kMaxApicId = 0xFFFF;

  // A logical destination resolved through the map: bit i of `mask` selects cluster[i]
  // (kNone = no APIC there).
  struct LogicalDest {
    const int32_t* cluster = nullptr;
    uint16_t mask = 0;
  };

  ApicMap() = default;
  explicit ApicMap(std::span<const ApicView> views, ApicMapOptions options = {}) {
    Rebuild(views, options);
  }

  // Recomputes the map for `views` (index = vCPU index) reusing this object's storage, so a
  // rebuild at a stable vCPU count never allocates. Returns true if flags() changed.
  // Throws std::length_error ("unsupported") if a present APIC has vcpu_id > kMaxApicId.
  bool Rebuild(std::span<const ApicView> views, ApicMapOptions options = {});

  // False when the physical map could not be built (KVM publishes a NULL map): every delivery
  // takes the slow path.
  bool valid() const { return valid_; }
  LogicalMode logical_mode() const { return logical_mode_; }
  uint32_t max_apic_id() const { return max_apic_id_; }
  // Number of views the map was built from; routing refuses a map built for another vCPU set.
  size_t vcpu_count() const { return vcpu_count_; }
  const ApicMapFlags& flags() const { return flags_; }

  // vCPU index whose physical APIC ID is `id`, or kNone. Only meaningful when valid().
  int32_t PhysicalLookup(uint32_t id) const { return id <= max_apic_id_ ? phys_map_[id] : kNone; }

  // KVM's kvm_apic_map_get_logical_dest(): false when the logical map is disabled (slow path).
  bool GetLogicalDest(uint32_t dest, LogicalDest* out) const;

 private:
  void RecalculateLogical(const ApicView& view, int32_t index);

  bool valid_ = false;
  LogicalMode logical_mode_ = LogicalMode::kSwDisabled;
  uint32_t max_apic_id_ = 0;
  size_t vcpu_count_ = 0;
  ApicMapFlags flags_;
  std::vector<int32_t> phys_map_;
  // xAPIC flat uses row 0 bits 0-7; xAPIC cluster c uses row c bits 0-3 (KVM's union of
  // xapic_flat_map[8] and xapic_cluster_map[16][4]).
  std::array<std::array<int32_t, 16>, 16> logical_map_{};
};

}  // namespace apicv::irq
