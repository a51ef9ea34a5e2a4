// The per-vCPU virtual PMU: architectural performance counters as a deterministic state machine.
// Intel SDM vol. 3B ch. 20 (architectural performance monitoring, version 2); AMD APM vol. 2 13.2
// (PerfEvtSel/PerfCtr, core extension). Behaviour follows KVM's pmu.c, vmx/pmu_intel.c, svm/pmu.c.
//
// Why apicv counts only a few events: this host exposes no hardware PMU to its guests, so the
// counters cannot be backed by perf events. apicv counts what the hypervisor itself can see:
//  - instructions retired = the instructions apicv emulates (each MSR, port, MMIO, CPUID and HLT
//    exit retires one), exactly the events KVM feeds through kvm_pmu_trigger_event();
//  - unhalted core / reference cycles = TSC ticks between two advance_cycles() calls. The guest's
//    core clock is modelled as running at the TSC rate.
// Every other event can be programmed and counts nothing (CPUID.0AH:EBX marks them unavailable).
//
// NOT supported: PEBS, DS area, LBR and Freeze_LBRs_On_PMI, PerfMon v3+ (AnyThread is reserved),
// v4 GLOBAL_STATUS_SET / freeze bits, RDPMC, KVM's PMU event filter, CMASK/INV/EDGE semantics on
// counted events (ignored, as KVM ignores them for emulated events), AMD PerfMonV2 (global
// MSRs 0xC0000300..), TSX IN_TX bits, counter widths other than 48.
//
// PMI delivery contract for the virtualization layer (spec §8; the device never touches an APIC):
//  - every counting call returns PmuOverflow; when `pmi` is true the caller sets the vCPU's
//    KVM_REQ_PMI bit. Requests coalesce: Pmu also keeps one pending bit (pmi_requested(),
//    take_pmi_request()) that stays a single request however many counters overflow.
//  - once per guest entry, a pending request is delivered through LVTPC with
//    Lapic::local_deliver(LVTPC, mask_on_delivery = mask_lvtpc_on_pmi()), i.e. LVTPC.MASK is
//    set on an accepted PMI for Intel-compatible guests only (KVM a16eb25b09c0, restricted to
//    Intel-compatible vendors by 49ff3b4aec51). LVTPC may select fixed or NMI delivery mode.
//  - `--pmi-delivery=legacy` (the 2023 behaviour) additionally delivers immediately from the
//    overflow site; that is the virt layer's business, PmuOverflow carries what it needs.
//  - a halted vCPU with pmi_requested() has an event (kvm_vcpu_has_events()).
//
// Threading: a Pmu belongs to its vCPU thread; no method is thread-safe.
#pragma once

#include <cstdint>

#include "x86/pmu_defs.h"

namespace apicv {

enum class PmuModel : uint8_t {
  kIntelV2,  // CPUID 0xA version 2: 4 GP + 3 fixed counters, 48 bits, global ctrl/status/ovf
  kAmd,      // PerfEvtSel0..3 / PerfCtr0..3 (optionally the 6-counter core extension)
};

struct PmuConfig {
  PmuModel model = PmuModel::kIntelV2;
  // AMD only: expose the core extension MSRs 0xC0010200..0xC001020B (6 counters). The backend
  // must then advertise CPUID Fn8000_0001_ECX[23] (amd_cpuid_ext_ecx_bits()).
  bool amd_core_ext = false;
  // Intel only: expose IA32_A_PMCx (full-width counter writes) and IA32_PERF_CAPABILITIES with
  // FW_WRITE. The backend must then advertise CPUID.1:ECX.PDCM.
  bool full_width_writes = false;
};

enum class PmuMsrResult : uint8_t {
  kOk,      // access served
  kGp,      // the guest takes #GP
  kNotPmu,  // not a PMU MSR of this model: the caller handles it
};

// What one counting call did.
struct PmuOverflow {
  // GLOBAL_STATUS bits (i for GP counter i, 32+i for fixed counter i) of the counters that wrapped
  // during this call. Set in GLOBAL_STATUS by the call.
  uint64_t status_bits_new = 0;
  // At least one of those counters has its INT (eventsel bit 20) / PMI (fixed ctrl bit 3) bit:
  // the caller must raise KVM_REQ_PMI.
  bool pmi = false;
};

struct CpuidLeaf {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

class Pmu {
 public:
  static constexpr unsigned kMaxGp = x86::kAmdCoreExtCounters;  // 6 (AMD core ext) >= 4 (Intel)
  static constexpr unsigned kIntelGp = 4;
  static constexpr unsigned kIntelFixed = 3;

  explicit Pmu(const PmuConfig& config = {});

  // RESET / vCPU creation: counters, selectors and status 0; Intel GLOBAL_CTRL has the GP enable
  // bits set (SDM: "sets bits n-1:0", KVM de120e1d692d). Statistics are cleared too.
  void reset();

  const PmuConfig& config() const { return config_; }
  unsigned nr_gp() const { return nr_gp_; }
  unsigned nr_fixed() const { return nr_fixed_; }

  // CPUID leaf 0xA for the backend to advertise: version 2, 4 GP counters of 48 bits, EBX length
  // 7 with only core cycles, instructions and reference cycles available, 3 fixed counters of
  // 48 bits. All zero in AMD mode (no architectural PMU leaf).
  CpuidLeaf CpuidLeafA() const;
  // AMD: bits to OR into CPUID Fn8000_0001_ECX (PerfCtrExtCore when amd_core_ext).
  uint32_t amd_cpuid_ext_ecx_bits() const;

  // True for every MSR of this model's PMU MSR blocks, including slots of counters that do not
  // exist (those #GP), so the caller can route all of them here.
  bool is_pmu_msr(uint32_t msr) const;
  // Guest (host_initiated = false) or host/save-restore (true) MSR access. Guest writes are
  // validated as hardware/KVM do: reserved bits #GP (Intel) or are dropped (AMD), GLOBAL_STATUS
  // is read-only, legacy IA32_PMCx writes sign-extend bit 31.
  PmuMsrResult rdmsr(uint32_t msr, uint64_t* value) const;
  PmuMsrResult wrmsr(uint32_t msr, uint64_t value, bool host_initiated = false);

  // True when any counter is enabled (event select EN / fixed OS|USR, and the GLOBAL_CTRL bit on
  // Intel). One load and compare: exit handling may call it unconditionally.
  bool any_counter_enabled() const { return enabled_ != 0; }

  // `count` instructions retired at privilege level `cpl` (KVM's
  // kvm_pmu_trigger_event(PERF_COUNT_HW_INSTRUCTIONS)): every enabled counter programmed for
  // instructions retired whose OS (cpl 0) / USR (cpl > 0) filter matches increments.
  PmuOverflow instruction_retired(uint8_t cpl, uint64_t count = 1) {
    const uint64_t mask = cpl == 0 ? instr_os_ : instr_usr_;
    if (mask == 0) [[likely]] {
      return {};
    }
    return count_events(mask, count);
  }

  // Instructions retired at `cpl` until the first enabled "instructions retired" counter with
  // INT/PMI set wraps (the instruction that makes it wrap included); UINT64_MAX when none. A
  // backend that executes every guest instruction caps its run with it, so the PMI follows the
  // overflowing instruction.
  uint64_t instructions_to_pmi(uint8_t cpl) const {
    const uint64_t mask = (cpl == 0 ? instr_os_ : instr_usr_) & pmi_enabled_;
    if (mask == 0) [[likely]] {
      return UINT64_MAX;
    }
    return instructions_to_pmi_slow(mask);
  }

  // Advances the cycle counters to `tsc` (guest TSC at `now_ns`). The interval since the
  // previous call counts as unhalted cycles at privilege level `cpl`, unless `halted` says the
  // vCPU spent it in HLT (then nothing counts). The first call, and a TSC that went backwards
  // (guest TSC write), only resynchronise. Call it at every VM-exit before handling the exit.
  PmuOverflow advance_cycles(uint64_t now_ns, uint64_t tsc, uint8_t cpl, bool halted = false) {
    if ((cycles_os_ | cycles_usr_) == 0) [[likely]] {
      // Nothing counts cycles: only keep the sample so a counter enabled later starts from here.
      tsc_synced_ = true;
      last_tsc_ = tsc;
      last_ns_ = now_ns;
      return {};
    }
    return advance_cycles_counting(now_ns, tsc, cpl, halted);
  }

  // Absolute time (ns, the clock of advance_cycles' now_ns) at which the first enabled cycle
  // counter with INT/PMI set wraps if the vCPU keeps running, for a guest TSC of `tsc_khz`.
  // UINT64_MAX when there is none or time is unknown. The virt layer arms a timer with it.
  uint64_t next_cycles_overflow_ns(uint64_t tsc_khz) const;

  // The coalesced PMI request (mirror of KVM_REQ_PMI for callers that keep none themselves).
  bool pmi_requested() const { return pmi_requested_; }
  bool take_pmi_request() {
    const bool r = pmi_requested_;
    pmi_requested_ = false;
    return r;
  }

  // LVTPC.MASK is set when a PMI is accepted for Intel-compatible guests, not for AMD.
  bool mask_lvtpc_on_pmi() const { return config_.model == PmuModel::kIntelV2; }

  // State inspection (tests, trace, save/restore).
  uint64_t global_status() const { return global_status_; }
  uint64_t global_ctrl() const { return global_ctrl_; }
  uint64_t fixed_ctr_ctrl() const { return fixed_ctr_ctrl_; }
  uint64_t eventsel(unsigned gp) const { return gp < kMaxGp ? eventsel_[gp] : 0; }
  // `idx` is the GLOBAL_STATUS bit (GP i or 32 + fixed i); 0 for a counter that does not exist.
  uint64_t counter(unsigned idx) const;

  // Statistics since reset: counter wraps, and PMI requests raised (before coalescing).
  uint64_t overflow_count() const { return overflow_count_; }
  uint64_t pmi_request_count() const { return pmi_request_count_; }

 private:
  PmuOverflow count_events(uint64_t mask, uint64_t n);
  uint64_t instructions_to_pmi_slow(uint64_t mask) const;
  PmuOverflow advance_cycles_counting(uint64_t now_ns, uint64_t tsc, uint8_t cpl, bool halted);
  uint64_t* counter_slot(unsigned idx);
  // Recomputes the enabled / per-event / per-CPL / PMI masks after a control change.
  void recompute();
  PmuMsrResult intel_rdmsr(uint32_t msr, uint64_t* value) const;
  PmuMsrResult intel_wrmsr(uint32_t msr, uint64_t value, bool host_initiated);
  PmuMsrResult amd_rdmsr(uint32_t msr, uint64_t* value) const;
  PmuMsrResult amd_wrmsr(uint32_t msr, uint64_t value);
  // AMD MSR -> (counter, is_ctl); false when not an AMD PMU MSR or the counter does not exist.
  bool amd_decode(uint32_t msr, unsigned* idx, bool* is_ctl, bool* exists) const;

  PmuConfig config_;
  unsigned nr_gp_ = 0;
  unsigned nr_fixed_ = 0;
  uint64_t global_ctrl_valid_ = 0;    // GLOBAL_CTRL bits that exist
  uint64_t global_status_valid_ = 0;  // + OvfBuffer, CondChgd
  uint64_t fixed_ctrl_valid_ = 0;

  uint64_t eventsel_[kMaxGp] = {};
  uint64_t gp_ctr_[kMaxGp] = {};
  uint64_t fixed_ctr_[kIntelFixed] = {};
  uint64_t fixed_ctr_ctrl_ = 0;
  uint64_t global_ctrl_ = 0;
  uint64_t global_status_ = 0;

  // Derived masks over GLOBAL_STATUS bit positions.
  uint64_t enabled_ = 0;
  uint64_t instr_os_ = 0, instr_usr_ = 0;
  uint64_t cycles_os_ = 0, cycles_usr_ = 0;
  uint64_t pmi_enabled_ = 0;

  bool pmi_requested_ = false;
  bool tsc_synced_ = false;
  uint64_t last_tsc_ = 0;
  uint64_t last_ns_ = 0;

  uint64_t overflow_count_ = 0;
  uint64_t pmi_request_count_ = 0;
};

}  // namespace apicv
