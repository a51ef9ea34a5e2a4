// ApicvVm: see apicv_vm.h.
#include "virt/apicv_vm.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

#include "irq/match_dest.h"
#include "trace/kvm_events.h"
#include "virt/apicv_vm_internal.h"
#include "virt/avic.h"
#include "virt/vm.h"
#include "x86/ioapic_defs.h"

namespace apicv::virt {

using namespace vm_detail;  // NOLINT: the split files share ApicvVm's private helpers

using x86::DeliveryMode;
using x86::InterruptRequest;

ApicvVm::ApicvVm(const VmConfig& config, const Clock& clock, trace::TraceSink* trace,
                 TimerService* timers)
    : config_(config),
      clock_(clock),
      trace_(trace),
      dev_trace_(trace),
      reqs_(
          config.nr_vcpus, [this](int v) { kick(v); }, [this](int v) { kick(v); }),
      inhibits_({config.vendor == VendorModel::kSvm ? Vendor::kSvm : Vendor::kVmx,
                 config.irqwin == IrqWindowMode::kCounted},
                reqs_, trace),
      irqwin_(config.irqwin == IrqWindowMode::kCounted ? IrqWinStrategy::kCounted
                                                       : IrqWinStrategy::kLegacy,
              inhibits_, trace),
      ioapic_(IoApicConfigFor(config)),
      // With kernel-irqchip=on the PIT is KVM's: create_pit_timer() clamps periodic modes to
      // min_timer_period_us (200 us by default). A userspace PIT (split/off) is not clamped.
      pit_(PitConfig{
          .policy = LostTickPolicy::kDiscard,
          .min_period_ns = config.placement == IrqchipPlacement::kOn ? kKvmMinTimerPeriodNs : 0}) {
  LapicConfig lc;
  lc.esr_sdm_mode = config.esr_sdm_mode;
  lc.maxphyaddr = config.maxphyaddr;
  // kvm_apic_set_version(): LVR[24] (directed EOI) only for x2APIC guests whose IOAPIC is not in
  // the kernel (0bcc3fb95b97), unless the VMM disabled Suppress EOI Broadcast. apicv models a
  // userspace LAPIC (off) as QEMU's, which has no directed EOI.
  lc.directed_eoi = config.placement == IrqchipPlacement::kSplit && lc.x2apic_supported &&
                    config.suppress_eoi_broadcast != SuppressEoiBroadcast::kDisabled;
  route_options_.vector_hashing = config.vector_hashing;
  lc.tsc_khz = config.tsc_khz ? config.tsc_khz : clock.tsc_khz();
  tsc_khz_ = lc.tsc_khz;
  PmuConfig pc;
  pc.model = config.pmu_vendor == PmuVendor::kIntel ? PmuModel::kIntelV2 : PmuModel::kAmd;
  vcpus_.reserve(static_cast<size_t>(config.nr_vcpus));
  for (int i = 0; i < config.nr_vcpus; ++i) vcpus_.push_back(std::make_unique<VcpuCtx>(i, lc, pc));
  views_.resize(static_cast<size_t>(config.nr_vcpus));

  // kvm_apicv_init(): ABSENT (or DISABLED with --avic off). Creating the in-kernel irqchip
  // (on / split) clears ABSENT; with irqchip off the LAPIC is not KVM's and APICv stays absent.
  inhibits_.init(config.enable_apicv);
  if (config.placement != IrqchipPlacement::kOff) inhibits_.clear(InhibitReason::kAbsent);
  // kvm_create_pit() enables reinjection; QEMU's lost_tick_policy=discard turns it off again.
  if (config.placement == IrqchipPlacement::kOn) {
    inhibits_.set(InhibitReason::kPitReinj);
    pit_reinject_ = true;
    if (config.pit_policy == PitPolicy::kDiscard) {
      inhibits_.clear(InhibitReason::kPitReinj);
      pit_reinject_ = false;
    }
  }
  pit_.set_lost_tick_policy(pit_reinject_ ? LostTickPolicy::kDelay : LostTickPolicy::kDiscard);
  ioapic_.set_delivery_result(
      [this](const InterruptRequest& req) { return ioapic_delivery_result(req); });
  if (config.vendor == VendorModel::kVmx) {
    // vmx_vcpu_pi_load(): NV is the host's posted-interrupt vector, NDST the vCPU's pCPU.
    for (int i = 0; i < config.nr_vcpus; ++i) {
      vcpus_[static_cast<size_t>(i)]->pi.set_nv(kPostedIntrVector);
      vcpus_[static_cast<size_t>(i)]->pi.set_ndst(HostApicId(i));
    }
  }
  if (config.vendor == VendorModel::kSvm) {
    // avic_hardware_setup(): x2AVIC's 0x1FF table when the VM needs more than 255 ids, else the
    // xAPIC AVIC table (0xFE; 0xFF is the broadcast).
    AvicConfig ac;
    ac.table = config.nr_vcpus > 255 ? AvicTableMode::kX2Avic : AvicTableMode::kXApic;
    ac.kick = config.avic_kick == AvicKick::kSlow ? AvicKickMode::kSlow : AvicKickMode::kFast;
    ac.trace = trace;
    avic_ = std::make_unique<Avic>(ac, config.nr_vcpus);
    for (int i = 0; i < config.nr_vcpus; ++i) {
      // avic_init_backing_page(): a vcpu_id above the table's max index inhibits AVIC VM-wide.
      if (!avic_->init_vcpu(i, static_cast<uint32_t>(i)))
        inhibits_.set(InhibitReason::kPhysicalIdTooBig);
    }
  }
  for (int i = 0; i < config.nr_vcpus; ++i) {
    std::lock_guard<std::mutex> g(map_mu_);
    const LapicIdentity id = vcpus_[static_cast<size_t>(i)]->lapic.identity();
    views_[static_cast<size_t>(i)] = {id.vcpu_id,  id.hw_enabled, id.x2apic, id.sw_enabled,
                                      id.xapic_id, id.ldr,        id.dfr,    0};
  }
  rebuild_apic_map(-1);
  for (int i = 0; i < config.nr_vcpus; ++i) {
    reqs_.vcpu(i).make_request(kReqApicvUpdate);
    publish_accept_pic_intr(i);
  }
  if (timers) {
    timer_ = timers;
  } else {
    // Last: the thread calls service_timers() at once.
    host_timer_ = std::make_unique<HostTimerService>(
        clock_, [this](uint64_t now_ns) { return service_timers(now_ns); });
    timer_ = host_timer_.get();
  }
}

ApicvVm::~ApicvVm() {
  // Join the host timer thread before any device it services goes away.
  host_timer_.reset();
}

bool ApicvVm::avic_is_running(int vcpu) const {
  return avic_ && avic_->is_running(vcpu);
}

Lapic& ApicvVm::lapic(int vcpu) {
  return vcpus_[static_cast<size_t>(vcpu)]->lapic;
}
Pmu& ApicvVm::pmu(int vcpu) {
  return vcpus_[static_cast<size_t>(vcpu)]->pmu;
}
const PiDesc& ApicvVm::pi_desc(int vcpu) const {
  return vcpus_[static_cast<size_t>(vcpu)]->pi;
}
const EoiExitBitmap& ApicvVm::eoi_exit_bitmap(int vcpu) const {
  return vcpus_[static_cast<size_t>(vcpu)]->eoi_exit_bitmap;
}

void ApicvVm::set_device_trace(bool on) {
  trace::TraceSink* sink = on ? trace_ : nullptr;
  dev_trace_.store(sink, std::memory_order_release);
  if (avic_) avic_->set_device_trace(sink);
}

void ApicvVm::set_kick(std::function<void(int)> kick) {
  std::lock_guard<std::mutex> g(kick_mu_);
  kick_holders_.push_back(std::make_unique<std::function<void(int)>>(std::move(kick)));
  kick_.store(kick_holders_.back().get(), std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// Guest accesses

bool ApicvVm::owns_lapic_mmio(VcpuCtx& c, uint64_t gpa) const {
  // The xAPIC page is decoded only while the APIC is enabled in xAPIC mode, at its current base.
  if (c.lapic.mode() != ApicMode::kXApic) return false;
  // The Lapic refuses base bits at or above MAXPHYADDR (#GP), so the base needs no further mask.
  const uint64_t base = c.lapic.get_apic_base() & x86::kApicBaseAddrMask;
  return gpa >= base && gpa < base + x86::kApicMmioSize;
}

AccessResult ApicvVm::mmio_read(int vcpu, uint64_t gpa, void* data, unsigned len) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (owns_lapic_mmio(c, gpa)) {
    const uint64_t base = c.lapic.get_apic_base() & x86::kApicBaseAddrMask;
    avic_lapic_mmio_access(vcpu, c, static_cast<uint32_t>(gpa - base), len, /*write=*/false);
    handle_lapic_output(vcpu,
                        c.lapic.mmio_read(static_cast<uint32_t>(gpa - base), data, len, now()));
    return AccessResult::kHandled;
  }
  if (gpa >= kIoApicBase && gpa < kIoApicBase + kIoApicSize) {
    IoApicOutput out;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      out = ioapic_.mmio_read(static_cast<uint32_t>(gpa - kIoApicBase), data, len, now());
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    ioapic_output(out);
    return AccessResult::kHandled;
  }
  return AccessResult::kNotMine;
}

AccessResult ApicvVm::mmio_write(int vcpu, uint64_t gpa, const void* data, unsigned len) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (owns_lapic_mmio(c, gpa)) {
    const uint64_t base = c.lapic.get_apic_base() & x86::kApicBaseAddrMask;
    avic_lapic_mmio_access(vcpu, c, static_cast<uint32_t>(gpa - base), len, /*write=*/true);
    handle_lapic_output(vcpu,
                        c.lapic.mmio_write(static_cast<uint32_t>(gpa - base), data, len, now()));
    return AccessResult::kHandled;
  }
  if (gpa >= kIoApicBase && gpa < kIoApicBase + kIoApicSize) {
    IoApicOutput out;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      out = ioapic_.mmio_write(static_cast<uint32_t>(gpa - kIoApicBase), data, len, now());
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    // ioapic_write_indirect(): a rewritten RTE changes which vectors need an EOI exit.
    if (out.rte_changed) request_scan_ioapic();
    ioapic_output(out);
    return AccessResult::kHandled;
  }
  return AccessResult::kNotMine;
}

// With AVIC active, the guest's xAPIC page is the backing page: the "hardware" completes most
// accesses; the rest exit with AVIC_UNACCELERATED_ACCESS, which KVM traces before emulating
// (fault) or before kvm_apic_write_nodecode (trap). Either way the Lapic then performs the access,
// so only the trace and the counters depend on the classification. x2APIC MSR accesses are not
// classified (the model has no x2AVIC MSR-intercept map).
void ApicvVm::avic_lapic_mmio_access(int vcpu, VcpuCtx& c, uint32_t offset, unsigned len,
                                     bool write) {
  if (!avic_ || !inhibits_.vcpu_apicv_active(vcpu)) return;
  const uint32_t reg = offset & 0xFF0;
  // An EOI write traps only when the vector it retires (the highest in-service one) is
  // level-triggered; the hardware looks at the backing page's ISR and TMR.
  int eoi_vector = -1;
  bool eoi_level = false;
  if (write && reg == x86::kApicEoi) {
    for (int w = 7; w >= 0 && eoi_vector < 0; --w) {
      const uint32_t isr = c.lapic.reg(x86::kApicIsr + static_cast<uint32_t>(w) * 0x10);
      if (isr == 0) continue;
      const int bit = 31 - std::countl_zero(isr);
      eoi_vector = w * 32 + bit;
      eoi_level = (c.lapic.reg(x86::kApicTmr + static_cast<uint32_t>(w) * 0x10) >> bit) & 1u;
    }
  }
  const AvicAccess kind = Avic::xapic_access(offset, len, write, eoi_level);
  if (kind == AvicAccess::kAccelerated) {
    st_avic_accel_accesses_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  (kind == AvicAccess::kTrap ? st_avic_unaccel_traps_ : st_avic_unaccel_faults_)
      .fetch_add(1, std::memory_order_relaxed);
  // exit_info_1: offset, bit 32 = write. exit_info_2 (KVM's "vec"): the retired vector for an EOI
  // trap, 0 otherwise [INFERRED: the APM names no other vector for this exit].
  const uint64_t exit_info_1 = (static_cast<uint64_t>(write) << 32) | reg;
  const uint64_t exit_info_2 =
      (kind == AvicAccess::kTrap && reg == x86::kApicEoi) ? static_cast<uint64_t>(eoi_vector) : 0;
  avic_->avic_unaccelerated_access_interception(vcpu, exit_info_1, exit_info_2);
}

AccessResult ApicvVm::pio_in(int vcpu, uint16_t port, void* data, unsigned len) {
  (void)vcpu;
  if (Pic::handles_port(port)) {
    uint8_t v = 0xFF;
    PicOutput out;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      out = pic_.pio_read(port, &v);
      pic_output_.store(pic_.output(), std::memory_order_release);
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    std::memset(data, 0, len);
    StoreLe(data, 1, v);
    pic_output(out);
    return AccessResult::kHandled;
  }
  if (Pit::handles_port(port)) {
    uint8_t v;
    {
      std::lock_guard<std::mutex> g(pit_mu_);
      v = pit_.pio_read(port, now());
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    std::memset(data, 0, len);
    StoreLe(data, 1, v);
    return AccessResult::kHandled;
  }
  if (port >= kTestDevBase && port <= kTestDevEnd) {
    std::memset(data, 0, len);  // the line state is write-only
    return AccessResult::kHandled;
  }
  return AccessResult::kNotMine;
}

AccessResult ApicvVm::pio_out(int vcpu, uint16_t port, const void* data, unsigned len) {
  (void)vcpu;
  const uint8_t v = static_cast<uint8_t>(LoadLe(data, len));
  if (Pic::handles_port(port)) {
    PicOutput out;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      out = pic_.pio_write(port, v);
      pic_output_.store(pic_.output(), std::memory_order_release);
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    pic_output(out);
    return AccessResult::kHandled;
  }
  if (Pit::handles_port(port)) {
    PitOutput out;
    {
      std::lock_guard<std::mutex> g(pit_mu_);
      out = pit_.pio_write(port, v, now());
    }
    if (config_.placement != IrqchipPlacement::kOn) st_vmm_exits_.fetch_add(1);
    pit_output(out);
    timer_deadline_changed();
    return AccessResult::kHandled;
  }
  if (port >= kTestDevBase && port <= kTestDevEnd) {
    set_isa_irq(port - kTestDevBase, v != 0);
    return AccessResult::kHandled;
  }
  return AccessResult::kNotMine;
}

AccessResult ApicvVm::rdmsr(int vcpu, uint32_t msr, uint64_t* value) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (msr == x86::kMsrApicBase) {
    *value = c.lapic.get_apic_base();
    return AccessResult::kHandled;
  }
  if (msr == x86::kMsrTscDeadline) {
    *value = c.lapic.rdmsr_tsc_deadline();
    return AccessResult::kHandled;
  }
  if (msr >= x86::kX2ApicMsrBase && msr <= x86::kX2ApicMsrEnd) {
    // kvm_x2apic_msr_read(): #GP unless the APIC is in x2APIC mode.
    if (!c.lapic.x2apic_mode()) return AccessResult::kGp;
    MsrAccess a = c.lapic.rdmsr_x2apic(msr, now());
    handle_lapic_output(vcpu, a.out);
    if (a.gp) return AccessResult::kGp;
    *value = a.value;
    return AccessResult::kHandled;
  }
  if (IsPmuMsrRange(msr)) {
    switch (c.pmu.rdmsr(msr, value)) {
      case PmuMsrResult::kOk:
        return AccessResult::kHandled;
      case PmuMsrResult::kGp:
      case PmuMsrResult::kNotPmu:
        return AccessResult::kGp;
    }
  }
  return AccessResult::kNotMine;
}

AccessResult ApicvVm::wrmsr(int vcpu, uint32_t msr, uint64_t value) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (msr == x86::kMsrApicBase) {
    MsrAccess a = c.lapic.set_apic_base(value, /*host_initiated=*/false);
    if (a.gp) return AccessResult::kGp;
    handle_lapic_output(vcpu, a.out);
    return AccessResult::kHandled;
  }
  if (msr == x86::kMsrTscDeadline) {
    handle_lapic_output(vcpu, c.lapic.wrmsr_tsc_deadline(value, now(), read_tsc()));
    return AccessResult::kHandled;
  }
  if (msr >= x86::kX2ApicMsrBase && msr <= x86::kX2ApicMsrEnd) {
    if (!c.lapic.x2apic_mode()) return AccessResult::kGp;
    MsrAccess a = c.lapic.wrmsr_x2apic(msr, value, now());
    if (a.gp) return AccessResult::kGp;
    handle_lapic_output(vcpu, a.out);
    return AccessResult::kHandled;
  }
  if (IsPmuMsrRange(msr)) {
    switch (c.pmu.wrmsr(msr, value)) {
      case PmuMsrResult::kOk:
        // Writing a counter or control can complete an overflow immediately (counter at -1 with
        // status bits); pick up a PMI request if one was raised.
        if (c.pmu.take_pmi_request()) reqs_.vcpu(vcpu).make_request(kReqPmi);
        // Cycle counters count from now: the time before this write (in the VMM) is not theirs.
        if (c.pmu.any_counter_enabled()) c.pmu.advance_cycles(now(), read_tsc(), 0, true);
        return AccessResult::kHandled;
      case PmuMsrResult::kGp:
      case PmuMsrResult::kNotPmu:
        return AccessResult::kGp;
    }
  }
  return AccessResult::kNotMine;
}

void ApicvVm::set_cr8(int vcpu, uint64_t cr8) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (c.lapic.get_cr8() == (cr8 & 0xF)) return;
  if (c.lapic.set_cr8(cr8)) reqs_.vcpu(vcpu).make_request(kReqEvent);
}

uint64_t ApicvVm::get_cr8(int vcpu) {
  return vcpus_[static_cast<size_t>(vcpu)]->lapic.get_cr8();
}

// ---------------------------------------------------------------------------------------------
// LAPIC side effects

void ApicvVm::handle_lapic_output(int vcpu, const LapicOutput& out) {
  publish_accept_pic_intr(vcpu);
  if (out.map_dirty) rebuild_apic_map(vcpu, out.xapic_id_written);
  if (out.base_modified) inhibits_.set(InhibitReason::kApicBaseModified);
  if (out.apicv_update) reqs_.vcpu(vcpu).make_request(kReqApicvUpdate);
  if (out.ipi) send_ipi(vcpu, *out.ipi);
  if (out.eoi) eoi_broadcast(vcpu, *out.eoi);
  // apic_set_eoi() traces an EOI write that finds the ISR empty as vector -1 and stops there. An
  // EOI the AVIC/APICv "hardware" completes never reaches it: with the ISR empty nothing is
  // level-triggered (AVIC does not trap) and SVI is 0, outside the EOI-exit bitmap (APICv).
  if (out.eoi_empty && !inhibits_.vcpu_apicv_active(vcpu))
    trace::trace_kvm_eoi(lapic_trace(), static_cast<uint32_t>(vcpu), -1);
  if (out.timer_changed) note_timer(vcpu);
  if (out.event) reqs_.vcpu(vcpu).make_request(kReqEvent);
}

void ApicvVm::rebuild_apic_map(int changed_vcpu, bool xapic_id_written) {
  irq::ApicMapFlags flags;
  bool id_written_2022 = false;
  {
    std::lock_guard<std::mutex> g(map_mu_);
    if (changed_vcpu >= 0) {
      // The owner thread calls us, so reading its Lapic is safe.
      const LapicIdentity id = vcpus_[static_cast<size_t>(changed_vcpu)]->lapic.identity();
      irq::ApicView& v = views_[static_cast<size_t>(changed_vcpu)];
      // 2022 rule (3743c2f02517): any guest write of the xAPIC ID register, even of the value it
      // already holds, compared the ID with the vCPU id not truncated to 8 bits (f651a0089548
      // added the truncation); a mismatch sets APIC_ID_MODIFIED for good.
      if (xapic_id_written && id.hw_enabled && !id.x2apic && id.xapic_id != id.vcpu_id)
        id_written_2022 = true;
      v = {id.vcpu_id, id.hw_enabled, id.x2apic, id.sw_enabled, id.xapic_id, id.ldr, id.dfr, 0};
    }
    auto snap = std::make_shared<MapSnapshot>();
    snap->views = views_;
    snap->map.Rebuild(snap->views);
    flags = snap->map.flags();
    // avic_handle_ldr_update(): the logical APIC ID table follows LDR/DFR (xAPIC vCPUs only).
    if (avic_) avic_->rebuild_logical_table(snap->views);
    {
      std::lock_guard<std::mutex> sg(snap_mu_);
      map_snapshot_ = std::move(snap);
    }
    // kvm_recalculate_apic_map(): the three map inhibits are recomputed on every rebuild, still
    // under apic_map_lock (here map_mu_). Applying them after the unlock would let two concurrent
    // rebuilds apply their flags in the opposite order and leave a stale inhibit set.
    // Holding map_mu_ across the APICV_UPDATE kick-and-wait is safe: a vCPU in guest mode leaves
    // it without taking map_mu_ (docs/locking.md).
    inhibits_.set_or_clear(InhibitReason::kPhysicalIdAliased, flags.phys_id_aliased);
    inhibits_.set_or_clear(InhibitReason::kLogicalIdAliased, flags.logical_id_aliased);
    if (config_.apic_id_check == ApicIdCheck::kCurrent) {
      inhibits_.set_or_clear(InhibitReason::kApicIdModified, flags.xapic_id_mismatch);
    } else if (id_written_2022) {
      inhibits_.set(InhibitReason::kApicIdModified);
    }
  }
  st_map_rebuilds_.fetch_add(1, std::memory_order_relaxed);
  // kvm_recalculate_apic_map() ends with kvm_make_scan_ioapic_request(): RTE destinations may now
  // match other vCPUs.
  request_scan_ioapic();
}

void ApicvVm::reset() {
  // Every vCPU is out of the guest (backend contract).
  if (config_.apic_id_check == ApicIdCheck::k2022) {
    // The 2022 reboot report: restoring a LAPIC whose ID register still holds the x2APIC ID
    // (unshifted) made KVM read xAPIC ID = id >> 24 and flag vCPUs other than 0 as modified.
    for (int i = 0; i < config_.nr_vcpus; ++i) {
      Lapic& l = vcpus_[static_cast<size_t>(i)]->lapic;
      if (l.x2apic_mode() && ((l.reg(x86::kApicId) >> 24) & 0xFF) != static_cast<uint32_t>(i))
        inhibits_.set(InhibitReason::kApicIdModified);
    }
  }
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    VcpuCtx& c = *vcpus_[static_cast<size_t>(i)];
    c.lapic.reset(/*init_only=*/false);
    c.arb_prio.store(0, std::memory_order_relaxed);
    publish_accept_pic_intr(i);
    c.lapic.sync_pir_to_irr();
    vmx_clear_pi(c);
    c.pmu.reset();
    c.pending_external_vector = -1;
    c.model_window = false;
    c.timer_deadline.store(UINT64_MAX);
    std::lock_guard<std::mutex> g(map_mu_);
    const LapicIdentity id = c.lapic.identity();
    views_[static_cast<size_t>(i)] = {id.vcpu_id,  id.hw_enabled, id.x2apic, id.sw_enabled,
                                      id.xapic_id, id.ldr,        id.dfr,    0};
  }
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    ioapic_.reset();
  }
  {
    std::lock_guard<std::mutex> g(pic_mu_);
    pic_.reset();
    pic_output_.store(false);
  }
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.reset(now());
  }
  rebuild_apic_map(-1);
  for (int i = 0; i < config_.nr_vcpus; ++i) reqs_.vcpu(i).make_request(kReqApicvUpdate);
  timer_deadline_changed();
}

// ---------------------------------------------------------------------------------------------
// Statistics

VmStats ApicvVm::stats() const {
  VmStats s;
  s.ipis = st_ipis_.load();
  s.ipi_kicks = st_ipi_kicks_.load();
  s.injections = st_injections_.load();
  s.hw_deliveries = st_hw_deliveries_.load();
  s.nmis = st_nmis_.load();
  s.windows_requested = st_windows_.load();
  s.window_exits = st_window_exits_.load();
  s.pit_ticks = st_pit_ticks_.load();
  s.pit_acks = st_pit_acks_.load();
  s.eois = st_eois_.load();
  s.eois_accelerated = st_eois_accel_.load();
  s.map_rebuilds = st_map_rebuilds_.load();
  s.pmis = st_pmis_.load();
  s.vmm_exits = st_vmm_exits_.load();
  s.pi_deliveries = st_pi_deliveries_.load();
  s.pi_notifications = st_pi_notifications_.load();
  s.pi_wakeups = st_pi_wakeups_.load();
  s.pi_suppressed_on = st_pi_suppressed_on_.load();
  s.pi_coalesced = st_pi_coalesced_.load();
  s.pi_harvests = st_pi_harvests_.load();
  s.vmx_eois_virtualized = st_vmx_eois_virtualized_.load();
  s.vmx_eoi_exits = st_vmx_eoi_exits_.load();
  s.vmx_ioapic_scans = st_vmx_ioapic_scans_.load();
  s.split_ioapic_eoi_exits = st_split_ioapic_eoi_exits_.load();
  s.avic_accelerated_accesses = st_avic_accel_accesses_.load();
  s.avic_unaccelerated_traps = st_avic_unaccel_traps_.load();
  s.avic_unaccelerated_faults = st_avic_unaccel_faults_.load();
  s.inhibits = inhibits_.stats();
  if (avic_) {
    const AvicStats a = avic_->stats();
    s.avic_accelerated_ipis = a.accelerated_ipis;
    for (size_t i = 0; i < a.incomplete_ipi.size() && i < s.avic_incomplete_ipi_by_cause.size();
         ++i) {
      s.avic_incomplete_ipi_by_cause[i] = a.incomplete_ipi[i];
      s.avic_incomplete_ipi += a.incomplete_ipi[i];
    }
    s.avic_doorbells = a.doorbells;
    s.avic_fast_hits = a.fast_hits;
    s.avic_slow_fallbacks = a.slow_fallbacks;
    s.avic_slow_kicks = a.slow_kicks;
    s.avic_vcpus_examined = a.vcpus_examined;
    s.avic_kicks = a.kicks;
  }
  return s;
}

std::unique_ptr<IrqChip> CreateApicvIrqChip(const VmConfig& config, const Clock& clock,
                                            trace::TraceSink* trace, TimerService* timers) {
  return std::make_unique<ApicvVm>(config, clock, trace, timers);
}

}  // namespace apicv::virt
