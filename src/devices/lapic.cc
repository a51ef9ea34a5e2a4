// Local APIC register file, delivery, priorities and mode changes. Intel SDM vol. 3A ch. 11; KVM
// lapic.c behaviour as summarised in spec §9. See lapic.h for the list of unsupported features.
#include "devices/lapic.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace apicv {
namespace {

using namespace x86;

// LVR: version 0x14 (integrated APIC), max LVT entry 5 (6 LVTs: no CMCI), bit 24 = directed EOI.
constexpr uint32_t kLvrVersion = 0x14;
constexpr uint32_t kLvrMaxLvtShift = 16;
constexpr uint32_t kLvrDirectedEoi = 1u << 24;
constexpr uint32_t kNrLvt = 6;

// Writable bits per LVT (KVM apic_lvt_mask). Delivery status is stored as written, as KVM does.
constexpr uint32_t kLvtBaseMask = kLvtMasked | kLvtDeliveryPending | kLvtVectorMask;
constexpr uint32_t kLvtModeMask = kLvtBaseMask | kLvtDeliveryModeMask;
constexpr uint32_t kLvtLintMask =
    kLvtModeMask | kLvtInputPolarity | kLvtRemoteIrr | kLvtTriggerLevel;

constexpr uint32_t kSpivWriteMask = 0x3FF;
constexpr uint32_t kLdrXApicMask = 0xFF000000;
constexpr uint32_t kDfrReservedOnes = 0x0FFFFFFF;
constexpr uint32_t kIcr2XApicMask = 0xFF000000;
constexpr uint32_t kTdcrMask = 0xB;
constexpr uint32_t kLastRegister = 0x3F0;

constexpr uint32_t kLvtOffsets[kNrLvt] = {kApicLvtt, kApicLvtThmr, kApicLvtPc,
                                          kApicLvt0, kApicLvt1,    kApicLvtErr};

constexpr size_t Idx(uint32_t offset) {
  return offset >> 4;
}

bool IsVectorBank(uint32_t offset, uint32_t base) {
  return offset >= base && offset < base + 0x80;
}

ApicMode ModeOf(uint64_t base) {
  const bool en = base & kApicBaseEnable;
  const bool extd = base & kApicBaseExtd;
  if (!en) return extd ? ApicMode::kInvalid : ApicMode::kDisabled;
  return extd ? ApicMode::kX2Apic : ApicMode::kXApic;
}

LapicTimer::Params TimerParams(const LapicConfig& c) {
  LapicTimer::Params p;
  p.bus_cycle_ns = c.bus_cycle_ns;
  p.min_periodic_ns = c.min_periodic_ns;
  p.tsc_khz = c.tsc_khz;
  return p;
}

// Configuration comes from the host (command line, VM setup), not the guest: refuse what cannot be
// modelled instead of silently changing it.
const LapicConfig& Validate(const LapicConfig& c) {
  if (c.maxphyaddr < 32 || c.maxphyaddr > 52) {
    throw std::invalid_argument("LapicConfig: maxphyaddr " + std::to_string(c.maxphyaddr) +
                                " unsupported (must be 32..52)");
  }
  if (c.bus_cycle_ns == 0) {
    throw std::invalid_argument("LapicConfig: bus_cycle_ns 0 unsupported (must be >= 1)");
  }
  if (c.directed_eoi && !c.x2apic_supported) {
    // KVM only advertises directed EOI (LVR[24]) to guests that have x2APIC.
    throw std::invalid_argument(
        "LapicConfig: directed_eoi without x2apic_supported is unsupported");
  }
  return c;
}

}  // namespace

Lapic::Lapic(uint32_t vcpu_id, bool bsp, const LapicConfig& config)
    : vcpu_id_(vcpu_id),
      bsp_(bsp),
      config_(Validate(config)),
      timer_mode_mask_(config_.tsc_deadline_supported ? kLvtTimerModeMask
                                                      : (1u << kLvtTimerModeShift)),
      timer_(TimerParams(config_)) {
  reset(/*init_only=*/false);
}

ApicMode Lapic::mode() const {
  return ModeOf(apic_base_);
}

// ---- Identity and reset ----

void Lapic::set_xapic_id(uint32_t id) {
  regs_[Idx(kApicId)] = (id & 0xFF) << 24;
}

void Lapic::set_x2apic_id() {
  regs_[Idx(kApicId)] = vcpu_id_;
  regs_[Idx(kApicLdr)] = X2ApicLdr(vcpu_id_);
}

LapicIdentity Lapic::identity() const {
  LapicIdentity id;
  id.vcpu_id = vcpu_id_;
  id.hw_enabled = hw_enabled();
  id.x2apic = x2apic_mode();
  id.sw_enabled = sw_enabled();
  id.xapic_id =
      id.x2apic ? static_cast<uint8_t>(vcpu_id_) : static_cast<uint8_t>(regs_[Idx(kApicId)] >> 24);
  id.x2apic_id = vcpu_id_;
  id.ldr = id.x2apic ? X2ApicLdr(vcpu_id_) : regs_[Idx(kApicLdr)];
  id.dfr = regs_[Idx(kApicDfr)];
  return id;
}

LapicOutput Lapic::reset(bool init_only) {
  LapicOutput out;
  const uint64_t timer_before = timer_.deadline_ns();
  if (!init_only) {
    apply_apic_base(kApicDefaultBase | kApicBaseEnable | (bsp_ ? kApicBaseBsp : 0), &out);
    // RESET sets the xAPIC ID even if the APIC was already enabled.
    set_xapic_id(vcpu_id_);
  }
  regs_[Idx(kApicLvr)] = kLvrVersion | ((kNrLvt - 1) << kLvrMaxLvtShift) |
                         (config_.directed_eoi ? kLvrDirectedEoi : 0);
  for (uint32_t off : kLvtOffsets) regs_[Idx(off)] = kLvtMasked;
  timer_.reset();  // LVTT is one-shot (mode bits 0) again
  if (bsp_ && config_.lint0_reenabled_quirk) {
    regs_[Idx(kApicLvt0)] = static_cast<uint32_t>(DeliveryMode::kExtInt) << 8;
  }
  regs_[Idx(kApicDfr)] = kDfrFlat;
  if (sw_enabled()) out.map_dirty = true;
  regs_[Idx(kApicSpiv)] = 0xFF;  // software-disabled; no LVT masking pass (already masked)
  regs_[Idx(kApicTpr)] = 0;
  if (!x2apic_mode()) regs_[Idx(kApicLdr)] = 0;
  regs_[Idx(kApicEsr)] = 0;
  esr_pending_ = 0;
  error_event_ = false;
  regs_[Idx(kApicIcr)] = 0;
  regs_[Idx(kApicIcr2)] = 0;
  irr_.reset();
  isr_.reset();
  tmr_.reset();
  // Anything posted before the reset is gone with the IRR it was meant for.
  for (auto& w : pir_) w.store(0, std::memory_order_relaxed);
  pir_on_.store(false, std::memory_order_release);
  // INIT (kvm_vcpu_reset(init_event)) drops queued NMIs; a SIPI latched before the INIT was
  // processed survives it (kvm_apic_accept_events() handles INIT, then SIPI). RESET drops all.
  nmi_queued_.store(0, std::memory_order_relaxed);
  if (!init_only) {
    init_pending_.store(false, std::memory_order_relaxed);
    sipi_pending_.store(false, std::memory_order_relaxed);
  }
  update_ppr();
  out.map_dirty = true;  // KVM recalculates the map after every reset
  note_timer(timer_before, &out);
  return out;
}

// ---- IA32_APIC_BASE ----

MsrAccess Lapic::set_apic_base(uint64_t value, bool host_initiated) {
  MsrAccess r;
  if (value == apic_base_) return r;
  uint64_t reserved = 0x2FFull | ~((1ull << config_.maxphyaddr) - 1);
  if (!config_.x2apic_supported) reserved |= kApicBaseExtd;
  const ApicMode from = mode();
  const ApicMode to = ModeOf(value);
  if ((value & reserved) != 0 || to == ApicMode::kInvalid) {
    r.gp = true;
    return r;
  }
  if (!host_initiated) {
    // SDM Figure 11-8: x2APIC can only be left through disabled; x2APIC is entered from xAPIC.
    if ((from == ApicMode::kX2Apic && to == ApicMode::kXApic) ||
        (from == ApicMode::kDisabled && to == ApicMode::kX2Apic)) {
      r.gp = true;
      return r;
    }
  }
  apply_apic_base(value, &r.out);
  return r;
}

void Lapic::apply_apic_base(uint64_t value, LapicOutput* out) {
  const uint64_t changed = apic_base_ ^ value;
  apic_base_ = value;
  if (changed & kApicBaseEnable) {
    if (value & kApicBaseEnable) set_xapic_id(vcpu_id_);
    out->map_dirty = true;
  }
  if (changed & kApicBaseExtd) {
    if (value & kApicBaseExtd) {
      set_x2apic_id();
    } else if (value & kApicBaseEnable) {
      set_xapic_id(vcpu_id_);
    }
    out->map_dirty = true;
  }
  if (changed & (kApicBaseEnable | kApicBaseExtd)) out->apicv_update = true;
  if ((value & kApicBaseEnable) && (value & kApicBaseAddrMask) != kApicDefaultBase) {
    out->base_modified = true;
  }
}

// ---- Priorities ----

uint32_t Lapic::compute_ppr() const {
  const uint32_t tpr = regs_[Idx(kApicTpr)] & 0xFF;
  const int isrv = isr_.highest();
  const uint32_t isr_class = isrv < 0 ? 0 : (static_cast<uint32_t>(isrv) & 0xF0);
  // SDM 11.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4] with PPR[3:0] = 0.
  return (tpr & 0xF0) >= isr_class ? tpr : isr_class;
}

bool Lapic::update_ppr() {
  const uint32_t old_ppr = regs_[Idx(kApicPpr)];
  const uint32_t new_ppr = compute_ppr();
  regs_[Idx(kApicPpr)] = new_ppr;
  return (new_ppr & 0xF0) < (old_ppr & 0xF0) && pending_deliverable() >= 0;
}

int Lapic::pending_deliverable() const {
  if (!hw_enabled()) return -1;
  const int v = irr_.highest();
  if (v < 0) return -1;
  if ((static_cast<uint32_t>(v) & 0xF0) <= regs_[Idx(kApicPpr)]) return -1;
  return v;
}

void Lapic::ack(uint8_t vector) {
  irr_.clear(vector);
  isr_.set(vector);
  update_ppr();
}

int Lapic::get_interrupt() {
  const int v = pending_deliverable();
  if (v >= 0) ack(static_cast<uint8_t>(v));
  return v;
}

void Lapic::set_tpr(uint32_t value, LapicOutput* out) {
  regs_[Idx(kApicTpr)] = value & 0xFF;
  if (update_ppr()) out->event = true;
}

bool Lapic::set_cr8(uint64_t cr8) {
  LapicOutput out;
  set_tpr(static_cast<uint32_t>(cr8 & 0xF) << 4, &out);
  return out.event;
}

void Lapic::do_eoi(LapicOutput* out) {
  const int v = isr_.highest();
  if (v < 0) {
    out->eoi_empty = true;  // nothing in service: no state change, no KVM_REQ_EVENT
    return;
  }
  const uint8_t vector = static_cast<uint8_t>(v);
  isr_.clear(vector);
  update_ppr();
  LapicEoi eoi;
  eoi.vector = vector;
  eoi.level_triggered = tmr_.test(vector);
  eoi.directed = regs_[Idx(kApicSpiv)] & kSpivDirectedEoi;
  out->eoi = eoi;
  out->event = true;
}

// ---- Delivery ----

void Lapic::record_error(uint32_t bits) {
  if (!config_.esr_sdm_mode) return;
  esr_pending_ |= bits;
  // SDM 11.5.3: a detected error raises the LVT error interrupt if it is unmasked. An error caused
  // by that delivery itself (an illegal LVTERR vector) is only recorded, never re-delivered.
  if (in_error_delivery_) return;
  in_error_delivery_ = true;
  if (local_deliver(kApicLvtErr)) error_event_ = true;
  in_error_delivery_ = false;
}

void Lapic::take_error_event(LapicOutput* out) {
  if (error_event_) out->event = true;
  error_event_ = false;
}

bool Lapic::accept_irq(const InterruptRequest& irq) {
  switch (irq.delivery_mode) {
    case DeliveryMode::kLowestPriority:
    case DeliveryMode::kFixed:
      if (irq.trigger_level && !irq.level) return false;  // level deassert carries nothing
      if (!hw_enabled() || !sw_enabled()) return false;
      if (config_.esr_sdm_mode && irq.vector < 16) {
        record_error(kEsrReceiveIllegalVector);
        return false;
      }
      irr_.set(irq.vector);
      tmr_.assign(irq.vector, irq.trigger_level);
      return true;
    case DeliveryMode::kNmi:
      post_nmi();
      return true;
    case DeliveryMode::kInit:
      if (irq.trigger_level && !irq.level) return false;  // INIT level de-assert
      post_init();
      return true;
    case DeliveryMode::kStartup:
      post_sipi(irq.vector);
      return true;
    case DeliveryMode::kSmi:         // SMM is unsupported
    case DeliveryMode::kRemoteRead:  // PV unhalt is unsupported
    case DeliveryMode::kExtInt:      // the vector comes from the PIC acknowledge, not the APIC
      return false;
  }
  return false;
}

void Lapic::post(uint8_t vector, bool level) {
  const int w = vector >> 5;
  const uint32_t bit = 1u << (vector & 31);
  // Trigger first, then the request bit, then ON: the owner that sees ON sees both.
  if (level) {
    pir_level_[w].fetch_or(bit, std::memory_order_relaxed);
  } else {
    pir_level_[w].fetch_and(~bit, std::memory_order_relaxed);
  }
  pir_[w].fetch_or(bit, std::memory_order_release);
  pir_on_.store(true, std::memory_order_release);
}

bool Lapic::sync_pir_to_irr() {
  if (!pir_on_.exchange(false, std::memory_order_acq_rel)) return false;
  const bool enabled = hw_enabled() && sw_enabled();
  uint32_t fresh = 0;
  for (int i = 0; i < ApicVectorSet::kWords; ++i) {
    // A plain load skips empty words without a locked instruction. A bit posted after this load
    // comes with a fresh ON (cleared above), so the next sync finds it.
    if (pir_[i].load(std::memory_order_relaxed) == 0) continue;
    uint32_t bits = pir_[i].exchange(0, std::memory_order_acq_rel);
    if (bits == 0) continue;
    const uint32_t level = pir_level_[i].load(std::memory_order_acquire);
    if (!enabled) continue;  // __apic_accept_irq's "APIC disabled" drop, made at fold time
    if (i == 0 && config_.esr_sdm_mode && (bits & 0xFFFF) != 0) {
      record_error(kEsrReceiveIllegalVector);
      bits &= ~0xFFFFu;
    }
    fresh |= irr_.or_word(i, bits);
    tmr_.merge_word(i, bits, level);
  }
  LapicOutput errors;
  take_error_event(&errors);
  return fresh != 0 || errors.event;
}

void Lapic::post_nmi() {
  int n = nmi_queued_.load(std::memory_order_relaxed);
  while (n < kMaxQueuedNmis &&
         !nmi_queued_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) {
  }
}

bool Lapic::take_nmi() {
  int n = nmi_queued_.load(std::memory_order_relaxed);
  while (n > 0 && !nmi_queued_.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) {
  }
  return n > 0;
}

void Lapic::post_sipi(uint8_t vector) {
  sipi_vector_.store(vector, std::memory_order_relaxed);
  sipi_pending_.store(true, std::memory_order_release);
}

bool Lapic::take_sipi(uint8_t* vector) {
  if (!sipi_pending_.exchange(false, std::memory_order_acq_rel)) return false;
  if (vector != nullptr) *vector = sipi_vector_.load(std::memory_order_relaxed);
  return true;
}

bool Lapic::local_deliver(uint32_t lvt_offset, bool mask_lvtpc_on_delivery) {
  if (std::find(std::begin(kLvtOffsets), std::end(kLvtOffsets), lvt_offset) ==
      std::end(kLvtOffsets)) {
    return false;
  }
  const uint32_t lvt = regs_[Idx(lvt_offset)];
  if (!hw_enabled() || (lvt & kLvtMasked)) return false;
  InterruptRequest irq;
  irq.vector = lvt & kLvtVectorMask;
  irq.delivery_mode = static_cast<DeliveryMode>((lvt & kLvtDeliveryModeMask) >> 8);
  irq.trigger_level = lvt & kLvtTriggerLevel;
  irq.level = true;
  irq.shorthand = Shorthand::kSelf;
  irq.source_vcpu = static_cast<int>(vcpu_id_);
  const bool accepted = accept_irq(irq);
  // Intel vPMU: mask LVTPC after each PMI so the guest handler re-arms it (spec §8).
  if (accepted && lvt_offset == kApicLvtPc && mask_lvtpc_on_delivery) {
    regs_[Idx(kApicLvtPc)] = lvt | kLvtMasked;
  }
  return accepted;
}

bool Lapic::accept_pic_intr() const {
  const uint32_t lvt0 = regs_[Idx(kApicLvt0)];
  if (!hw_enabled()) return true;
  return !(lvt0 & kLvtMasked) &&
         ((lvt0 & kLvtDeliveryModeMask) >> 8) == static_cast<uint32_t>(DeliveryMode::kExtInt);
}

// ---- Timer ----

void Lapic::note_timer(uint64_t before, LapicOutput* out) const {
  if (timer_.deadline_ns() != before) out->timer_changed = true;
}

bool Lapic::on_timer(uint64_t now_ns) {
  if (!timer_.due(now_ns)) return false;
  const bool accepted = local_deliver(kApicLvtt);
  timer_.expire(now_ns);
  return accepted;
}

LapicOutput Lapic::wrmsr_tsc_deadline(uint64_t tsc_value, uint64_t now_ns, uint64_t now_tsc) {
  LapicOutput out;
  if (!hw_enabled()) return out;
  const uint64_t before = timer_.deadline_ns();
  timer_.write_tsc_deadline(tsc_value, now_ns, now_tsc);
  if (timer_.due(now_ns) && on_timer(now_ns)) out.event = true;
  note_timer(before, &out);
  return out;
}

// ---- Register file ----

bool Lapic::readable(uint32_t offset) const {
  if (offset > kLastRegister || (offset & 0xF)) return false;
  if (IsVectorBank(offset, kApicIsr) || IsVectorBank(offset, kApicTmr) ||
      IsVectorBank(offset, kApicIrr)) {
    return true;
  }
  switch (offset) {
    case kApicId:
    case kApicLvr:
    case kApicTpr:
    case kApicPpr:
    case kApicLdr:
    case kApicSpiv:
    case kApicEsr:
    case kApicIcr:
    case kApicLvtt:
    case kApicLvtThmr:
    case kApicLvtPc:
    case kApicLvt0:
    case kApicLvt1:
    case kApicLvtErr:
    case kApicTmict:
    case kApicTmcct:
    case kApicTdcr:
      return true;
    case kApicApr:
    case kApicDfr:
    case kApicIcr2:
      return !x2apic_mode();  // no x2APIC MSR for these
    default:
      return false;
  }
}

uint32_t Lapic::reg(uint32_t offset) const {
  if (offset > kLastRegister || (offset & 0xF)) return 0;
  if (IsVectorBank(offset, kApicIsr)) return isr_.word((offset - kApicIsr) >> 4);
  if (IsVectorBank(offset, kApicTmr)) return tmr_.word((offset - kApicTmr) >> 4);
  if (IsVectorBank(offset, kApicIrr)) return irr_.word((offset - kApicIrr) >> 4);
  switch (offset) {
    case kApicTmict:
      return timer_.tmict();
    case kApicTdcr:
      return timer_.tdcr();
    case kApicTmcct:
    case kApicApr:
      return 0;
    default:
      return regs_[Idx(offset)];
  }
}

bool Lapic::read_register(uint32_t offset, uint64_t now_ns, uint32_t* value) {
  if (!readable(offset)) return false;
  if (offset == kApicTmcct) {
    *value = timer_.current_count(now_ns);  // 0 in TSC-deadline mode
  } else {
    *value = reg(offset);
  }
  return true;
}

uint32_t Lapic::lvt_write_mask(uint32_t offset) const {
  switch (offset) {
    case kApicLvtt:
      return kLvtBaseMask | timer_mode_mask_;
    case kApicLvtThmr:
    case kApicLvtPc:
      return kLvtModeMask;
    case kApicLvt0:
    case kApicLvt1:
      return kLvtLintMask;
    default:  // LVTERR
      return kLvtBaseMask;
  }
}

void Lapic::write_lvt(uint32_t offset, uint32_t value, LapicOutput* out) {
  // While software-disabled every LVT stays masked (SDM 11.4.7.2).
  if (!sw_enabled()) value |= kLvtMasked;
  value &= lvt_write_mask(offset);
  regs_[Idx(offset)] = value;
  if (offset == kApicLvtt) {
    timer_.set_mode((value & kLvtTimerModeMask) >> kLvtTimerModeShift);
  }
  (void)out;
}

void Lapic::set_spiv(uint32_t value, LapicOutput* out) {
  uint32_t mask = kSpivWriteMask;
  if (config_.directed_eoi) mask |= kSpivDirectedEoi;
  const bool was_enabled = sw_enabled();
  regs_[Idx(kApicSpiv)] = value & mask;
  const bool enabled = sw_enabled();
  if (was_enabled != enabled) out->map_dirty = true;
  if (enabled) {
    if (!was_enabled) out->event = true;
    return;
  }
  for (uint32_t off : kLvtOffsets) regs_[Idx(off)] |= kLvtMasked;
}

void Lapic::send_ipi(uint32_t icr_low, uint32_t icr_high, LapicOutput* out) {
  InterruptRequest irq = DecodeIcr(icr_low, icr_high, x2apic_mode(), static_cast<int>(vcpu_id_));
  if ((irq.delivery_mode == DeliveryMode::kFixed ||
       irq.delivery_mode == DeliveryMode::kLowestPriority) &&
      irq.vector < 16) {
    record_error(kEsrSendIllegalVector);
  }
  out->ipi = irq;
}

bool Lapic::reg_write(uint32_t offset, uint32_t value, uint64_t now_ns, LapicOutput* out) {
  const bool x2apic = x2apic_mode();
  switch (offset) {
    case kApicId:
      if (x2apic) return false;  // read-only in x2APIC mode
      set_xapic_id(value >> 24);
      out->map_dirty = true;
      out->xapic_id_written = true;
      return true;
    case kApicTpr:
      set_tpr(value, out);
      return true;
    case kApicEoi:
      do_eoi(out);  // the value written is ignored
      return true;
    case kApicLdr:
      if (x2apic) return false;
      regs_[Idx(kApicLdr)] = value & kLdrXApicMask;
      out->map_dirty = true;
      return true;
    case kApicDfr:
      if (x2apic) return false;
      regs_[Idx(kApicDfr)] = value | kDfrReservedOnes;
      out->map_dirty = true;
      return true;
    case kApicSpiv:
      set_spiv(value, out);
      return true;
    case kApicEsr:
      if (x2apic && value != 0) return false;
      // SDM 11.5.3: a write latches the errors seen since the previous write and clears them.
      if (config_.esr_sdm_mode) {
        regs_[Idx(kApicEsr)] = esr_pending_;
        esr_pending_ = 0;
      }
      return true;
    case kApicIcr: {
      // xAPIC only (the x2APIC 64-bit ICR is handled by wrmsr_x2apic). Delivery status reads idle.
      const uint32_t low = value & ~kIcrBusy;
      send_ipi(low, regs_[Idx(kApicIcr2)], out);
      regs_[Idx(kApicIcr)] = low;
      return true;
    }
    case kApicIcr2:
      if (x2apic) return false;
      regs_[Idx(kApicIcr2)] = value & kIcr2XApicMask;
      return true;
    case kApicLvtt:
    case kApicLvtThmr:
    case kApicLvtPc:
    case kApicLvt0:
    case kApicLvt1:
    case kApicLvtErr:
      write_lvt(offset, value, out);
      return true;
    case kApicTmict:
      timer_.write_tmict(value, now_ns);  // ignored in TSC-deadline mode
      return true;
    case kApicTdcr:
      timer_.write_tdcr(value & kTdcrMask, now_ns);
      return true;
    case kApicSelfIpi:
      if (!x2apic) return false;
      send_ipi((static_cast<uint32_t>(Shorthand::kSelf) << kIcrShorthandShift) |
                   (value & kIcrVectorMask),
               0, out);
      return true;
    default:
      return false;  // read-only, reserved or unknown
  }
}

// ---- MMIO ----

LapicOutput Lapic::mmio_read(uint32_t offset, void* data, unsigned len, uint64_t now_ns) {
  LapicOutput out;
  if (data == nullptr || len == 0 || len > 8) return out;
  auto* bytes = static_cast<uint8_t*>(data);
  if (!hw_enabled() || x2apic_mode()) {
    std::memset(bytes, 0xFF, len);  // KVM_X86_QUIRK_LAPIC_MMIO_HOLE
    return out;
  }
  std::memset(bytes, 0, len);
  if (offset >= kApicMmioSize) return out;
  const uint32_t align = offset & 0xF;
  if (align + len > 4 || (len != 1 && len != 2 && len != 4)) return out;
  const uint32_t reg_offset = offset & ~0xFu;
  uint32_t value = 0;
  if (!read_register(reg_offset, now_ns, &value)) {
    if (reg_offset != kApicEoi && reg_offset != kApicRrr) record_error(kEsrIllegalRegister);
    take_error_event(&out);
    return out;
  }
  for (unsigned i = 0; i < len; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * (align + i)));
  return out;
}

LapicOutput Lapic::mmio_write(uint32_t offset, const void* data, unsigned len, uint64_t now_ns) {
  LapicOutput out;
  if (data == nullptr || offset >= kApicMmioSize) return out;
  if (!hw_enabled() || x2apic_mode()) return out;
  if (len != 4 || (offset & 0xF)) return out;  // only aligned 32-bit writes take effect
  const auto* bytes = static_cast<const uint8_t*>(data);
  const uint32_t value = static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
                         static_cast<uint32_t>(bytes[2]) << 16 |
                         static_cast<uint32_t>(bytes[3]) << 24;
  const uint64_t before = timer_.deadline_ns();
  if (!reg_write(offset, value, now_ns, &out) && !readable(offset) && offset != kApicRrr) {
    record_error(kEsrIllegalRegister);
  }
  take_error_event(&out);
  note_timer(before, &out);
  return out;
}

// ---- x2APIC MSRs ----

MsrAccess Lapic::rdmsr_x2apic(uint32_t msr, uint64_t now_ns) {
  MsrAccess r;
  if (!x2apic_mode() || msr < kX2ApicMsrBase || msr > kX2ApicMsrEnd) {
    r.gp = true;
    return r;
  }
  const uint32_t offset = OffsetFromX2ApicMsr(msr);
  if (offset == kApicIcr) {
    r.value = regs_[Idx(kApicIcr)] | static_cast<uint64_t>(regs_[Idx(kApicIcr2)]) << 32;
    return r;
  }
  uint32_t value = 0;
  if (!read_register(offset, now_ns, &value)) {
    r.gp = true;
    return r;
  }
  r.value = value;
  return r;
}

MsrAccess Lapic::wrmsr_x2apic(uint32_t msr, uint64_t value, uint64_t now_ns) {
  MsrAccess r;
  if (!x2apic_mode() || msr < kX2ApicMsrBase || msr > kX2ApicMsrEnd) {
    r.gp = true;
    return r;
  }
  const uint32_t offset = OffsetFromX2ApicMsr(msr);
  const uint64_t before = timer_.deadline_ns();
  if (offset == kApicIcr) {
    if (value & kX2ApicIcrReserved) {
      r.gp = true;
      return r;
    }
    const uint32_t low = static_cast<uint32_t>(value) & ~kIcrBusy;
    const uint32_t high = static_cast<uint32_t>(value >> 32);
    send_ipi(low, high, &r.out);
    regs_[Idx(kApicIcr)] = low;
    regs_[Idx(kApicIcr2)] = high;
    take_error_event(&r.out);
    return r;
  }
  if ((value >> 32) != 0 || (offset == kApicSelfIpi && value > 0xFF) ||
      !reg_write(offset, static_cast<uint32_t>(value), now_ns, &r.out)) {
    r.gp = true;
    r.out = LapicOutput{};
    return r;
  }
  take_error_event(&r.out);
  note_timer(before, &r.out);
  return r;
}

}  // namespace apicv
