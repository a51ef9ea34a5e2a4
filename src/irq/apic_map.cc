// ApicMap construction and logical lookups (spec §6.2-§6.4).
#include "irq/apic_map.h"

#include <algorithm>
#include <bit>
#include <stdexcept>
#include <string>

namespace apicv::irq {

const char* LogicalModeName(LogicalMode mode) {
  switch (mode) {
    case LogicalMode::kSwDisabled:
      return "sw_disabled";
    case LogicalMode::kXApicFlat:
      return "xapic_flat";
    case LogicalMode::kXApicCluster:
      return "xapic_cluster";
    case LogicalMode::kX2Apic:
      return "x2apic";
    case LogicalMode::kMapDisabled:
      return "map_disabled";
  }
  return "?";
}

bool ApicMap::Rebuild(std::span<const ApicView> views, ApicMapOptions options) {
  const ApicMapFlags old_flags = flags_;

  // The map always has room for every xAPIC ID, and grows to the largest x2APIC ID (= vcpu_id)
  // among hardware-enabled APICs.
  uint32_t max_id = 0xFF;
  for (const ApicView& v : views) {
    if (v.present) max_id = std::max(max_id, v.x2apic_id());
  }
  if (max_id > kMaxApicId) {
    throw std::length_error("unsupported: APIC map with vcpu_id " + std::to_string(max_id) +
                            " (limit " + std::to_string(kMaxApicId) + ")");
  }
  max_apic_id_ = max_id;
  vcpu_count_ = views.size();
  phys_map_.assign(static_cast<size_t>(max_id) + 1, kNone);  // keeps capacity
  for (auto& row : logical_map_) row.fill(kNone);
  logical_mode_ = LogicalMode::kSwDisabled;
  valid_ = true;

  bool xapic_id_mismatch = false;
  for (size_t i = 0; i < views.size(); ++i) {
    const ApicView& v = views[i];
    if (!v.present) continue;
    const auto index = static_cast<int32_t>(i);

    // Compare with the truncated vcpu_id: vCPU 256 with xAPIC ID 0 is not "modified"; the alias
    // it may create is caught by the 1:1 check below.
    if (!v.x2apic && v.xapic_id != static_cast<uint8_t>(v.vcpu_id)) xapic_id_mismatch = true;

    if (options.x2apic_format) {
      if (v.x2apic || v.x2apic_id() > 0xFF) phys_map_[v.x2apic_id()] = index;
      if (!v.x2apic && phys_map_[v.xapic_id] == kNone) phys_map_[v.xapic_id] = index;
    } else {
      const uint32_t physical_id = v.x2apic ? v.x2apic_id() : v.xapic_id;
      if (phys_map_[physical_id] != kNone) {
        // KVM stops at the first alias and publishes no map; APICs after this one are not
        // examined, so the mismatch result only covers the ones before it.
        valid_ = false;
        break;
      }
      phys_map_[physical_id] = index;
    }
    RecalculateLogical(v, index);
  }

  flags_.phys_id_aliased = !valid_;
  flags_.logical_id_aliased = !valid_ || logical_mode_ == LogicalMode::kMapDisabled;
  flags_.xapic_id_mismatch = xapic_id_mismatch;
  return !(flags_ == old_flags);
}

void ApicMap::RecalculateLogical(const ApicView& v, int32_t index) {
  if (logical_mode_ == LogicalMode::kMapDisabled) return;
  if (!v.sw_enabled) return;
  uint32_t ldr = v.effective_ldr();
  if (ldr == 0) return;

  LogicalMode mode;
  if (v.x2apic) {
    mode = LogicalMode::kX2Apic;
  } else {
    ldr >>= 24;
    mode = v.dfr == x86::kDfrFlat ? LogicalMode::kXApicFlat : LogicalMode::kXApicCluster;
  }
  // Every software-enabled APIC must use the same logical mode for the map to be usable.
  if (logical_mode_ == LogicalMode::kSwDisabled) {
    logical_mode_ = mode;
  } else if (logical_mode_ != mode) {
    logical_mode_ = LogicalMode::kMapDisabled;
    return;
  }
  // x2APIC logical IDs are derived from the x2APIC ID, so the physical map already answers them.
  if (v.x2apic) return;

  // Same slot arithmetic as GetLogicalDest() for the xAPIC modes.
  auto& row = logical_map_[mode == LogicalMode::kXApicFlat ? 0 : (ldr >> 4) & 0xF];
  const uint32_t mask = mode == LogicalMode::kXApicFlat ? (ldr & 0xFF) : (ldr & 0xF);
  if (mask == 0) return;
  const int bit = std::countr_zero(mask);
  // A multi-bit LDR would make one APIC appear in several slots: no 1:1 map.
  if (!std::has_single_bit(mask) || row[bit] != kNone) {
    logical_mode_ = LogicalMode::kMapDisabled;
    return;
  }
  row[bit] = index;
}

bool ApicMap::GetLogicalDest(uint32_t dest, LogicalDest* out) const {
  switch (logical_mode_) {
    case LogicalMode::kSwDisabled:
      out->cluster = logical_map_[0].data();
      out->mask = 0;
      return true;
    case LogicalMode::kXApicFlat:
      out->cluster = logical_map_[0].data();
      out->mask = static_cast<uint16_t>(dest & 0xFF);
      return true;
    case LogicalMode::kXApicCluster:
      out->cluster = logical_map_[(dest >> 4) & 0xF].data();
      out->mask = static_cast<uint16_t>(dest & 0xF);
      return true;
    case LogicalMode::kX2Apic: {
      // Cluster c holds x2APIC IDs 16c..16c+15, i.e. physical map slots.
      const uint32_t offset = (dest >> 16) * 16;
      if (offset > max_apic_id_) {
        out->cluster = nullptr;
        out->mask = 0;
        return true;
      }
      const uint32_t size = std::min<uint32_t>(max_apic_id_ - offset + 1, 16);
      out->cluster = phys_map_.data() + offset;
      out->mask = static_cast<uint16_t>(dest & (0xFFFFu >> (16 - size)));
      return true;
    }
    case LogicalMode::kMapDisabled:
      break;
  }
  return false;
}

}  // namespace apicv::irq
