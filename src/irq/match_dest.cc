// kvm_apic_match_dest() semantics (spec §6.5).
#include "irq/match_dest.h"

namespace apicv::irq {

uint32_t ApicMda(const ApicView& target, uint32_t dest, bool from_ipi, bool quirk_disabled) {
  if (!quirk_disabled && !from_ipi && dest == x86::kXApicBroadcast && target.x2apic) {
    return x86::kX2ApicBroadcast;
  }
  return dest;
}

bool IsApicBroadcast(const ApicView& target, uint32_t mda) {
  return mda == (target.x2apic ? x86::kX2ApicBroadcast : x86::kXApicBroadcast);
}

bool MatchPhysicalAddr(const ApicView& target, uint32_t mda) {
  if (IsApicBroadcast(target, mda)) return true;
  // An xAPIC-mode APIC whose vcpu_id is above 255 can only be reached by its x2APIC ID; only
  // destinations that do not fit in 8 bits are compared that way, so a rewritten xAPIC ID still
  // decides every 8-bit destination.
  if (target.x2apic || mda > 0xFF) return mda == target.x2apic_id();
  return mda == target.xapic_id;
}

bool MatchLogicalAddr(const ApicView& target, uint32_t mda) {
  if (IsApicBroadcast(target, mda)) return true;
  if (target.x2apic) {
    const uint32_t ldr = target.effective_ldr();
    return (ldr >> 16) == (mda >> 16) && (ldr & mda & 0xFFFF) != 0;
  }
  const uint32_t logical_id = target.ldr >> 24;
  switch (target.dfr) {
    case x86::kDfrFlat:
      return (logical_id & mda) != 0;
    case kDfrCluster:
      return (logical_id >> 4) == (mda >> 4) && (logical_id & mda & 0xF) != 0;
    default:
      // DFR[27:0] always reads as ones; a model field other than 0000b/1111b is undefined.
      return false;
  }
}

bool MatchDest(const ApicView& target, int target_index, const ApicView* source, int source_index,
               x86::Shorthand shorthand, uint32_t dest, bool dest_logical,
               bool x2apic_broadcast_quirk_disabled) {
  const bool from_ipi = source != nullptr;
  switch (shorthand) {
    case x86::Shorthand::kNone: {
      const uint32_t mda = ApicMda(target, dest, from_ipi, x2apic_broadcast_quirk_disabled);
      return dest_logical ? MatchLogicalAddr(target, mda) : MatchPhysicalAddr(target, mda);
    }
    case x86::Shorthand::kSelf:
      return from_ipi && target_index == source_index;
    case x86::Shorthand::kAllIncludingSelf:
      return true;
    case x86::Shorthand::kAllExcludingSelf:
      return !from_ipi || target_index != source_index;
  }
  return false;
}

}  // namespace apicv::irq
