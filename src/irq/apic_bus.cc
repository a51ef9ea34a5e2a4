// APIC bus delivery decisions (spec §6.6).
#include "irq/apic_bus.h"

#include <bit>

#include "irq/match_dest.h"

namespace apicv::irq {
namespace {

const ApicView* SourceOf(const x86::InterruptRequest& req, std::span<const ApicView> views) {
  if (req.source_vcpu < 0 || static_cast<size_t>(req.source_vcpu) >= views.size()) return nullptr;
  return &views[static_cast<size_t>(req.source_vcpu)];
}

// Index of the n-th (0-based) set bit of mask; mask has more than n bits set.
int NthSetBit(uint32_t mask, unsigned n) {
  for (unsigned i = 0; i < n; ++i) mask &= mask - 1;
  return std::countr_zero(mask);
}

}  // namespace

bool IsBroadcastDest(const x86::InterruptRequest& req, const ApicView* source, const ApicMap& map,
                     const RouteOptions& options) {
  if (options.x2apic_broadcast_quirk_disabled) {
    if (req.dest_id == x86::kXApicBroadcast && map.logical_mode() != LogicalMode::kX2Apic) {
      return true;
    }
    return req.dest_id == x86::kX2ApicBroadcast;
  }
  const bool x2apic_ipi = source != nullptr && source->x2apic;
  return req.dest_id == (x2apic_ipi ? x86::kX2ApicBroadcast : x86::kXApicBroadcast);
}

bool RouteFast(const x86::InterruptRequest& req, const ApicMap* map,
               std::span<const ApicView> views, const RouteOptions& options, TargetList& out) {
  out.clear();
  const ApicView* source = SourceOf(req, views);
  if (req.shorthand == x86::Shorthand::kSelf) {
    // A self IPI without a sender cannot be delivered (KVM_BUG_ON in KVM); report it handled.
    out.fast_path = true;
    if (source != nullptr) out.push_back(req.source_vcpu);
    out.matched = static_cast<int>(out.size());
    return true;
  }
  if (req.shorthand != x86::Shorthand::kNone) return false;
  // A map built for another vCPU set would name indices outside `views`: use the slow path.
  if (map == nullptr || !map->valid() || map->vcpu_count() != views.size()) return false;
  if (IsBroadcastDest(req, source, *map, options)) return false;

  if (!req.dest_logical) {
    const int32_t target = map->PhysicalLookup(req.dest_id);
    out.examined = 1;
    if (target != ApicMap::kNone) out.push_back(target);
  } else {
    ApicMap::LogicalDest dest;
    if (!map->GetLogicalDest(req.dest_id, &dest)) return false;
    const uint32_t mask = dest.mask;
    if (!IsLowestPriority(req)) {
      for (uint32_t m = mask; m != 0; m &= m - 1) {
        const int32_t target = dest.cluster[std::countr_zero(m)];
        ++out.examined;
        if (target != ApicMap::kNone) out.push_back(target);
      }
    } else if (options.vector_hashing) {
      if (mask != 0) {
        const int bit = NthSetBit(mask, req.vector % std::popcount(mask));
        out.examined = 1;
        if (dest.cluster[bit] == ApicMap::kNone) {
          // KVM drops the interrupt rather than falling back ("Disabled LAPIC found").
          out.disabled_lapic_found = true;
        } else {
          out.push_back(dest.cluster[bit]);
        }
      }
    } else {
      int32_t lowest = ApicMap::kNone;
      for (uint32_t m = mask; m != 0; m &= m - 1) {
        const int32_t target = dest.cluster[std::countr_zero(m)];
        ++out.examined;
        if (target == ApicMap::kNone) continue;
        // Ties keep the earlier slot, as KVM's strict "<" comparison does.
        if (lowest == ApicMap::kNone || views[target].arb_prio < views[lowest].arb_prio) {
          lowest = target;
        }
      }
      if (lowest != ApicMap::kNone) out.push_back(lowest);
    }
  }
  out.fast_path = true;
  out.matched = static_cast<int>(out.size());
  return true;
}

void RouteSlow(const x86::InterruptRequest& req, std::span<const ApicView> views,
               const RouteOptions& options, TargetList& out) {
  out.clear();
  out.reserve(views.size());
  const ApicView* source = SourceOf(req, views);
  const bool quirk_off = options.x2apic_broadcast_quirk_disabled;
  auto matches = [&](size_t i) {
    ++out.examined;
    const ApicView& v = views[i];
    return v.present && MatchDest(v, static_cast<int>(i), source, req.source_vcpu, req.shorthand,
                                  req.dest_id, req.dest_logical, quirk_off);
  };

  if (!IsLowestPriority(req)) {
    for (size_t i = 0; i < views.size(); ++i) {
      if (matches(i)) out.push_back(static_cast<int>(i));
    }
    if (!out.empty()) out.matched = static_cast<int>(out.size());
    return;
  }

  // Lowest priority: only software-enabled APICs compete.
  if (options.vector_hashing) {
    size_t candidates = 0;
    for (size_t i = 0; i < views.size(); ++i) {
      if (matches(i) && views[i].sw_enabled) ++candidates;
    }
    if (candidates == 0) return;
    size_t nth = req.vector % candidates;
    for (size_t i = 0; i < views.size(); ++i) {
      if (!matches(i) || !views[i].sw_enabled) continue;
      if (nth-- == 0) {
        out.push_back(static_cast<int>(i));
        break;
      }
    }
  } else {
    int lowest = -1;
    for (size_t i = 0; i < views.size(); ++i) {
      if (!matches(i) || !views[i].sw_enabled) continue;
      if (lowest < 0 || views[i].arb_prio < views[static_cast<size_t>(lowest)].arb_prio) {
        lowest = static_cast<int>(i);
      }
    }
    if (lowest >= 0) out.push_back(lowest);
  }
  if (!out.empty()) out.matched = 1;
}

int Route(const x86::InterruptRequest& in, const ApicMap* map, std::span<const ApicView> views,
          const RouteOptions& options, TargetList& out) {
  x86::InterruptRequest req = in;
  // A physical broadcast cannot be lowest priority; KVM rewrites only the delivery mode, so an
  // MSI redirection hint still selects lowest priority afterwards.
  bool downgraded = false;
  if (!req.dest_logical && req.dest_id == x86::kXApicBroadcast && IsLowestPriority(req)) {
    req.delivery_mode = x86::DeliveryMode::kFixed;
    downgraded = true;
  }
  if (!RouteFast(req, map, views, options, out)) RouteSlow(req, views, options, out);
  out.downgraded_to_fixed = downgraded;
  return out.matched;
}

}  // namespace apicv::irq
