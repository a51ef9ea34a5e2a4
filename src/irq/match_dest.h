// The slow-path destination matcher: does one APIC accept a message with this shorthand and
// destination? KVM's kvm_apic_match_dest() and helpers (spec §6.5). Intel SDM vol. 3A 11.6.2
// (physical/logical destination mode, flat/cluster models, broadcast), 11.12.9 (x2APIC 0xFFFFFFFF
// broadcast), 11.6.1 (shorthands).
// Not supported: APIC bus arbitration and focus processor checks (KVM has neither).
#pragma once

#include <cstdint>

#include "irq/apic_view.h"
#include "x86/apic_defs.h"

namespace apicv::irq {

// KVM's kvm_apic_mda(): the message destination address as a given target sees it. An IOAPIC or
// MSI message (no source APIC) to 0xFF reaches x2APIC-mode targets as an x2APIC broadcast unless
// userspace disabled that quirk (KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK).
uint32_t ApicMda(const ApicView& target, uint32_t dest, bool from_ipi, bool quirk_disabled);

// Broadcast for the target's own mode: 0xFF (xAPIC) or 0xFFFFFFFF (x2APIC).
bool IsApicBroadcast(const ApicView& target, uint32_t mda);

// Physical destination: broadcast, else the x2APIC ID when the target is in x2APIC mode or the
// destination does not fit 8 bits (KVM's hotplug hack), else the xAPIC ID.
bool MatchPhysicalAddr(const ApicView& target, uint32_t mda);

// Logical destination: broadcast; x2APIC cluster (mda[31:16]) and 16-bit member mask; xAPIC flat
// (8-bit mask) or cluster (nibbles) by DFR; any other DFR value matches nothing.
bool MatchLogicalAddr(const ApicView& target, uint32_t mda);

// kvm_apic_match_dest(). `source` is the sending APIC (nullptr for IOAPIC/MSI messages) and
// source_index its vCPU index; targets are told apart from the source by index.
bool MatchDest(const ApicView& target, int target_index, const ApicView* source, int source_index,
               x86::Shorthand shorthand, uint32_t dest, bool dest_logical,
               bool x2apic_broadcast_quirk_disabled = false);

}  // namespace apicv::irq
