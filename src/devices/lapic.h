// The local APIC of one vCPU, xAPIC and x2APIC, as KVM emulates it (lapic.c; spec §9, §8, §4).
// Intel SDM vol. 3A ch. 11: 11.4 (IA32_APIC_BASE, modes), 11.4.6 (ID), 11.5 (LVT, ESR, timer),
// 11.6 (ICR), 11.8 (IRR/ISR/TMR, EOI), 11.8.3.1 (TPR/PPR), 11.8.6 (CR8), 11.9 (SPIV), 11.12
// (x2APIC).
//
// A deterministic state machine: time is passed in, side effects (IPIs to route, EOIs to broadcast,
// "rebuild the APIC map", "re-evaluate injection") are returned in a fixed-size LapicOutput.
//
// Threading: every method runs on the owning vCPU thread, except post(), post_nmi(), post_init(),
// post_sipi() and has_posted(), which any thread may call at any time (lock-free).
//
// Not supported (each documented where it matters):
// - LVT CMCI (6 LVTs, as KVM without MCG_CMCI_P): offset 0x2F0 is a reserved register.
// - SMI and remote-read delivery modes: accept_irq() returns false (not accepted).
// - Hyper-V SynIC auto-EOI vectors, PV EOI, the KVM "timer advance" tuning.
// - ESR error bits other than send/receive illegal vector and illegal register address (the
//   checksum/accept errors of the serial APIC bus do not exist here). In KVM parity mode (the
//   default) no error is ever reported and LVTERR never fires.
// - Focus processor checking (SPIV bit 9 is stored, ignored, as in KVM and modern CPUs).
// - MMIO accesses in x2APIC or hardware-disabled mode follow KVM_X86_QUIRK_LAPIC_MMIO_HOLE: reads
//   return all-ones, writes are dropped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>

#include "devices/lapic_timer.h"
#include "devices/lapic_vector_set.h"
#include "x86/apic_defs.h"
#include "x86/interrupt.h"

namespace apicv {

struct LapicConfig {
  bool x2apic_supported = true;        // CPUID.1:ECX.x2APIC; without it EXTD is a reserved bit
  bool tsc_deadline_supported = true;  // CPUID.1:ECX.TSC_Deadline; LVTT mode mask 3<<17 vs 1<<17
  bool directed_eoi = false;           // LVR bit 24 and SPIV bit 12 writable
  bool esr_sdm_mode = false;           // false: KVM parity, the ESR never reports errors
  bool lint0_reenabled_quirk = true;   // KVM_X86_QUIRK_LINT0_REENABLED: BSP LINT0 = ExtINT at reset
  uint64_t bus_cycle_ns = 1;           // KVM apic_bus_cycle_ns
  uint64_t min_periodic_ns = 200000;   // KVM min_timer_period_us (200 us)
  uint32_t maxphyaddr = 46;            // IA32_APIC_BASE bits >= this are reserved (32..52)
  uint64_t tsc_khz = 1000000;          // guest TSC rate for IA32_TSC_DEADLINE (0: never fires)
};

enum class ApicMode : uint8_t { kDisabled, kInvalid, kXApic, kX2Apic };

// An EOI to broadcast to IOAPICs and ack notifiers (PIT reinjection): KVM kvm_ioapic_send_eoi.
struct LapicEoi {
  uint8_t vector = 0;
  bool level_triggered = false;  // TMR bit of the vector at EOI time
  // SPIV[12] (directed EOI) set: level-triggered EOIs must not be broadcast to the IOAPIC, the
  // guest EOIs the IOAPIC itself. Ack notifiers still run (KVM runs them before this check).
  bool directed = false;
};

// Side effects of one call. Fixed size, never allocates.
struct LapicOutput {
  std::optional<x86::InterruptRequest> ipi;  // ICR or SELF_IPI write: route this message
  std::optional<LapicEoi> eoi;               // EOI with an in-service vector
  // An EOI write that found the ISR empty: architecturally a no-op, reported only because KVM's
  // apic_set_eoi() traces it (kvm_eoi with vector -1).
  bool eoi_empty = false;
  bool map_dirty = false;  // ID/LDR/DFR/SPIV-enable/base mode changed: rebuild ApicMap
  // The guest wrote the APIC ID register in xAPIC mode, changed or not (KVM's 2022
  // kvm_lapic_xapic_id_updated() hook ran on every such write).
  bool xapic_id_written = false;
  bool apicv_update = false;   // IA32_APIC_BASE EN or EXTD changed: KVM_REQ_APICV_UPDATE
  bool base_modified = false;  // enabled at a base other than 0xFEE00000 (APIC_BASE_MODIFIED)
  bool timer_changed = false;  // next_timer_deadline_ns() changed: re-arm the host timer
  bool event = false;          // something may now be injectable: KVM_REQ_EVENT
};

// Result of an MSR access. gp: the access faults, inject #GP; nothing changed.
struct MsrAccess {
  bool gp = false;
  uint64_t value = 0;  // for reads
  LapicOutput out;
};

// The routing layer's view of this APIC (inputs of kvm_recalculate_apic_map).
struct LapicIdentity {
  uint32_t vcpu_id = 0;
  bool hw_enabled = false;  // IA32_APIC_BASE.EN
  bool x2apic = false;      // x2APIC mode (EN and EXTD)
  bool sw_enabled = false;  // SPIV[8]
  uint8_t xapic_id = 0;     // APIC ID[31:24] in xAPIC/disabled mode
  uint32_t x2apic_id = 0;   // always vcpu_id
  uint32_t ldr = 0;         // x2APIC: derived logical ID; xAPIC: the full LDR register
  uint32_t dfr = 0;
};

class Lapic {
 public:
  // Constructs the APIC in its power-on state (RESET): xAPIC mode, enabled, base 0xFEE00000.
  // Throws std::invalid_argument ("... unsupported") for a configuration that cannot be modelled:
  // maxphyaddr outside 32..52, bus_cycle_ns 0, directed_eoi without x2apic_supported.
  Lapic(uint32_t vcpu_id, bool bsp, const LapicConfig& config);
  Lapic(const Lapic&) = delete;
  Lapic& operator=(const Lapic&) = delete;

  // ---- Guest register access ----
  // xAPIC MMIO, `offset` relative to the APIC base (0..0xFFF). Reads of 1, 2 or 4 bytes within the
  // first four bytes of a readable register return its bytes; other reads return zeros. Only
  // 4-byte writes at 16-byte aligned offsets take effect. In x2APIC or hardware-disabled mode,
  // reads return all-ones and writes are dropped.
  LapicOutput mmio_read(uint32_t offset, void* data, unsigned len, uint64_t now_ns);
  LapicOutput mmio_write(uint32_t offset, const void* data, unsigned len, uint64_t now_ns);

  // x2APIC MSRs 0x800..0x8FF. #GP unless in x2APIC mode; #GP on unknown, write-only (reads) and
  // read-only (writes) registers, on bits 63:32 set (except ICR), reserved ICR bits, SELF_IPI
  // values above 0xFF and a non-zero ESR write.
  MsrAccess rdmsr_x2apic(uint32_t msr, uint64_t now_ns);
  MsrAccess wrmsr_x2apic(uint32_t msr, uint64_t value, uint64_t now_ns);

  // IA32_APIC_BASE (MSR 0x1B). Reserved bits (0-7, 9, >= maxphyaddr, EXTD without x2APIC) and the
  // invalid mode (EN=0, EXTD=1) #GP; a guest may not go x2APIC->xAPIC or disabled->x2APIC, the host
  // (host_initiated, e.g. state restore) may. Writing the current value is a no-op.
  uint64_t get_apic_base() const { return apic_base_; }
  MsrAccess set_apic_base(uint64_t value, bool host_initiated);

  // IA32_TSC_DEADLINE (MSR 0x6E0). Reads 0 outside TSC-deadline mode or while the APIC is
  // hardware-disabled; writes there are ignored (KVM: !kvm_apic_present). A deadline at or before
  // now_tsc fires at once (the LVTT interrupt is accepted now).
  uint64_t rdmsr_tsc_deadline() const { return hw_enabled() ? timer_.tsc_deadline() : 0; }
  LapicOutput wrmsr_tsc_deadline(uint64_t tsc_value, uint64_t now_ns, uint64_t now_tsc);

  // CR8 <-> TPR[7:4] (SDM 11.8.6.1). set_cr8 returns true if PPR dropped below a pending IRR
  // (KVM_REQ_EVENT).
  uint64_t get_cr8() const { return (regs_[x86::kApicTpr >> 4] & 0xF0) >> 4; }
  bool set_cr8(uint64_t cr8);

  // ---- Timer ----
  // Absolute time of the next expiry, UINT64_MAX when disarmed.
  uint64_t next_timer_deadline_ns() const { return timer_.deadline_ns(); }
  // Fires the timer if due: delivers LVTT through local_deliver (masked: dropped), then one-shot
  // disarms, periodic re-arms without drift (missed periods coalesce into this one interrupt),
  // TSC-deadline clears IA32_TSC_DEADLINE. Returns true if an interrupt became pending.
  bool on_timer(uint64_t now_ns);

  // ---- Delivery ----
  // __apic_accept_irq: fixed/lowest-priority set IRR and the TMR bit per trigger mode unless the
  // APIC is not both hardware- and software-enabled or the message is a level deassert; NMI, INIT
  // (edge or level assert) and SIPI are latched; ExtINT is ignored (PIC path). Returns true if
  // accepted. In SDM ESR mode fixed/lowest vectors
  // below 16 are refused and set ESR "receive illegal vector" (raising LVTERR if unmasked; that
  // interrupt is left pending for the owner's next injection check).
  bool accept_irq(const x86::InterruptRequest& irq);

  // Lock-free posting (any thread): a posted-interrupt descriptor's PIR and ON bit.
  void post(uint8_t vector, bool level);
  bool has_posted() const { return pir_on_.load(std::memory_order_acquire); }
  // Owner: folds posted vectors into IRR/TMR. The "APIC enabled" check of __apic_accept_irq is made
  // here, at fold time: if the APIC is not hardware+software enabled the posted vectors are
  // discarded. Returns true if any IRR bit was newly set.
  bool sync_pir_to_irr();

  // The vCPU's NMI / INIT / SIPI latches, the only ones (KVM: vcpu->arch.nmi_queued and
  // apic->pending_events). post_* from any thread, take_* on the owner (consume one), the
  // queries anywhere. NMIs queue up to kMaxQueuedNmis (process_nmi(): one injected, one pending;
  // more collapse); INIT and SIPI are single latches, a later SIPI replacing the vector.
  static constexpr int kMaxQueuedNmis = 2;
  void post_nmi();
  void post_init() { init_pending_.store(true, std::memory_order_release); }
  void post_sipi(uint8_t vector);
  bool take_nmi();
  bool take_init() { return init_pending_.exchange(false, std::memory_order_acq_rel); }
  bool take_sipi(uint8_t* vector);
  bool nmi_pending() const { return nmi_queued_.load(std::memory_order_acquire) > 0; }
  bool init_pending() const { return init_pending_.load(std::memory_order_acquire); }
  bool sipi_pending() const { return sipi_pending_.load(std::memory_order_acquire); }

  // kvm_apic_local_deliver: if hardware-enabled and the LVT at `lvt_offset` is unmasked, accept an
  // interrupt with its vector, delivery mode and trigger. With mask_lvtpc_on_delivery (Intel vPMU)
  // an accepted LVTPC delivery sets LVTPC.MASK. Unknown offsets return false.
  bool local_deliver(uint32_t lvt_offset, bool mask_lvtpc_on_delivery = false);

  // kvm_apic_accept_pic_intr: APIC hardware-disabled, or LVT0 unmasked in ExtINT mode.
  bool accept_pic_intr() const;

  // ---- Injection (call sync_pir_to_irr() first if anything may have been posted) ----
  int highest_irr() const { return irr_.highest(); }
  int highest_isr() const { return isr_.highest(); }
  // kvm_apic_has_interrupt: highest IRR vector whose priority class is above PPR, -1 if none or
  // hardware-disabled.
  int pending_deliverable() const;
  // kvm_apic_ack_interrupt: IRR -> ISR, PPR update.
  void ack(uint8_t vector);
  // pending_deliverable() + ack(); -1 if none.
  int get_interrupt();
  uint32_t ppr() const { return regs_[x86::kApicPpr >> 4]; }

  // ---- State ----
  // kvm_lapic_reset. RESET (init_only=false) also sets IA32_APIC_BASE = 0xFEE00000|EN(|BSP) and the
  // xAPIC ID; INIT keeps the base MSR (and so the mode) and the ID. The output reports map/apicv
  // changes.
  LapicOutput reset(bool init_only);

  ApicMode mode() const;
  bool hw_enabled() const { return apic_base_ & x86::kApicBaseEnable; }
  bool sw_enabled() const { return regs_[x86::kApicSpiv >> 4] & x86::kSpivApicEnabled; }
  bool x2apic_mode() const { return mode() == ApicMode::kX2Apic; }
  LapicIdentity identity() const;
  uint32_t vcpu_id() const { return vcpu_id_; }

  // Raw 32-bit register at a 16-byte aligned offset (0..0x3F0) without side effects: the AVIC
  // backing-page view. TMCCT and PPR read their stored values (0 / last computed); unknown -> 0.
  uint32_t reg(uint32_t offset) const;

 private:
  bool read_register(uint32_t offset, uint64_t now_ns, uint32_t* value);
  bool readable(uint32_t offset) const;
  bool reg_write(uint32_t offset, uint32_t value, uint64_t now_ns, LapicOutput* out);
  void write_lvt(uint32_t offset, uint32_t value, LapicOutput* out);
  void send_ipi(uint32_t icr_low, uint32_t icr_high, LapicOutput* out);
  void set_spiv(uint32_t value, LapicOutput* out);
  void set_tpr(uint32_t value, LapicOutput* out);
  void do_eoi(LapicOutput* out);
  // Recomputes PPR; returns true if it dropped and an IRR vector is now deliverable.
  bool update_ppr();
  uint32_t compute_ppr() const;
  void set_xapic_id(uint32_t id);
  void set_x2apic_id();
  void apply_apic_base(uint64_t value, LapicOutput* out);
  void note_timer(uint64_t before, LapicOutput* out) const;
  void record_error(uint32_t bits);
  void take_error_event(LapicOutput* out);
  uint32_t lvt_write_mask(uint32_t offset) const;

  const uint32_t vcpu_id_;
  const bool bsp_;
  LapicConfig config_;
  uint32_t timer_mode_mask_;

  uint64_t apic_base_ = 0;
  std::array<uint32_t, 0x40> regs_{};  // register file, index = offset >> 4
  ApicVectorSet irr_, isr_, tmr_;
  uint32_t esr_pending_ = 0;  // SDM mode: errors seen since the last ESR write
  bool in_error_delivery_ = false;
  bool error_event_ = false;  // an LVTERR interrupt became pending inside a call
  LapicTimer timer_;

  // Posted state, written by other threads.
  std::array<std::atomic<uint32_t>, 8> pir_{};
  std::array<std::atomic<uint32_t>, 8> pir_level_{};
  std::atomic<bool> pir_on_{false};
  std::atomic<int> nmi_queued_{0};
  std::atomic<bool> init_pending_{false};
  std::atomic<bool> sipi_pending_{false};
  std::atomic<uint8_t> sipi_vector_{0};
};

}  // namespace apicv
