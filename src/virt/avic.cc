// AVIC hardware walk and KVM's SVM handlers (APM vol. 2 15.29; spec §7.1-§7.3).
#include "virt/avic.h"

#include <algorithm>
#include <bit>
#include <stdexcept>
#include <string>

#include "irq/match_dest.h"
#include "trace/kvm_events.h"
#include "x86/apic_defs.h"

namespace apicv::virt {

namespace {

constexpr uint32_t kNoTarget = UINT32_MAX;

uint32_t MaxPhysicalId(AvicTableMode mode) {
  switch (mode) {
    case AvicTableMode::kXApic:
      return 0xFE;
    case AvicTableMode::kX2Avic:
      return 0x1FF;
    case AvicTableMode::kX2AvicExt:
      return 0xFFF;
  }
  return 0xFE;
}

x86::Shorthand ShorthandOf(uint32_t icrl) {
  return static_cast<x86::Shorthand>((icrl >> x86::kIcrShorthandShift) & 3);
}

// Relaxed counter bump: statistics only, never used for synchronisation.
void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

struct Avic::Dest {
  enum Kind : uint8_t { kSelf, kBroadcast, kPhysical, kLogicalTable, kX2Logical } kind = kSelf;
  uint32_t id = 0;               // kPhysical: destination physical APIC ID
  uint32_t base = 0;             // logical: first table index (xAPIC) or first physical ID (x2APIC)
  uint32_t bitmap = 0;           // logical: destination bits relative to base
  uint32_t skip_id = kNoTarget;  // broadcast all-excluding-self: the source's own APIC ID
};

Avic::Avic(const AvicConfig& config, int nr_vcpus)
    : config_(config),
      dev_trace_(config.trace),
      nr_vcpus_(nr_vcpus),
      max_physical_id_(MaxPhysicalId(config.table)) {
  if (nr_vcpus < 1 || nr_vcpus > 4096) {
    throw std::invalid_argument("Avic: unsupported vCPU count " + std::to_string(nr_vcpus));
  }
  physical_table_ = std::make_unique<std::atomic<uint64_t>[]>(max_physical_id_ + 1);
  slots_ = std::make_unique<VcpuSlot[]>(static_cast<size_t>(nr_vcpus));
  id_to_vcpu_size_ = max_physical_id_ + 1;
  id_to_vcpu_ = std::make_unique<int32_t[]>(id_to_vcpu_size_);
  for (uint32_t i = 0; i < id_to_vcpu_size_; ++i) id_to_vcpu_[i] = -1;
}

uint32_t Avic::exit_index_mask() const {
  return config_.table == AvicTableMode::kX2AvicExt ? 0xFFF : 0x1FF;
}

bool Avic::init_vcpu(int vcpu, uint32_t vcpu_id, uint64_t backing_page_pa) {
  if (vcpu < 0 || vcpu >= nr_vcpus_) return false;
  VcpuSlot& s = slots_[vcpu];
  if (s.apic_id != UINT32_MAX && s.apic_id != vcpu_id) return false;
  s.apic_id = vcpu_id;
  // PHYSICAL_ID_TOO_BIG: KVM leaves such a vCPU out of the table and inhibits AVIC.
  if (vcpu_id > max_physical_id_) return false;
  if (id_to_vcpu_[vcpu_id] != -1 && id_to_vcpu_[vcpu_id] != vcpu) return false;
  s.in_table = true;
  id_to_vcpu_[vcpu_id] = vcpu;
  const uint64_t entry =
      (backing_page_pa & kAvicPhysicalIdEntryBackingPageMask) | kAvicPhysicalIdEntryValid;
  s.cached_entry.store(entry, std::memory_order_seq_cst);
  physical_table_[vcpu_id].store(entry, std::memory_order_seq_cst);
  return true;
}

void Avic::vcpu_load(int vcpu, uint32_t host_apic_id) {
  if (vcpu < 0 || vcpu >= nr_vcpus_ || !slots_[vcpu].in_table) return;
  VcpuSlot& s = slots_[vcpu];
  uint64_t e = s.cached_entry.load(std::memory_order_relaxed);
  e &= ~(kAvicPhysicalIdEntryHostPhysicalIdMask | kAvicPhysicalIdEntryGaLogIntr);
  e |= (host_apic_id & kAvicPhysicalIdEntryHostPhysicalIdMask) | kAvicPhysicalIdEntryIsRunning;
  s.cached_entry.store(e, std::memory_order_seq_cst);
  // Without IPI virtualisation the hardware must never target the vCPU directly: always exit.
  const uint64_t hw = config_.enable_ipiv ? e : (e & ~kAvicPhysicalIdEntryIsRunning);
  physical_table_[s.apic_id].store(hw & ~kAvicPhysicalIdEntryGaLogIntr, std::memory_order_seq_cst);
}

void Avic::vcpu_put(int vcpu) {
  if (vcpu < 0 || vcpu >= nr_vcpus_ || !slots_[vcpu].in_table) return;
  VcpuSlot& s = slots_[vcpu];
  const uint64_t e =
      s.cached_entry.load(std::memory_order_relaxed) & ~kAvicPhysicalIdEntryIsRunning;
  s.cached_entry.store(e, std::memory_order_seq_cst);
  physical_table_[s.apic_id].store(e & ~kAvicPhysicalIdEntryGaLogIntr, std::memory_order_seq_cst);
}

void Avic::vcpu_blocking(int vcpu) {
  if (vcpu < 0 || vcpu >= nr_vcpus_ || !slots_[vcpu].in_table) return;
  vcpu_put(vcpu);
  // GA_LOG_INTR asks the IOMMU to log device interrupts for a blocked vCPU; software-only here.
  slots_[vcpu].cached_entry.fetch_or(kAvicPhysicalIdEntryGaLogIntr, std::memory_order_seq_cst);
}

bool Avic::is_running(int vcpu) const {
  if (vcpu < 0 || vcpu >= nr_vcpus_ || !slots_[vcpu].in_table) return false;
  return physical_table_[slots_[vcpu].apic_id].load(std::memory_order_seq_cst) &
         kAvicPhysicalIdEntryIsRunning;
}

uint64_t Avic::physical_id_entry(uint32_t apic_id) const {
  return apic_id <= max_physical_id_ ? physical_table_[apic_id].load(std::memory_order_seq_cst) : 0;
}

uint32_t Avic::logical_id_entry(uint32_t index) const {
  return index < kAvicLogicalIdTableEntries ? logical_table_[index].load(std::memory_order_acquire)
                                            : 0;
}

uint64_t Avic::cached_physical_id_entry(int vcpu) const {
  if (vcpu < 0 || vcpu >= nr_vcpus_) return 0;
  return slots_[vcpu].cached_entry.load(std::memory_order_seq_cst);
}

int Avic::logical_id_index(const irq::ApicView& view) {
  if (!view.present || view.x2apic) return -1;
  const uint32_t ldr = view.ldr >> 24;
  if (view.dfr == x86::kDfrFlat) return std::has_single_bit(ldr) ? std::countr_zero(ldr) : -1;
  const uint32_t cluster = ldr >> 4;
  const uint32_t bits = ldr & 0xF;
  // Cluster 0xF is the xAPIC cluster broadcast; a member needs exactly one bit in the low nibble.
  if (cluster >= 0xF || !std::has_single_bit(bits)) return -1;
  return static_cast<int>((cluster << 2) + static_cast<uint32_t>(std::countr_zero(bits)));
}

void Avic::update_logical_id(int vcpu, const irq::ApicView& view) {
  if (vcpu < 0 || vcpu >= nr_vcpus_) return;
  VcpuSlot& s = slots_[vcpu];
  const int old_index = s.logical_index.load(std::memory_order_relaxed);
  const int new_index = s.in_table ? logical_id_index(view) : -1;
  if (old_index >= 0) {
    // Only drop the entry if it still points at this vCPU (another vCPU may have taken the slot).
    const uint32_t e = logical_table_[old_index].load(std::memory_order_relaxed);
    if ((e & kAvicLogicalIdEntryValid) &&
        (e & kAvicLogicalIdEntryGuestPhysicalIdMask) == (s.apic_id & 0xFF)) {
      logical_table_[old_index].store(0, std::memory_order_release);
    }
  }
  if (new_index >= 0) {
    logical_table_[new_index].store(
        (s.apic_id & kAvicLogicalIdEntryGuestPhysicalIdMask) | kAvicLogicalIdEntryValid,
        std::memory_order_release);
  }
  s.logical_index.store(new_index, std::memory_order_relaxed);
}

void Avic::rebuild_logical_table(std::span<const irq::ApicView> views) {
  for (auto& e : logical_table_) e.store(0, std::memory_order_release);
  for (int v = 0; v < nr_vcpus_; ++v) slots_[v].logical_index.store(-1, std::memory_order_relaxed);
  const int n = std::min<int>(nr_vcpus_, static_cast<int>(views.size()));
  for (int v = 0; v < n; ++v) update_logical_id(v, views[static_cast<size_t>(v)]);
}

Avic::Dest Avic::decode_dest(int src, uint32_t icrl, uint32_t icrh, bool src_x2apic,
                             AvicVcpuOps& ops) const {
  Dest d;
  const uint32_t src_id = slots_[src].apic_id;
  switch (ShorthandOf(icrl)) {
    case x86::Shorthand::kSelf:
      d.kind = Dest::kSelf;
      return d;
    case x86::Shorthand::kAllIncludingSelf:
      d.kind = Dest::kBroadcast;
      return d;
    case x86::Shorthand::kAllExcludingSelf:
      d.kind = Dest::kBroadcast;
      d.skip_id = src_id;
      return d;
    case x86::Shorthand::kNone:
      break;
  }
  const uint32_t dest = src_x2apic ? icrh : (icrh >> 24);
  const uint32_t broadcast = src_x2apic ? x86::kX2ApicBroadcast : x86::kXApicBroadcast;
  if (dest == broadcast) {
    d.kind = Dest::kBroadcast;
    return d;
  }
  if (!(icrl & x86::kIcrDestLogical)) {
    d.kind = Dest::kPhysical;
    d.id = dest;
  } else if (src_x2apic) {
    // x2AVIC has no logical table: cluster dest[31:16] holds physical IDs cluster*16 + bit.
    d.kind = Dest::kX2Logical;
    d.base = (dest >> 16) << 4;
    d.bitmap = dest & 0xFFFF;
  } else if (ops.view(src).dfr == x86::kDfrFlat) {
    d.kind = Dest::kLogicalTable;
    d.base = 0;
    d.bitmap = dest & 0xFF;
  } else {
    d.kind = Dest::kLogicalTable;
    d.base = (dest >> 4) << 2;
    d.bitmap = dest & 0xF;
  }
  return d;
}

// Calls fn(physical_id, exit_index) for each destination; physical_id is kNoTarget for a logical
// table entry that is not valid. Stops and returns false as soon as fn returns false.
template <typename Fn>
bool Avic::for_each_target(const Dest& d, Fn&& fn) const {
  switch (d.kind) {
    case Dest::kSelf:
      return true;  // handled by the caller, no table walk
    case Dest::kBroadcast:
      for (uint32_t id = 0; id <= max_physical_id_; ++id) {
        if (id == d.skip_id) continue;
        if (!(physical_table_[id].load(std::memory_order_seq_cst) & kAvicPhysicalIdEntryValid)) {
          continue;
        }
        if (!fn(id, id)) return false;
      }
      return true;
    case Dest::kPhysical:
      return fn(d.id, d.id);
    case Dest::kLogicalTable:
      for (uint32_t bits = d.bitmap; bits != 0; bits &= bits - 1) {
        const uint32_t index = d.base + static_cast<uint32_t>(std::countr_zero(bits));
        const uint32_t e = logical_id_entry(index);
        const uint32_t id = (e & kAvicLogicalIdEntryValid)
                                ? (e & kAvicLogicalIdEntryGuestPhysicalIdMask)
                                : kNoTarget;
        if (!fn(id, index)) return false;
      }
      return true;
    case Dest::kX2Logical:
      for (uint32_t bits = d.bitmap; bits != 0; bits &= bits - 1) {
        const uint32_t id = d.base + static_cast<uint32_t>(std::countr_zero(bits));
        if (!fn(id, id)) return false;
      }
      return true;
  }
  return true;
}

AvicIcrResult Avic::handle_icr_write(int src, uint32_t icrl, uint32_t icrh, bool src_x2apic,
                                     AvicVcpuOps& ops) {
  AvicIcrResult r;
  auto exit_with = [&](AvicIpiFailureCause cause, uint32_t index) {
    r.exit = true;
    r.cause = cause;
    r.index = index & exit_index_mask();
    return r;
  };
  if (src < 0 || src >= nr_vcpus_) return exit_with(AvicIpiFailureCause::kInvalidTarget, 0);

  const auto mode = static_cast<x86::DeliveryMode>((icrl >> x86::kIcrDeliveryModeShift) & 7);
  if (mode != x86::DeliveryMode::kFixed || (icrl & x86::kIcrTriggerLevel)) {
    return exit_with(AvicIpiFailureCause::kInvalidIntType, 0);
  }
  const uint8_t vector = static_cast<uint8_t>(icrl & x86::kIcrVectorMask);
  if (vector < 16) return exit_with(AvicIpiFailureCause::kInvalidIpiVector, 0);

  const Dest d = decode_dest(src, icrl, icrh, src_x2apic, ops);
  if (d.kind == Dest::kSelf) {
    ops.set_irr(src, vector);  // the source's own backing page; it is running, no doorbell
    r.targets = 1;
    Bump(counters_.accelerated_ipis);
    return r;
  }

  // Pass 1: every destination must be a valid entry before any IRR is written.
  uint32_t bad_index = 0;
  const bool all_valid = for_each_target(d, [&](uint32_t id, uint32_t index) {
    if (id == kNoTarget || id > max_physical_id_ ||
        !(physical_table_[id].load(std::memory_order_seq_cst) & kAvicPhysicalIdEntryValid)) {
      bad_index = index;
      return false;
    }
    return true;
  });
  if (!all_valid) return exit_with(AvicIpiFailureCause::kInvalidTarget, bad_index);

  // Pass 2: IRR first, then IsRunning (seq_cst pairs with vcpu_put/vcpu_blocking).
  bool not_running = false;
  uint32_t first_not_running = 0;
  for_each_target(d, [&](uint32_t id, uint32_t index) {
    // Re-checked: a logical entry may have been rewritten by its owner since pass 1.
    const int target = vcpu_by_id(id);
    if (target < 0) return true;
    ops.set_irr(target, vector);
    ++r.targets;
    if (target == src) return true;
    const uint64_t e = physical_table_[id].load(std::memory_order_seq_cst);
    if (e & kAvicPhysicalIdEntryIsRunning) {
      ops.ring_doorbell(target);
      ++r.doorbells;
    } else if (!not_running) {
      not_running = true;
      first_not_running = index;
    }
    return true;
  });
  if (r.doorbells) Bump(counters_.doorbells, r.doorbells);
  if (not_running) return exit_with(AvicIpiFailureCause::kTargetNotRunning, first_not_running);
  Bump(counters_.accelerated_ipis);
  return r;
}

uint32_t Avic::trace_vcpu_id(int vcpu) const {
  if (vcpu < 0 || vcpu >= nr_vcpus_) return 0;
  const uint32_t id = slots_[vcpu].apic_id;
  return id == UINT32_MAX ? static_cast<uint32_t>(vcpu) : id;
}

AvicIncompleteIpiAction Avic::avic_incomplete_ipi_interception(int src, uint64_t exit_info_1,
                                                               uint64_t exit_info_2,
                                                               AvicVcpuOps& ops) {
  return avic_incomplete_ipi_interception(
      src, static_cast<uint32_t>(exit_info_1), static_cast<uint32_t>(exit_info_1 >> 32),
      static_cast<uint32_t>(exit_info_2 >> 32),
      static_cast<uint32_t>(exit_info_2) & exit_index_mask(), ops);
}

AvicIncompleteIpiAction Avic::avic_incomplete_ipi_interception(int src, uint32_t icrl,
                                                               uint32_t icrh, uint32_t cause,
                                                               uint32_t index, AvicVcpuOps& ops) {
  index &= exit_index_mask();
  trace::trace_kvm_avic_incomplete_ipi(config_.trace, trace_vcpu_id(src), icrh, icrl, cause, index);
  Bump(counters_.incomplete_ipi[cause < kNrAvicIpiFailureCauses ? cause : kNrAvicIpiFailureCauses]);
  if (src < 0 || src >= nr_vcpus_) return AvicIncompleteIpiAction::kUnhandledCause;
  switch (static_cast<AvicIpiFailureCause>(cause)) {
    case AvicIpiFailureCause::kInvalidIntType:
    case AvicIpiFailureCause::kInvalidTarget:
      // The hardware did nothing; KVM emulates the whole IPI. A still-set BUSY bit means the ICR
      // write itself was not completed, so it is replayed as a register write.
      return (icrl & x86::kIcrBusy) ? AvicIncompleteIpiAction::kWriteIcrNodecode
                                    : AvicIncompleteIpiAction::kSendIpi;
    case AvicIpiFailureCause::kTargetNotRunning:
      // The hardware already set the IRR bits; only the kicks are left.
      avic_kick_target_vcpus(src, icrl, icrh, index, ops);
      return AvicIncompleteIpiAction::kNone;
    case AvicIpiFailureCause::kInvalidBackingPage:
      return AvicIncompleteIpiAction::kWarnBackingPage;
    case AvicIpiFailureCause::kInvalidIpiVector:
      return AvicIncompleteIpiAction::kIgnoredVector;
  }
  return AvicIncompleteIpiAction::kUnhandledCause;
}

void Avic::avic_kick_target_vcpus(int src, uint32_t icrl, uint32_t icrh, uint32_t index,
                                  AvicVcpuOps& ops) {
  if (config_.kick == AvicKickMode::kFast) {
    if (avic_kick_target_vcpus_fast(src, icrl, icrh, index, ops)) {
      Bump(counters_.fast_hits);
      return;
    }
    Bump(counters_.slow_fallbacks);
    // avic_kick_target_vcpus(): traced once, before the kvm_for_each_vcpu walk.
    trace::trace_kvm_avic_kick_vcpu_slowpath(config_.trace, icrh, icrl, index);
  }
  avic_kick_target_vcpus_slow(src, icrl, icrh, ops);
}

uint32_t Avic::host_apic_id(int vcpu) const {
  if (vcpu < 0 || vcpu >= nr_vcpus_) return UINT32_MAX;
  return static_cast<uint32_t>(slots_[vcpu].cached_entry.load(std::memory_order_relaxed) &
                               kAvicPhysicalIdEntryHostPhysicalIdMask);
}

void Avic::ring_doorbell(int src, int vcpu, AvicVcpuOps& ops) {
  ops.ring_doorbell(vcpu);
  Bump(counters_.doorbells);
  // avic_ring_doorbell(): no doorbell (and no trace) to the CPU KVM is running on.
  const uint32_t target_cpu = host_apic_id(vcpu);
  if (src >= 0 && host_apic_id(src) == target_cpu) return;
  trace::trace_kvm_avic_doorbell(dev_trace_.load(std::memory_order_acquire), trace_vcpu_id(vcpu),
                                 target_cpu);
}

void Avic::avic_kick_vcpu(int src, int vcpu, uint32_t icrl, AvicVcpuOps& ops) {
  Bump(counters_.kicks);
  if (!ops.apicv_active(vcpu)) {
    ops.request_event_and_kick(vcpu);
    Bump(counters_.event_kicks);
    return;
  }
  // svm_complete_interrupt_delivery(): the interrupt goes through AVIC, traced before the
  // doorbell or wake-up (delivery mode and trigger as the ICR holds them).
  trace::trace_kvm_apicv_accept_irq(
      dev_trace_.load(std::memory_order_acquire), trace_vcpu_id(vcpu),
      static_cast<uint16_t>(icrl & (7u << x86::kIcrDeliveryModeShift)),
      (icrl & x86::kIcrTriggerLevel) ? 1 : 0, static_cast<uint8_t>(icrl & 0xFF));
  if (ops.in_guest_mode(vcpu)) {
    ring_doorbell(src, vcpu, ops);
  } else {
    ops.wake(vcpu);
    Bump(counters_.wakes);
  }
}

void Avic::kick_vcpu_by_physical_id(int src, uint32_t id, uint32_t icrl, AvicVcpuOps& ops) {
  Bump(counters_.vcpus_examined);
  const int v = vcpu_by_id(id);
  if (v >= 0) avic_kick_vcpu(src, v, icrl, ops);
}

bool Avic::avic_kick_target_vcpus_fast(int src, uint32_t icrl, uint32_t icrh, uint32_t index,
                                       AvicVcpuOps& ops) {
  if (src < 0 || src >= nr_vcpus_) return false;
  if (ShorthandOf(icrl) != x86::Shorthand::kNone) return false;
  const irq::ApicView& source = ops.view(src);
  const uint32_t dest = source.x2apic ? icrh : (icrh >> 24);
  const uint32_t broadcast = source.x2apic ? x86::kX2ApicBroadcast : x86::kXApicBroadcast;
  // Broadcasts reach every vCPU: no shortcut over the walk.
  if (dest == broadcast) return false;

  if (!(icrl & x86::kIcrDestLogical)) {
    // The exit index is the target's physical ID; APIC ID == vcpu_id holds because AVIC is
    // inhibited otherwise (APIC_ID_MODIFIED, PHYSICAL_ID_ALIASED).
    if (dest != index) {
      Bump(counters_.warn_dest_index_mismatch);
      return false;
    }
    kick_vcpu_by_physical_id(src, dest, icrl, ops);
    return true;
  }

  uint32_t bitmap, base;
  if (source.x2apic) {
    bitmap = dest & 0xFFFF;
    base = (dest >> 16) << 4;
  } else if (source.dfr == x86::kDfrFlat) {
    bitmap = dest & 0xFF;
    base = 0;
  } else {
    bitmap = dest & 0xF;
    base = (dest >> 4) << 2;
  }
  for (; bitmap != 0; bitmap &= bitmap - 1) {
    const uint32_t bit = static_cast<uint32_t>(std::countr_zero(bitmap));
    if (source.x2apic) {
      kick_vcpu_by_physical_id(src, base + bit, icrl, ops);
      continue;
    }
    // One logical ID per vCPU holds because AVIC is inhibited otherwise (LOGICAL_ID_ALIASED).
    const uint32_t e = logical_id_entry(base + bit);
    if (!(e & kAvicLogicalIdEntryValid)) {
      Bump(counters_.warn_invalid_logical_entry);
      continue;
    }
    kick_vcpu_by_physical_id(src, e & kAvicLogicalIdEntryGuestPhysicalIdMask, icrl, ops);
  }
  return true;
}

void Avic::avic_kick_target_vcpus_slow(int src, uint32_t icrl, uint32_t icrh, AvicVcpuOps& ops) {
  Bump(counters_.slow_kicks);
  const irq::ApicView* source = (src >= 0 && src < nr_vcpus_) ? &ops.view(src) : nullptr;
  const x86::Shorthand shorthand = ShorthandOf(icrl);
  const bool logical = icrl & x86::kIcrDestLogical;
  for (int v = 0; v < nr_vcpus_; ++v) {
    const irq::ApicView& target = ops.view(v);
    const uint32_t dest = target.x2apic ? icrh : (icrh >> 24);
    if (irq::MatchDest(target, v, source, src, shorthand, dest, logical))
      avic_kick_vcpu(src, v, icrl, ops);
  }
  Bump(counters_.vcpus_examined, static_cast<uint64_t>(nr_vcpus_));
}

bool Avic::is_trap_offset(uint32_t offset) {
  switch (offset) {
    case x86::kApicId:
    case x86::kApicEoi:
    case x86::kApicRrr:
    case x86::kApicLdr:
    case x86::kApicDfr:
    case x86::kApicSpiv:
    case x86::kApicEsr:
    case x86::kApicIcr:
    case x86::kApicLvtt:
    case x86::kApicLvtThmr:
    case x86::kApicLvtPc:
    case x86::kApicLvt0:
    case x86::kApicLvt1:
    case x86::kApicLvtErr:
    case x86::kApicTmict:
    case x86::kApicTdcr:
      return true;
    default:
      return false;
  }
}

AvicAccess Avic::xapic_access(uint32_t offset, unsigned len, bool write, bool eoi_level) {
  const uint32_t reg = offset & 0xFF0;
  const bool in_register_range = (reg >= x86::kApicIsr && reg < x86::kApicEsr) ||  // ISR, TMR, IRR
                                 (reg >= x86::kApicLvtt && reg <= x86::kApicTmict);
  if (!write) {
    switch (reg) {
      case x86::kApicId:
      case x86::kApicLvr:
      case x86::kApicTpr:
      case x86::kApicApr:
      case x86::kApicPpr:
      case x86::kApicEoi:
      case x86::kApicRrr:
      case x86::kApicLdr:
      case x86::kApicDfr:
      case x86::kApicSpiv:
      case x86::kApicEsr:
      case x86::kApicIcr:
      case x86::kApicIcr2:
      case x86::kApicTdcr:
        return AvicAccess::kAccelerated;
      default:
        return in_register_range ? AvicAccess::kAccelerated : AvicAccess::kFault;
    }
  }
  if (len != 4 || (offset & 0xF) != 0) return AvicAccess::kFault;
  switch (reg) {
    case x86::kApicTpr:
    case x86::kApicIcr2:
    case x86::kApicIcr:
      return AvicAccess::kAccelerated;
    case x86::kApicEoi:
      return eoi_accelerated(eoi_level) ? AvicAccess::kAccelerated : AvicAccess::kTrap;
    default:
      return is_trap_offset(reg) ? AvicAccess::kTrap : AvicAccess::kFault;
  }
}

AvicUnacceleratedAccess Avic::avic_unaccelerated_access_interception(int vcpu, uint64_t exit_info_1,
                                                                     uint64_t exit_info_2) {
  AvicUnacceleratedAccess a;
  a.offset = static_cast<uint32_t>(exit_info_1) & 0xFF0;
  a.write = (exit_info_1 >> 32) & 1;
  a.trap = is_trap_offset(a.offset);
  trace::trace_kvm_avic_unaccelerated_access(config_.trace, trace_vcpu_id(vcpu), a.offset, a.trap,
                                             a.write, static_cast<uint32_t>(exit_info_2));
  return a;
}

AvicStats Avic::stats() const {
  auto ld = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  AvicStats s;
  s.accelerated_ipis = ld(counters_.accelerated_ipis);
  s.doorbells = ld(counters_.doorbells);
  s.wakes = ld(counters_.wakes);
  s.event_kicks = ld(counters_.event_kicks);
  for (size_t i = 0; i < s.incomplete_ipi.size(); ++i) {
    s.incomplete_ipi[i] = ld(counters_.incomplete_ipi[i]);
  }
  s.fast_hits = ld(counters_.fast_hits);
  s.slow_fallbacks = ld(counters_.slow_fallbacks);
  s.slow_kicks = ld(counters_.slow_kicks);
  s.vcpus_examined = ld(counters_.vcpus_examined);
  s.kicks = ld(counters_.kicks);
  s.warn_dest_index_mismatch = ld(counters_.warn_dest_index_mismatch);
  s.warn_invalid_logical_entry = ld(counters_.warn_invalid_logical_entry);
  return s;
}

void Avic::reset_stats() {
  auto z = [](std::atomic<uint64_t>& c) { c.store(0, std::memory_order_relaxed); };
  z(counters_.accelerated_ipis);
  z(counters_.doorbells);
  z(counters_.wakes);
  z(counters_.event_kicks);
  for (auto& c : counters_.incomplete_ipi) z(c);
  z(counters_.fast_hits);
  z(counters_.slow_fallbacks);
  z(counters_.slow_kicks);
  z(counters_.vcpus_examined);
  z(counters_.kicks);
  z(counters_.warn_dest_index_mismatch);
  z(counters_.warn_invalid_logical_entry);
}

}  // namespace apicv::virt
