// The AMD AVIC model: what the hardware does with the physical and logical APIC ID tables on a
// guest ICR write (accelerated IPI, doorbell, AVIC_INCOMPLETE_IPI #VMEXIT), and what KVM's SVM code
// does around it (IsRunning on vcpu_load/put/blocking, avic_incomplete_ipi_interception,
// avic_kick_target_vcpus_fast and the kvm_for_each_vcpu slow kick, unaccelerated-access exits).
// AMD APM vol. 2 15.29 (15.29.2 backing page, 15.29.3 physical/logical APIC ID tables, 15.29.3.1
// virtual IPI delivery, 15.29.4 doorbell, 15.29.5 #VMEXITs); spec §7.1-§7.3. Linux svm/avic.c.
//
// The Avic holds no Lapic. The backing page is the Lapic's register page; whatever the hardware
// would do to another vCPU's page or pCPU goes through AvicVcpuOps, implemented by the Vm.
//
// Threading: handle_icr_write() models the hardware on the source vCPU's pCPU and may run on every
// vCPU thread at once; vcpu_load/put/blocking run on the vCPU's own thread; init_vcpu() runs
// before any vCPU runs. Table entries are atomics (sequentially consistent: the sender writes IRR
// then reads IsRunning; the target clears IsRunning then checks IRR before blocking, so one of
// the two always sees the other). Statistics are relaxed atomic counters. No allocation after
// construction, no lock.
//
// Not supported: the IOMMU side (GA log, IRTE updates, the GA_LOG_INTR bit is only kept in the
// cached entry), nested AVIC, the x2AVIC 4K extension beyond its table size (kX2AvicExt: 0xFFF
// max index and a 12-bit exit index, used by the scaling benchmark), SEV backing-page encryption,
// the Family 17h IPI-virtualisation erratum (model it with enable_ipiv = false).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "irq/apic_view.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

// enum avic_ipi_failure_cause (exit_info_2[63:32] of AVIC_INCOMPLETE_IPI, APM 15.29.5.1).
enum class AvicIpiFailureCause : uint32_t {
  kInvalidIntType = 0,
  kTargetNotRunning = 1,
  kInvalidTarget = 2,
  kInvalidBackingPage = 3,
  kInvalidIpiVector = 4,
};
inline constexpr int kNrAvicIpiFailureCauses = 5;

// Physical APIC ID table entry (APM 15.29.3, Table 15-24).
inline constexpr uint64_t kAvicPhysicalIdEntryHostPhysicalIdMask = 0xFFFull;            // bits 11:0
inline constexpr uint64_t kAvicPhysicalIdEntryBackingPageMask = 0x000FFFFFFFFFF000ull;  // 51:12
inline constexpr uint64_t kAvicPhysicalIdEntryGaLogIntr = 1ull << 61;  // software-only (KVM)
inline constexpr uint64_t kAvicPhysicalIdEntryIsRunning = 1ull << 62;
inline constexpr uint64_t kAvicPhysicalIdEntryValid = 1ull << 63;

// Logical APIC ID table entry (APM 15.29.3, Table 15-25).
inline constexpr uint32_t kAvicLogicalIdEntryGuestPhysicalIdMask = 0xFF;  // bits 7:0
inline constexpr uint32_t kAvicLogicalIdEntryValid = 1u << 31;
// An 8-bit xAPIC logical destination indexes at most entry (0xF << 2) + 3.
inline constexpr uint32_t kAvicLogicalIdTableEntries = 64;

// Which table size the VMCB advertises (AVIC_PHYSICAL_MAX_INDEX).
enum class AvicTableMode : uint8_t {
  kXApic,      // AVIC_MAX_PHYSICAL_ID 0xFE (0xFF is the xAPIC broadcast)
  kX2Avic,     // X2AVIC_MAX_PHYSICAL_ID 0x1FF
  kX2AvicExt,  // 0xFFF (x2AVIC 4K extension; only the size is modelled)
};

// --avic-kick: the current fast path with slow fallback, or always kvm_for_each_vcpu.
enum class AvicKickMode : uint8_t { kFast, kSlow };

struct AvicConfig {
  AvicTableMode table = AvicTableMode::kX2Avic;
  AvicKickMode kick = AvicKickMode::kFast;
  // KVM's enable_ipiv. Off: IsRunning is never written to the hardware table, so every IPI to
  // another vCPU exits with TARGET_NOT_RUNNING (KVM forces this on Family 17h, erratum 1235).
  bool enable_ipiv = true;
  trace::TraceSink* trace = nullptr;  // may be null
};

// What the hardware and KVM do to other vCPUs, implemented by the Vm. Called from any vCPU thread;
// must not block and must not call back into the Avic.
struct AvicVcpuOps {
  virtual ~AvicVcpuOps() = default;
  // The hardware sets vector in the target's backing page IRR (Lapic::post + irr_pending).
  virtual void set_irr(int vcpu, uint8_t vector) = 0;
  // Doorbell to the pCPU running `vcpu` (MSR_AMD64_SVM_AVIC_DOORBELL); the Vm skips its own CPU.
  virtual void ring_doorbell(int vcpu) = 0;
  // kvm_vcpu_wake_up(): the target is not in guest mode (halted or preempted).
  virtual void wake(int vcpu) = 0;
  // KVM_REQ_EVENT + kvm_vcpu_kick(): the target's APICv is inactive, inject in software.
  virtual void request_event_and_kick(int vcpu) = 0;
  // vcpu->mode == IN_GUEST_MODE (acquire).
  virtual bool in_guest_mode(int vcpu) = 0;
  // vcpu->arch.apic->apicv_active.
  virtual bool apicv_active(int vcpu) = 0;
  virtual const irq::ApicView& view(int vcpu) = 0;
};

// Result of one guest ICR write as the hardware handles it.
struct AvicIcrResult {
  bool exit = false;  // AVIC_INCOMPLETE_IPI #VMEXIT
  AvicIpiFailureCause cause = AvicIpiFailureCause::kInvalidIntType;
  uint32_t index = 0;    // exit_info_2 low bits: table index (see Avic::handle_icr_write)
  uint32_t targets = 0;  // backing pages whose IRR was set
  uint32_t doorbells = 0;

  uint64_t exit_info_1(uint32_t icrl, uint32_t icrh) const {
    return (static_cast<uint64_t>(icrh) << 32) | icrl;
  }
  uint64_t exit_info_2() const { return (static_cast<uint64_t>(cause) << 32) | index; }
};

// What the Vm must do after avic_incomplete_ipi_interception().
enum class AvicIncompleteIpiAction : uint8_t {
  kNone,              // TARGET_NOT_RUNNING: targets were kicked here
  kWriteIcrNodecode,  // INVALID_INT_TYPE/TARGET with ICR.BUSY set: kvm_apic_write_nodecode(ICR)
  kSendIpi,           // INVALID_INT_TYPE/TARGET: kvm_apic_send_ipi(icrl, icrh), full emulation
  kWarnBackingPage,   // INVALID_BACKING_PAGE: KVM WARNs; nothing to do
  kIgnoredVector,     // INVALID_IPI_VECTOR: dropped, as by real hardware
  kUnhandledCause,    // unknown cause: KVM's vcpu_unimpl(), no action
};

// How the AVIC hardware handles one guest access to the xAPIC page (APM vol. 2 15.29.3.1, table
// "AVIC Handling of Guest Accesses to the APIC Backing Page").
enum class AvicAccess : uint8_t {
  kAccelerated,  // read from / written to the backing page, no exit
  kTrap,         // written to the backing page, then AVIC_UNACCELERATED_ACCESS (trap)
  kFault,        // AVIC_UNACCELERATED_ACCESS before the access (fault: KVM emulates it)
};

// Decoded AVIC_UNACCELERATED_ACCESS exit (APM 15.29.5.2).
struct AvicUnacceleratedAccess {
  uint32_t offset = 0;  // exit_info_1 & 0xFF0
  bool write = false;   // exit_info_1 bit 32
  bool trap = false;    // trap (write already done) vs fault (instruction must be emulated)
};

struct AvicStats {
  uint64_t accelerated_ipis = 0;  // ICR writes completed without an exit
  uint64_t doorbells = 0;         // hardware doorbells and KVM kick doorbells
  uint64_t wakes = 0;
  uint64_t event_kicks = 0;  // KVM_REQ_EVENT + kick (APICv inactive target)
  std::array<uint64_t, kNrAvicIpiFailureCauses + 1> incomplete_ipi{};  // by cause; last = other
  uint64_t fast_hits = 0;       // avic_kick_target_vcpus_fast handled the exit
  uint64_t slow_fallbacks = 0;  // the fast path declined (kFast mode)
  uint64_t slow_kicks = 0;      // kvm_for_each_vcpu walks (both modes)
  uint64_t vcpus_examined = 0;  // candidate vCPUs looked at by fast + slow kicks
  uint64_t kicks = 0;           // avic_kick_vcpu calls
  uint64_t warn_dest_index_mismatch = 0;
  uint64_t warn_invalid_logical_entry = 0;
};

class Avic {
 public:
  // `nr_vcpus` vCPU slots, indexed 0..nr_vcpus-1 (KVM's vcpu_idx). Throws std::invalid_argument
  // for nr_vcpus outside 1..4096.
  Avic(const AvicConfig& config, int nr_vcpus);
  Avic(const Avic&) = delete;
  Avic& operator=(const Avic&) = delete;

  const AvicConfig& config() const { return config_; }
  // Sink of the per-delivery tracepoints (kvm_apicv_accept_irq, kvm_avic_doorbell), which the
  // Vm's device-trace switch controls; starts as config().trace. Set before vCPUs run.
  // May run while other threads deliver through the AVIC: published atomically.
  void set_device_trace(trace::TraceSink* sink) {
    dev_trace_.store(sink, std::memory_order_release);
  }
  int nr_vcpus() const { return nr_vcpus_; }
  // Largest physical APIC ID table index (VMCB AVIC_PHYSICAL_MAX_INDEX).
  uint32_t max_physical_id() const { return max_physical_id_; }
  // Mask applied to exit_info_2 for the table index (0x1FF; 0xFFF with kX2AvicExt).
  uint32_t exit_index_mask() const;

  // avic_init_backing_page(): binds vCPU slot `vcpu` to guest physical APIC ID `vcpu_id` and makes
  // its table entry valid with the backing page address. Returns false when vcpu_id exceeds
  // max_physical_id() (PHYSICAL_ID_TOO_BIG: the caller sets the inhibit; the vCPU gets no entry)
  // or the slot is out of range or already bound to another id.
  bool init_vcpu(int vcpu, uint32_t vcpu_id, uint64_t backing_page_pa = 0);

  // __avic_vcpu_load: host APIC ID + IsRunning into the entry (IsRunning only with enable_ipiv).
  void vcpu_load(int vcpu, uint32_t host_apic_id);
  // __avic_vcpu_put: IsRunning cleared, host APIC ID kept.
  void vcpu_put(int vcpu);
  // avic_vcpu_blocking: clears IsRunning BEFORE the vCPU blocks and marks GA_LOG_INTR in the cached
  // entry; after this returns the caller must re-check pending interrupts, then block.
  void vcpu_blocking(int vcpu);
  // avic_vcpu_unblocking: the vCPU runs again on `host_apic_id`.
  void vcpu_unblocking(int vcpu, uint32_t host_apic_id) { vcpu_load(vcpu, host_apic_id); }
  bool is_running(int vcpu) const;

  // Raw table entries as the hardware reads them (0 beyond the table).
  uint64_t physical_id_entry(uint32_t apic_id) const;
  uint32_t logical_id_entry(uint32_t index) const;
  // KVM's cached entry of a vCPU (keeps host id / GA_LOG_INTR even when the table has IsRunning=0).
  uint64_t cached_physical_id_entry(int vcpu) const;

  // avic_get_logical_id_entry(): the logical table index an xAPIC LDR/DFR selects, or -1 (x2APIC
  // mode, LDR zero or not exactly one bit, cluster 0xF).
  static int logical_id_index(const irq::ApicView& view);
  // avic_handle_ldr_update / avic_handle_dfr_update: invalidate the vCPU's old logical entry and
  // write the one its current LDR/DFR select (none in x2APIC mode: x2AVIC has no logical table).
  void update_logical_id(int vcpu, const irq::ApicView& view);
  // Rebuilds the whole logical table from views (index = vCPU slot).
  void rebuild_logical_table(std::span<const irq::ApicView> views);

  // The hardware on a guest ICR write by `src` (APM 15.29.3.1). Only fixed, edge-triggered IPIs
  // are accelerated (else INVALID_INT_TYPE); vectors 0-15 exit with INVALID_IPI_VECTOR; every
  // destination must have a valid entry (else INVALID_TARGET, no IRR touched). Each target's IRR
  // is set; running targets get a doorbell (none for the source itself), and if any target is not
  // running the write exits with TARGET_NOT_RUNNING and the index of the first such target:
  // physical destination -> its physical APIC ID; xAPIC logical -> its logical table index;
  // x2APIC logical and shorthand/broadcast -> its physical APIC ID. Shorthand self sets the
  // source's own IRR; all-including/excluding-self and broadcast destinations go to every valid
  // physical table entry. `src_x2apic` selects the ICR format (dest = icrh vs icrh[31:24]).
  AvicIcrResult handle_icr_write(int src, uint32_t icrl, uint32_t icrh, bool src_x2apic,
                                 AvicVcpuOps& ops);

  // KVM's avic_incomplete_ipi_interception(): traces kvm_avic_incomplete_ipi, then by cause:
  // 0/2 -> the Vm emulates the IPI, 1 -> avic_kick_target_vcpus, 3 -> warn, 4 -> ignored.
  AvicIncompleteIpiAction avic_incomplete_ipi_interception(int src, uint32_t icrl, uint32_t icrh,
                                                           uint32_t cause, uint32_t index,
                                                           AvicVcpuOps& ops);
  AvicIncompleteIpiAction avic_incomplete_ipi_interception(int src, uint64_t exit_info_1,
                                                           uint64_t exit_info_2, AvicVcpuOps& ops);

  // avic_kick_target_vcpus(): the fast path (unless --avic-kick slow), else every vCPU through
  // irq::MatchDest. When the fast path declines, kvm_avic_kick_vcpu_slowpath is traced before the
  // walk (the tracepoint came with the fast path; --avic-kick slow models the kernel before both,
  // so it never traces it).
  void avic_kick_target_vcpus(int src, uint32_t icrl, uint32_t icrh, uint32_t index,
                              AvicVcpuOps& ops);
  // The current fast path (spec §7.3). Returns true if it handled the kick: physical destinations
  // are the vCPU whose id is the destination (O(1)); xAPIC logical reads the logical table for
  // each destination bit; x2APIC logical computes (cluster << 4) + bit. Declines shorthands,
  // broadcasts and a physical destination that differs from the exit index.
  bool avic_kick_target_vcpus_fast(int src, uint32_t icrl, uint32_t icrh, uint32_t index,
                                   AvicVcpuOps& ops);
  // The slow path: kvm_for_each_vcpu + kvm_apic_match_dest, each match kicked.
  void avic_kick_target_vcpus_slow(int src, uint32_t icrl, uint32_t icrh, AvicVcpuOps& ops);
  // avic_kick_vcpu -> svm_complete_interrupt_delivery: APICv inactive -> KVM_REQ_EVENT + kick;
  // otherwise kvm_apicv_accept_irq (vcpu_id, ICR delivery mode, trigger, vector of `icrl`), then in
  // guest mode -> doorbell (avic_ring_doorbell: kvm_avic_doorbell unless the target's pCPU is the
  // sender `src`'s), else kvm_vcpu_wake_up.
  void avic_kick_vcpu(int src, int vcpu, uint32_t icrl, AvicVcpuOps& ops);
  // avic_ring_doorbell() as KVM's software paths call it: the doorbell to `vcpu`'s pCPU, traced
  // (vcpu_id, host APIC ID) unless that pCPU is the sender's (`src`; -1: a host thread).
  void ring_doorbell(int src, int vcpu, AvicVcpuOps& ops);

  // AVIC_UNACCELERATED_ACCESS: decodes the exit and traces kvm_avic_unaccelerated_access (trap =
  // is_trap_offset(), as KVM decides it, whatever the access). The Vm then calls
  // kvm_apic_write_nodecode for traps (writes only) or emulates the instruction for faults; on a
  // LDR/DFR trap it must also call update_logical_id() (ApicvVm rebuilds the logical table with
  // the APIC map instead).
  AvicUnacceleratedAccess avic_unaccelerated_access_interception(int vcpu, uint64_t exit_info_1,
                                                                 uint64_t exit_info_2);
  // Trap-type registers (APM 15.29.5.2 / spec §7.1): ID, EOI, RRR, LDR, DFR, SPIV, ESR, ICR, the
  // LVTs (timer, thermal, PMC, LINT0, LINT1, error), TMICT, TDCR. Other offsets fault.
  static bool is_trap_offset(uint32_t offset);
  // The hardware's decision for an xAPIC MMIO access of `len` bytes at page offset `offset`.
  // Reads: every register KVM's trap list names, plus LVR, TPR, APR, PPR, ISR, TMR, IRR and ICR2,
  // come from the backing page; TMCCT (a live count) and offsets holding no register fault.
  // Writes: TPR and ICR2 are accelerated; ICR low is the IPI path (handle_icr_write, reported
  // here as kAccelerated); EOI is accelerated unless the highest in-service vector is
  // level-triggered (`eoi_level`: its TMR bit), then it traps; the other trap-list registers
  // trap; everything else (LVR, APR, PPR, ISR, TMR, IRR, TMCCT, no register) faults. A write
  // that is not one aligned dword faults too (the model's choice: the page is only defined in
  // whole 32-bit registers).
  static AvicAccess xapic_access(uint32_t offset, unsigned len, bool write, bool eoi_level);
  // EOI writes: the hardware completes an edge-triggered EOI in the backing page (clears the ISR
  // bit, re-evaluates) without any exit, so KVM's ack notifiers never run for it; only EOIs of
  // level-triggered vectors (TMR set) trap. This is why PIT reinjection must inhibit AVIC.
  static constexpr bool eoi_accelerated(bool level_triggered) { return !level_triggered; }

  AvicStats stats() const;
  void reset_stats();

 private:
  struct alignas(64) VcpuSlot {
    uint32_t apic_id = UINT32_MAX;  // guest physical APIC ID (= vcpu_id) or unbound
    bool in_table = false;          // has a physical table entry (id <= max_physical_id)
    std::atomic<uint64_t> cached_entry{0};
    std::atomic<int32_t> logical_index{-1};
  };

  // A destination decoded for the hardware walk.
  struct Dest;
  Dest decode_dest(int src, uint32_t icrl, uint32_t icrh, bool src_x2apic, AvicVcpuOps& ops) const;
  template <typename Fn>
  bool for_each_target(const Dest& d, Fn&& fn) const;

  int vcpu_by_id(uint32_t id) const { return id < id_to_vcpu_size_ ? id_to_vcpu_[id] : -1; }
  void kick_vcpu_by_physical_id(int src, uint32_t id, uint32_t icrl, AvicVcpuOps& ops);
  uint32_t host_apic_id(int vcpu) const;
  uint32_t trace_vcpu_id(int vcpu) const;

  AvicConfig config_;
  std::atomic<trace::TraceSink*> dev_trace_{nullptr};
  int nr_vcpus_;
  uint32_t max_physical_id_;
  std::unique_ptr<std::atomic<uint64_t>[]> physical_table_;  // max_physical_id_ + 1 entries
  std::array<std::atomic<uint32_t>, kAvicLogicalIdTableEntries> logical_table_{};
  std::unique_ptr<VcpuSlot[]> slots_;
  // kvm_get_vcpu_by_id(): vcpu_id -> slot for vCPUs with a table entry, -1 if none. vCPUs whose
  // id is too big have none, but then AVIC is inhibited and no incomplete-IPI exit happens.
  std::unique_ptr<int32_t[]> id_to_vcpu_;
  uint32_t id_to_vcpu_size_ = 0;

  struct Counters {
    std::atomic<uint64_t> accelerated_ipis{0}, doorbells{0}, wakes{0}, event_kicks{0};
    std::array<std::atomic<uint64_t>, kNrAvicIpiFailureCauses + 1> incomplete_ipi{};
    std::atomic<uint64_t> fast_hits{0}, slow_fallbacks{0}, slow_kicks{0}, vcpus_examined{0};
    std::atomic<uint64_t> kicks{0}, warn_dest_index_mismatch{0}, warn_invalid_logical_entry{0};
  };
  mutable Counters counters_;
};

}  // namespace apicv::virt
