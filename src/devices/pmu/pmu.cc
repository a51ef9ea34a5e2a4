// The per-vCPU virtual PMU. Intel SDM vol. 3B ch. 20 (v2), AMD APM vol. 2 13.2.
// Unsupported features are listed in pmu.h.
#include "devices/pmu/pmu.h"

#include <bit>
#include <limits>

namespace apicv {

namespace {

using namespace x86;

constexpr uint64_t kNoDeadline = std::numeric_limits<uint64_t>::max();

constexpr uint64_t FixedBit(unsigned i) {
  return 1ull << (kGlobalFixedShift + i);
}

// Event select + unit mask of an Intel event select (bits 15:0).
constexpr uint64_t IntelEventCode(uint64_t sel) {
  return sel & (kEvtSelEventMask | kEvtSelUmaskMask);
}

// 12-bit AMD event (35:32 and 7:0) + unit mask, packed as event | umask << 8 | event_hi << 8.
// Only codes with EventSelect[11:8] = 0 are counted, so comparing the packed value is enough.
constexpr uint64_t AmdEventCode(uint64_t sel) {
  return (sel & (kEvtSelEventMask | kEvtSelUmaskMask)) | ((sel & kAmdEvtSelEventHiMask) >> 16);
}

}  // namespace

Pmu::Pmu(const PmuConfig& config) : config_(config) {
  if (config_.model == PmuModel::kIntelV2) {
    nr_gp_ = kIntelGp;
    nr_fixed_ = kIntelFixed;
    global_ctrl_valid_ = ((1ull << nr_gp_) - 1) | (((1ull << nr_fixed_) - 1) << kGlobalFixedShift);
    global_status_valid_ = global_ctrl_valid_ | kGlobalStatusOvfBuffer | kGlobalStatusCondChgd;
    for (unsigned i = 0; i < nr_fixed_; ++i) {
      fixed_ctrl_valid_ |= kFixedCtrlFieldValidV2 << (i * kFixedCtrlFieldBits);
    }
    config_.amd_core_ext = false;
  } else {
    nr_gp_ = config_.amd_core_ext ? kAmdCoreExtCounters : kAmdLegacyCounters;
    nr_fixed_ = 0;
    config_.full_width_writes = false;
  }
  reset();
}

void Pmu::reset() {
  for (unsigned i = 0; i < kMaxGp; ++i) {
    eventsel_[i] = 0;
    gp_ctr_[i] = 0;
  }
  for (auto& c : fixed_ctr_) c = 0;
  fixed_ctr_ctrl_ = 0;
  global_status_ = 0;
  // Intel: GLOBAL_CTRL enables the GP counters at RESET so v1-style software that never writes
  // it still counts. AMD without PerfMonV2 has no global control (every counter is "enabled").
  global_ctrl_ = config_.model == PmuModel::kIntelV2 ? (1ull << nr_gp_) - 1 : 0;
  pmi_requested_ = false;
  tsc_synced_ = false;
  last_tsc_ = 0;
  last_ns_ = 0;
  overflow_count_ = 0;
  pmi_request_count_ = 0;
  recompute();
}

CpuidLeaf Pmu::CpuidLeafA() const {
  CpuidLeaf leaf;
  if (config_.model != PmuModel::kIntelV2) return leaf;
  leaf.eax = CpuidAEax(2, nr_gp_, kPmuCounterWidth, kArchEventCountV2);
  // Unavailable events: everything except core cycles, instructions and reference cycles.
  leaf.ebx =
      kArchEvLlcReference | kArchEvLlcMisses | kArchEvBranchRetired | kArchEvBranchMispredicted;
  leaf.ecx = 0;
  leaf.edx = CpuidAEdx(nr_fixed_, kPmuCounterWidth);
  return leaf;
}

uint32_t Pmu::amd_cpuid_ext_ecx_bits() const {
  return config_.model == PmuModel::kAmd && config_.amd_core_ext ? kCpuid80000001EcxPerfCtrExtCore
                                                                 : 0;
}

uint64_t* Pmu::counter_slot(unsigned idx) {
  if (idx < nr_gp_) return &gp_ctr_[idx];
  if (idx >= kGlobalFixedShift && idx - kGlobalFixedShift < nr_fixed_) {
    return &fixed_ctr_[idx - kGlobalFixedShift];
  }
  return nullptr;
}

uint64_t Pmu::counter(unsigned idx) const {
  if (idx < nr_gp_) return gp_ctr_[idx];
  if (idx >= kGlobalFixedShift && idx - kGlobalFixedShift < nr_fixed_) {
    return fixed_ctr_[idx - kGlobalFixedShift];
  }
  return 0;
}

void Pmu::recompute() {
  enabled_ = instr_os_ = instr_usr_ = cycles_os_ = cycles_usr_ = pmi_enabled_ = 0;
  const bool intel = config_.model == PmuModel::kIntelV2;
  for (unsigned i = 0; i < nr_gp_; ++i) {
    const uint64_t sel = eventsel_[i];
    const uint64_t bit = 1ull << i;
    if (!(sel & kEvtSelEn)) continue;
    if (intel && !(global_ctrl_ & bit)) continue;
    enabled_ |= bit;
    if (sel & kEvtSelInt) pmi_enabled_ |= bit;
    bool instr = false, cycles = false;
    if (intel) {
      const uint64_t code = IntelEventCode(sel);
      instr = code == kIntelEvInstructions;
      cycles = code == kIntelEvCoreCycles || code == kIntelEvRefCycles;
    } else {
      const uint64_t code = AmdEventCode(sel);
      instr = code == kAmdEvRetiredInstructions;
      cycles = code == kAmdEvCyclesNotHalted;
    }
    const bool os = sel & kEvtSelOs, usr = sel & kEvtSelUsr;
    if (instr) {
      if (os) instr_os_ |= bit;
      if (usr) instr_usr_ |= bit;
    }
    if (cycles) {
      if (os) cycles_os_ |= bit;
      if (usr) cycles_usr_ |= bit;
    }
  }
  for (unsigned i = 0; i < nr_fixed_; ++i) {
    const uint64_t field = FixedCtrlField(fixed_ctr_ctrl_, i);
    const uint64_t bit = FixedBit(i);
    if (!(field & (kFixedCtrlOs | kFixedCtrlUsr)) || !(global_ctrl_ & bit)) continue;
    enabled_ |= bit;
    if (field & kFixedCtrlPmi) pmi_enabled_ |= bit;
    uint64_t& os = i == kFixedInstructions ? instr_os_ : cycles_os_;
    uint64_t& usr = i == kFixedInstructions ? instr_usr_ : cycles_usr_;
    if (field & kFixedCtrlOs) os |= bit;
    if (field & kFixedCtrlUsr) usr |= bit;
  }
}

PmuOverflow Pmu::count_events(uint64_t mask, uint64_t n) {
  PmuOverflow out;
  if (n == 0) return out;
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    uint64_t* c = counter_slot(static_cast<unsigned>(std::countr_zero(m)));
    if (c == nullptr) continue;
    // Wrap past 2^48 - 1. One call reports one overflow per counter even if `n` spans several
    // periods, as one perf overflow callback would.
    if (n > kPmuCounterMask - *c) out.status_bits_new |= m & -m;
    *c = (*c + n) & kPmuCounterMask;
  }
  if (out.status_bits_new != 0) {
    // KVM sets the status bit on AMD too; without PerfMonV2 the guest cannot see it.
    global_status_ |= out.status_bits_new;
    overflow_count_ += static_cast<uint64_t>(std::popcount(out.status_bits_new));
    if (out.status_bits_new & pmi_enabled_) {
      out.pmi = true;
      pmi_requested_ = true;  // coalesces like a request bit
      ++pmi_request_count_;
    }
  }
  return out;
}

uint64_t Pmu::instructions_to_pmi_slow(uint64_t mask) const {
  uint64_t left = UINT64_MAX;
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    // count_events wraps a counter c when n > kPmuCounterMask - c, i.e. at n = 2^48 - c.
    const uint64_t n = kPmuCounterMask + 1 - counter(static_cast<unsigned>(std::countr_zero(m)));
    if (n < left) left = n;
  }
  return left;
}

PmuOverflow Pmu::advance_cycles_counting(uint64_t now_ns, uint64_t tsc, uint8_t cpl, bool halted) {
  const bool synced = tsc_synced_;
  const uint64_t prev = last_tsc_;
  tsc_synced_ = true;
  last_tsc_ = tsc;
  last_ns_ = now_ns;
  if (!synced || halted || tsc < prev) return {};
  const uint64_t mask = cpl == 0 ? cycles_os_ : cycles_usr_;
  if (mask == 0) return {};
  return count_events(mask, tsc - prev);
}

uint64_t Pmu::next_cycles_overflow_ns(uint64_t tsc_khz) const {
  const uint64_t candidates = (cycles_os_ | cycles_usr_) & pmi_enabled_;
  if (candidates == 0 || tsc_khz == 0 || !tsc_synced_) return kNoDeadline;
  uint64_t remaining = kNoDeadline;
  for (uint64_t m = candidates; m != 0; m &= m - 1) {
    const uint64_t left = kPmuCounterMask + 1 - counter(static_cast<unsigned>(std::countr_zero(m)));
    if (left < remaining) remaining = left;
  }
  // ns = ceil(remaining * 10^6 / tsc_khz), saturating; remaining <= 2^48.
  constexpr uint64_t kNsPerMs = 1000000;
  const uint64_t whole = remaining / tsc_khz;
  const uint64_t rest = remaining % tsc_khz;
  if (whole > (kNoDeadline - kNsPerMs) / kNsPerMs) return kNoDeadline;
  const uint64_t delta = whole * kNsPerMs + (rest * kNsPerMs + tsc_khz - 1) / tsc_khz;
  if (delta > kNoDeadline - 1 - last_ns_) return kNoDeadline;
  return last_ns_ + delta;
}

bool Pmu::is_pmu_msr(uint32_t msr) const {
  if (config_.model == PmuModel::kIntelV2) {
    return (msr >= kMsrIa32Pmc0 && msr < kMsrIa32Pmc0 + kIntelArchMaxGp) ||
           (msr >= kMsrIa32PerfEvtSel0 && msr < kMsrIa32PerfEvtSel0 + kIntelArchMaxGp) ||
           (msr >= kMsrIa32APmc0 && msr < kMsrIa32APmc0 + kIntelArchMaxGp) ||
           (msr >= kMsrIa32FixedCtr0 && msr < kMsrIa32FixedCtr0 + kIntelArchMaxFixed) ||
           (msr >= kMsrIa32FixedCtrCtrl && msr <= kMsrIa32PerfGlobalOvfCtrl) ||
           msr == kMsrIa32PerfCapabilities;
  }
  unsigned idx;
  bool is_ctl, exists;
  return amd_decode(msr, &idx, &is_ctl, &exists);
}

PmuMsrResult Pmu::rdmsr(uint32_t msr, uint64_t* value) const {
  if (!is_pmu_msr(msr)) return PmuMsrResult::kNotPmu;
  uint64_t v = 0;
  const PmuMsrResult r =
      config_.model == PmuModel::kIntelV2 ? intel_rdmsr(msr, &v) : amd_rdmsr(msr, &v);
  if (r == PmuMsrResult::kOk && value != nullptr) *value = v;
  return r;
}

PmuMsrResult Pmu::wrmsr(uint32_t msr, uint64_t value, bool host_initiated) {
  if (!is_pmu_msr(msr)) return PmuMsrResult::kNotPmu;
  return config_.model == PmuModel::kIntelV2 ? intel_wrmsr(msr, value, host_initiated)
                                             : amd_wrmsr(msr, value);
}

PmuMsrResult Pmu::intel_rdmsr(uint32_t msr, uint64_t* value) const {
  if (msr >= kMsrIa32PerfEvtSel0 && msr < kMsrIa32PerfEvtSel0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32PerfEvtSel0;
    if (i >= nr_gp_) return PmuMsrResult::kGp;
    *value = eventsel_[i];
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32Pmc0 && msr < kMsrIa32Pmc0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32Pmc0;
    if (i >= nr_gp_) return PmuMsrResult::kGp;
    *value = gp_ctr_[i];
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32APmc0 && msr < kMsrIa32APmc0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32APmc0;
    if (!config_.full_width_writes || i >= nr_gp_) return PmuMsrResult::kGp;
    *value = gp_ctr_[i];
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32FixedCtr0 && msr < kMsrIa32FixedCtr0 + kIntelArchMaxFixed) {
    const unsigned i = msr - kMsrIa32FixedCtr0;
    if (i >= nr_fixed_) return PmuMsrResult::kGp;
    *value = fixed_ctr_[i];
    return PmuMsrResult::kOk;
  }
  switch (msr) {
    case kMsrIa32FixedCtrCtrl:
      *value = fixed_ctr_ctrl_;
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalStatus:
      *value = global_status_;
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalCtrl:
      *value = global_ctrl_;
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalOvfCtrl:
      *value = 0;  // write-only in effect: reads return 0 (KVM)
      return PmuMsrResult::kOk;
    case kMsrIa32PerfCapabilities:
      if (!config_.full_width_writes) return PmuMsrResult::kGp;  // no PDCM
      *value = kPerfCapFullWidthWrite;
      return PmuMsrResult::kOk;
    default:
      return PmuMsrResult::kGp;
  }
}

PmuMsrResult Pmu::intel_wrmsr(uint32_t msr, uint64_t value, bool host_initiated) {
  if (msr >= kMsrIa32PerfEvtSel0 && msr < kMsrIa32PerfEvtSel0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32PerfEvtSel0;
    if (i >= nr_gp_ || (value & kIntelV2EvtSelReserved)) return PmuMsrResult::kGp;
    eventsel_[i] = value;
    recompute();
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32Pmc0 && msr < kMsrIa32Pmc0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32Pmc0;
    if (i >= nr_gp_) return PmuMsrResult::kGp;
    // Legacy counter writes take EDX:EAX's low 32 bits sign-extended to the counter width
    // (SDM 20.2.6), so software arms a counter with a negative 32-bit period. Host writes
    // restore the full value.
    if (!host_initiated) {
      value = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(value)));
    }
    gp_ctr_[i] = value & kPmuCounterMask;
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32APmc0 && msr < kMsrIa32APmc0 + kIntelArchMaxGp) {
    const unsigned i = msr - kMsrIa32APmc0;
    if (!config_.full_width_writes || i >= nr_gp_) return PmuMsrResult::kGp;
    if (value & ~kPmuCounterMask) return PmuMsrResult::kGp;  // beyond the width
    gp_ctr_[i] = value;
    return PmuMsrResult::kOk;
  }
  if (msr >= kMsrIa32FixedCtr0 && msr < kMsrIa32FixedCtr0 + kIntelArchMaxFixed) {
    const unsigned i = msr - kMsrIa32FixedCtr0;
    if (i >= nr_fixed_) return PmuMsrResult::kGp;
    // Fixed counters take the value as is, truncated to the width (KVM does not sign-extend).
    fixed_ctr_[i] = value & kPmuCounterMask;
    return PmuMsrResult::kOk;
  }
  switch (msr) {
    case kMsrIa32FixedCtrCtrl:
      if (value & ~fixed_ctrl_valid_) return PmuMsrResult::kGp;
      fixed_ctr_ctrl_ = value;
      recompute();
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalStatus:
      if (!host_initiated) return PmuMsrResult::kGp;  // read-only for the guest
      if (value & ~global_status_valid_) return PmuMsrResult::kGp;
      global_status_ = value;
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalCtrl:
      if (value & ~global_ctrl_valid_) return PmuMsrResult::kGp;
      global_ctrl_ = value;
      recompute();
      return PmuMsrResult::kOk;
    case kMsrIa32PerfGlobalOvfCtrl:
      // Same reserved bits as GLOBAL_STATUS; a host write (state restore) changes nothing.
      if (value & ~global_status_valid_) return PmuMsrResult::kGp;
      if (!host_initiated) global_status_ &= ~value;
      return PmuMsrResult::kOk;
    case kMsrIa32PerfCapabilities:
      if (!config_.full_width_writes || !host_initiated) return PmuMsrResult::kGp;
      return value == kPerfCapFullWidthWrite ? PmuMsrResult::kOk : PmuMsrResult::kGp;
    default:
      return PmuMsrResult::kGp;
  }
}

bool Pmu::amd_decode(uint32_t msr, unsigned* idx, bool* is_ctl, bool* exists) const {
  if (config_.model != PmuModel::kAmd) return false;
  if (msr >= kMsrK7PerfEvtSel0 && msr < kMsrK7PerfEvtSel0 + kAmdLegacyCounters) {
    *idx = msr - kMsrK7PerfEvtSel0;
    *is_ctl = true;
  } else if (msr >= kMsrK7PerfCtr0 && msr < kMsrK7PerfCtr0 + kAmdLegacyCounters) {
    *idx = msr - kMsrK7PerfCtr0;
    *is_ctl = false;
  } else if (msr >= kMsrF15hPerfCtl0 && msr < kMsrF15hPerfCtl0 + 2 * kAmdCoreExtCounters) {
    // Without the core extension these MSRs do not exist: claimed here so they #GP.
    *idx = (msr - kMsrF15hPerfCtl0) / 2;
    *is_ctl = ((msr - kMsrF15hPerfCtl0) & 1) == 0;
    *exists = config_.amd_core_ext;
    return true;
  } else {
    return false;
  }
  *exists = true;
  return true;
}

PmuMsrResult Pmu::amd_rdmsr(uint32_t msr, uint64_t* value) const {
  unsigned i;
  bool is_ctl, exists;
  if (!amd_decode(msr, &i, &is_ctl, &exists) || !exists || i >= nr_gp_) return PmuMsrResult::kGp;
  *value = is_ctl ? eventsel_[i] : gp_ctr_[i];
  return PmuMsrResult::kOk;
}

PmuMsrResult Pmu::amd_wrmsr(uint32_t msr, uint64_t value) {
  unsigned i;
  bool is_ctl, exists;
  if (!amd_decode(msr, &i, &is_ctl, &exists) || !exists || i >= nr_gp_) return PmuMsrResult::kGp;
  if (is_ctl) {
    // AMD drops writes to reserved bits instead of faulting (KVM's amd_pmu_set_msr()).
    eventsel_[i] = value & ~kAmdEvtSelReserved;
    recompute();
  } else {
    gp_ctr_[i] = value & kPmuCounterMask;  // no sign extension on AMD
  }
  return PmuMsrResult::kOk;
}

}  // namespace apicv
