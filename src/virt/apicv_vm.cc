// ApicvVm, the owner that wires the VM's components; see apicv_vm.h.
#include "virt/apicv_vm.h"

#include <algorithm>

#include "trace/kvm_events.h"
#include "virt/vm.h"
#include "x86/apic_defs.h"

namespace apicv::virt {

namespace {

// kvm_create_pit() enables reinjection; QEMU's lost_tick_policy=discard turns it off again.
bool PitReinjects(const VmConfig& config) {
  return config.placement == IrqchipPlacement::kOn && config.pit_policy != PitPolicy::kDiscard;
}

PmuConfig PmuConfigFor(const VmConfig& config) {
  PmuConfig pc;
  pc.model = config.pmu_vendor == PmuVendor::kIntel ? PmuModel::kIntelV2 : PmuModel::kAmd;
  return pc;
}

}  // namespace

LapicConfig ApicvVm::LapicConfigFor(const VmConfig& config, const Clock& clock) {
  LapicConfig lc;
  lc.esr_sdm_mode = config.esr_sdm_mode;
  lc.maxphyaddr = config.maxphyaddr;
  lc.x2apic_supported = config.x2apic;
  lc.tsc_deadline_supported = config.tsc_deadline;
  // kvm_apic_set_version(): LVR[24] (directed EOI) only for x2APIC guests whose IOAPIC is not in
  // the kernel (0bcc3fb95b97), unless the VMM disabled Suppress EOI Broadcast. apicv models a
  // userspace LAPIC (off) as QEMU's, which has no directed EOI.
  lc.directed_eoi = config.placement == IrqchipPlacement::kSplit && lc.x2apic_supported &&
                    config.suppress_eoi_broadcast != SuppressEoiBroadcast::kDisabled;
  lc.tsc_khz = config.tsc_khz ? config.tsc_khz : clock.tsc_khz();
  return lc;
}

ApicvVm::ApicvVm(const VmConfig& config, const Clock& clock, trace::TraceSink* trace,
                 TimerService* timers)
    : config_(config),
      clock_(clock),
      trace_(trace, config.placement),
      reqs_(
          config.nr_vcpus, [this](int v) { kick_.kick(v); }, [this](int v) { kick_.kick(v); }),
      inhibits_({config.vendor == VendorModel::kSvm ? Vendor::kSvm : Vendor::kVmx,
                 config.irqwin == IrqWindowMode::kCounted},
                reqs_, trace),
      vcpus_(config.nr_vcpus, LapicConfigFor(config, clock), PmuConfigFor(config)),
      timers_(reqs_),
      vmx_(config.vendor == VendorModel::kVmx
               ? std::make_unique<VmxPostedIntr>(vcpus_, reqs_, kick_)
               : nullptr),
      avic_(config.vendor == VendorModel::kSvm
                ? std::make_unique<SvmAvic>(config_, vcpus_, inhibits_, reqs_, trace)
                : nullptr),
      delivery_(config_, vcpus_, inhibits_, reqs_, kick_, trace_, avic_.get(), vmx_.get()),
      glue_(config_, clock, vcpus_, reqs_, trace_, delivery_, vmx_.get(), timers_,
            PitReinjects(config)),
      pmu_(config_, clock, LapicConfigFor(config, clock).tsc_khz, vcpus_, reqs_),
      inj_(config_, clock, vcpus_, inhibits_, reqs_, glue_, trace) {
  // kvm_apicv_init(): ABSENT (or DISABLED with --avic off). Creating the in-kernel irqchip
  // (on / split) clears ABSENT; with irqchip off the LAPIC is not KVM's and APICv stays absent.
  inhibits_.init(config.enable_apicv);
  if (config.placement != IrqchipPlacement::kOff) inhibits_.clear(InhibitReason::kAbsent);
  // kvm_create_pit() sets PIT_REINJ with reinjection on; QEMU's lost_tick_policy=discard clears it.
  if (config.placement == IrqchipPlacement::kOn) {
    inhibits_.set(InhibitReason::kPitReinj);
    if (config.pit_policy == PitPolicy::kDiscard) inhibits_.clear(InhibitReason::kPitReinj);
  }
  if (avic_) avic_->init_vcpus();
  for (int i = 0; i < config.nr_vcpus; ++i) delivery_.reset_view(i);
  delivery_.rebuild_apic_map(-1);
  for (int i = 0; i < config.nr_vcpus; ++i) {
    reqs_.vcpu(i).make_request(kReqApicvUpdate);
    glue_.publish_accept_pic_intr(i);
  }
  if (timers) {
    timers_.set_service(timers);
  } else {
    // Last: the thread calls service_timers() at once.
    host_timer_ = std::make_unique<HostTimerService>(
        clock_, [this](uint64_t now_ns) { return service_timers(now_ns); });
    timers_.set_service(host_timer_.get());
  }
}

ApicvVm::~ApicvVm() {
  // Join the host timer thread before any component it services goes away.
  host_timer_.reset();
}

bool ApicvVm::avic_is_running(int vcpu) const {
  return avic_ && avic_->is_running(vcpu);
}

Lapic& ApicvVm::lapic(int vcpu) {
  return vcpus_.lapic(vcpu);
}
Pmu& ApicvVm::pmu(int vcpu) {
  return vcpus_.pmu(vcpu);
}
const PiDesc& ApicvVm::pi_desc(int vcpu) const {
  static const PiDesc kNone{};
  return vmx_ ? vmx_->desc(vcpu) : kNone;
}
const EoiExitBitmap& ApicvVm::eoi_exit_bitmap(int vcpu) const {
  static const EoiExitBitmap kNone{};
  return vmx_ ? vmx_->eoi_exit_bitmap(vcpu) : kNone;
}

void ApicvVm::set_device_trace(bool on) {
  trace_.set_device_trace(on);
  if (avic_) avic_->set_device_trace(trace_.device());
}

void ApicvVm::set_kick(std::function<void(int)> kick) {
  kick_.set(std::move(kick));
}

void ApicvVm::set_isa_irq(unsigned irq, bool level) {
  glue_.set_isa_irq(irq, level);
}

// ---------------------------------------------------------------------------------------------
// Guest accesses: the LAPIC's (xAPIC page, x2APIC MSRs, APIC base, TSC deadline, CR8) here, the
// rest to the component that owns the address.

bool ApicvVm::owns_lapic_mmio(int vcpu, uint64_t gpa) const {
  const Lapic& lapic = vcpus_.lapic(vcpu);
  // The xAPIC page is decoded only while the APIC is enabled in xAPIC mode, at its current base.
  if (lapic.mode() != ApicMode::kXApic) return false;
  // The Lapic refuses base bits at or above MAXPHYADDR (#GP), so the base needs no further mask.
  const uint64_t base = lapic.get_apic_base() & x86::kApicBaseAddrMask;
  return gpa >= base && gpa < base + x86::kApicMmioSize;
}

AccessResult ApicvVm::mmio_read(int vcpu, uint64_t gpa, void* data, unsigned len) {
  if (!owns_lapic_mmio(vcpu, gpa)) return glue_.mmio_read(gpa, data, len);
  Lapic& lapic = vcpus_.lapic(vcpu);
  const auto offset = static_cast<uint32_t>(gpa - (lapic.get_apic_base() & x86::kApicBaseAddrMask));
  if (avic_) avic_->lapic_mmio_access(vcpu, offset, len, /*write=*/false);
  handle_lapic_output(vcpu, lapic.mmio_read(offset, data, len, now()));
  return AccessResult::kHandled;
}

AccessResult ApicvVm::mmio_write(int vcpu, uint64_t gpa, const void* data, unsigned len) {
  if (!owns_lapic_mmio(vcpu, gpa)) return glue_.mmio_write(gpa, data, len);
  Lapic& lapic = vcpus_.lapic(vcpu);
  const auto offset = static_cast<uint32_t>(gpa - (lapic.get_apic_base() & x86::kApicBaseAddrMask));
  if (avic_) avic_->lapic_mmio_access(vcpu, offset, len, /*write=*/true);
  handle_lapic_output(vcpu, lapic.mmio_write(offset, data, len, now()));
  return AccessResult::kHandled;
}

AccessResult ApicvVm::pio_in(int vcpu, uint16_t port, void* data, unsigned len) {
  (void)vcpu;
  return glue_.pio_in(port, data, len);
}

AccessResult ApicvVm::pio_out(int vcpu, uint16_t port, const void* data, unsigned len) {
  (void)vcpu;
  return glue_.pio_out(port, data, len);
}

AccessResult ApicvVm::rdmsr(int vcpu, uint32_t msr, uint64_t* value) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  if (msr == x86::kMsrApicBase) {
    *value = lapic.get_apic_base();
    return AccessResult::kHandled;
  }
  if (msr == x86::kMsrTscDeadline) {
    *value = lapic.rdmsr_tsc_deadline();
    return AccessResult::kHandled;
  }
  if (msr >= x86::kX2ApicMsrBase && msr <= x86::kX2ApicMsrEnd) {
    // kvm_x2apic_msr_read(): #GP unless the APIC is in x2APIC mode.
    if (!lapic.x2apic_mode()) return AccessResult::kGp;
    MsrAccess a = lapic.rdmsr_x2apic(msr, now());
    handle_lapic_output(vcpu, a.out);
    if (a.gp) return AccessResult::kGp;
    *value = a.value;
    return AccessResult::kHandled;
  }
  return pmu_.rdmsr(vcpu, msr, value);
}

AccessResult ApicvVm::wrmsr(int vcpu, uint32_t msr, uint64_t value) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  if (msr == x86::kMsrApicBase) {
    MsrAccess a = lapic.set_apic_base(value, /*host_initiated=*/false);
    if (a.gp) return AccessResult::kGp;
    handle_lapic_output(vcpu, a.out);
    return AccessResult::kHandled;
  }
  if (msr == x86::kMsrTscDeadline) {
    handle_lapic_output(vcpu, lapic.wrmsr_tsc_deadline(value, now(), clock_.tsc()));
    return AccessResult::kHandled;
  }
  if (msr >= x86::kX2ApicMsrBase && msr <= x86::kX2ApicMsrEnd) {
    if (!lapic.x2apic_mode()) return AccessResult::kGp;
    MsrAccess a = lapic.wrmsr_x2apic(msr, value, now());
    if (a.gp) return AccessResult::kGp;
    handle_lapic_output(vcpu, a.out);
    return AccessResult::kHandled;
  }
  return pmu_.wrmsr(vcpu, msr, value);
}

void ApicvVm::set_cr8(int vcpu, uint64_t cr8) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  if (lapic.get_cr8() == (cr8 & 0xF)) return;
  if (lapic.set_cr8(cr8)) reqs_.vcpu(vcpu).make_request(kReqEvent);
}

uint64_t ApicvVm::get_cr8(int vcpu) {
  return vcpus_.lapic(vcpu).get_cr8();
}

// ---------------------------------------------------------------------------------------------
// LAPIC side effects

void ApicvVm::handle_lapic_output(int vcpu, const LapicOutput& out) {
  glue_.publish_accept_pic_intr(vcpu);
  if (out.map_dirty) delivery_.rebuild_apic_map(vcpu, out.xapic_id_written);
  if (out.base_modified) inhibits_.set(InhibitReason::kApicBaseModified);
  if (out.apicv_update) reqs_.vcpu(vcpu).make_request(kReqApicvUpdate);
  if (out.ipi) delivery_.send_ipi(vcpu, *out.ipi);
  if (out.eoi) eoi(vcpu, *out.eoi);
  // apic_set_eoi() traces an EOI write that finds the ISR empty as vector -1 and stops there. An
  // EOI the AVIC/APICv "hardware" completes never reaches it: with the ISR empty nothing is
  // level-triggered (AVIC does not trap) and SVI is 0, outside the EOI-exit bitmap (APICv).
  if (out.eoi_empty && !inhibits_.vcpu_apicv_active(vcpu))
    trace::trace_kvm_eoi(trace_.lapic(), static_cast<uint32_t>(vcpu), -1);
  if (out.timer_changed) note_timer(vcpu);
  if (out.event) reqs_.vcpu(vcpu).make_request(kReqEvent);
}

void ApicvVm::eoi(int vcpu, const LapicEoi& eoi) {
  // With APICv active the vendor's hardware may complete the EOI without an exit: VMX EOI
  // virtualization for vectors outside the EOI-exit bitmap, AVIC for edge-triggered vectors.
  if (inhibits_.vcpu_apicv_active(vcpu)) {
    if (vmx_ && vmx_->eoi_virtualized(vcpu, eoi.vector)) return;
    if (avic_ && avic_->eoi_accelerated(eoi.level_triggered)) return;
  }
  glue_.eoi(vcpu, eoi);
}

// ---------------------------------------------------------------------------------------------
// Entry, exit, halt

void ApicvVm::update_apicv(int vcpu) {
  // __kvm_vcpu_update_apicv(): APICv needs an in-kernel LAPIC that is enabled.
  const bool lapic_in_kernel = config_.placement != IrqchipPlacement::kOff;
  if (inhibits_.update_vcpu_apicv(vcpu, lapic_in_kernel && vcpus_.lapic(vcpu).hw_enabled()))
    reqs_.vcpu(vcpu).make_request(kReqEvent);
}

void ApicvVm::sync_posted(int vcpu) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  if (lapic.has_posted()) lapic.sync_pir_to_irr();
  if (vmx_) vmx_->sync_pir_to_irr(vcpu);
}

Injection ApicvVm::check_and_inject_events(int vcpu, bool ready, bool if_set) {
  (void)if_set;
  // vcpu_enter_guest()'s request processing, each request to the component that owns it.
  VcpuRequests& r = reqs_.vcpu(vcpu);
  bool req_event = false;
  if (r.requests_pending()) {
    if (r.check_request(kReqApicvUpdate)) update_apicv(vcpu);
    if (r.check_request(kReqPmi)) pmu_.deliver_pmi(vcpu);  // at most one PMI per entry
    if (r.check_request(kReqScanIoapic) && vmx_)
      vmx_->load_eoi_exitmap(vcpu, glue_.ioapic_handled_vectors(vcpu, /*with_ack_notifier=*/true));
    req_event = r.check_request(kReqEvent);
  }
  sync_posted(vcpu);
  return inj_.check_and_inject_events(vcpu, ready, req_event);
}

void ApicvVm::interrupt_window_exit(int vcpu) {
  inj_.interrupt_window_exit(vcpu);
}

void ApicvVm::vcpu_enter(int vcpu) {
  VcpuRequests& r = reqs_.vcpu(vcpu);
  r.set_blocked(false);
  r.enter_guest_mode();
  // __avic_vcpu_load / avic_vcpu_unblocking: IsRunning after the mode, so a sender that reads
  // IsRunning = 1 also sees IN_GUEST_MODE when it kicks.
  if (avic_) avic_->vcpu_load(vcpu);
  if (pmu_.cycles_enter(vcpu)) note_timer(vcpu);
  // A request that raced with the checks above must not wait for the next exit. On vmx the same
  // holds for a posted interrupt whose sender saw us outside guest mode (KVM syncs PIR again
  // after setting IN_GUEST_MODE); the mode store above and the sender's ON RMW are seq_cst.
  if (r.requests_pending() || (vmx_ && vmx_->on(vcpu))) kick_.kick(vcpu);
}

void ApicvVm::vcpu_exit(int vcpu) {
  // __avic_vcpu_put: the vCPU leaves its pCPU (KVM_RUN returns to the VMM).
  if (avic_) avic_->vcpu_put(vcpu);
  reqs_.vcpu(vcpu).exit_guest_mode();
  pmu_.cycles_exit(vcpu);
}

bool ApicvVm::has_events(int vcpu, bool if_set) {
  VcpuRequests& r = reqs_.vcpu(vcpu);
  // The backend halts when this returns false: mark the vCPU blocked *before* looking, so a
  // sender that posts afterwards sees blocked() and wakes it (no lost wake-up; seq_cst on both
  // sides, docs/kick-protocol.md).
  r.set_blocked(true);
  // avic_vcpu_blocking(): IsRunning is cleared before the final check, so a sender that sets IRR
  // afterwards exits with TARGET_NOT_RUNNING and wakes us (seq_cst on both sides).
  if (avic_) avic_->vcpu_blocking(vcpu);
  if (r.check_request(kReqApicvUpdate)) update_apicv(vcpu);
  sync_posted(vcpu);
  const bool ev = inj_.has_events(vcpu, if_set);
  if (ev) {
    r.set_blocked(false);
    if (avic_) avic_->vcpu_load(vcpu);  // avic_vcpu_unblocking
  }
  return ev;
}

MpEvent ApicvVm::take_mp_event(int vcpu) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  MpEvent ev;
  // kvm_apic_accept_events(): INIT, then a SIPI latched before it in the same pass.
  if (lapic.take_init()) {
    // The INIT reset drops queued NMIs, arbitration counts, posted vectors and the VMM layer's
    // ExtINT; a SIPI latched before the INIT was processed survives.
    handle_lapic_output(vcpu, lapic.reset(/*init_only=*/true));
    delivery_.reset_arb_prio(vcpu);
    if (vmx_) vmx_->clear(vcpu);
    inj_.init_vcpu(vcpu);
    ev.kind = MpEvent::kInit;
    return ev;
  }
  uint8_t sipi = 0;
  if (lapic.take_sipi(&sipi)) {
    ev.kind = MpEvent::kSipi;
    ev.sipi_vector = sipi;
  }
  return ev;
}

void ApicvVm::instruction_emulated(int vcpu) {
  pmu_.instruction_emulated(vcpu);
}

bool ApicvVm::instructions_retired(int vcpu, uint64_t count, uint8_t cpl) {
  return pmu_.instructions_retired(vcpu, count, cpl);
}

uint64_t ApicvVm::instructions_to_pmi(int vcpu, uint8_t cpl) {
  return pmu_.instructions_to_pmi(vcpu, cpl);
}

// ---------------------------------------------------------------------------------------------
// Timers (the seam of virt/timer_service.h)

uint64_t ApicvVm::service_timers(uint64_t t) {
  glue_.service_timers(t);
  timers_.service_vcpus(t);
  return next_deadline_ns();
}

uint64_t ApicvVm::next_deadline_ns() {
  return std::min(glue_.next_deadline_ns(), timers_.next_vcpu_deadline());
}

uint64_t ApicvVm::next_deadline_ns(int vcpu) {
  return vcpus_.lapic(vcpu).next_timer_deadline_ns();
}

void ApicvVm::run_timers(int vcpu) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  if (lapic.next_timer_deadline_ns() <= now()) {
    if (lapic.on_timer(now())) reqs_.vcpu(vcpu).make_request(kReqEvent);
    note_timer(vcpu);
  }
}

void ApicvVm::note_timer(int vcpu) {
  timers_.publish(vcpu, std::min(vcpus_.lapic(vcpu).next_timer_deadline_ns(), pmu_.deadline(vcpu)));
}

// ---------------------------------------------------------------------------------------------
// RESET, statistics

void ApicvVm::reset() {
  // Every vCPU is out of the guest (backend contract).
  if (config_.apic_id_check == ApicIdCheck::k2022) {
    // The 2022 reboot report: restoring a LAPIC whose ID register still holds the x2APIC ID
    // (unshifted) made KVM read xAPIC ID = id >> 24 and flag vCPUs other than 0 as modified.
    for (int i = 0; i < config_.nr_vcpus; ++i) {
      const Lapic& l = vcpus_.lapic(i);
      if (l.x2apic_mode() && ((l.reg(x86::kApicId) >> 24) & 0xFF) != static_cast<uint32_t>(i))
        inhibits_.set(InhibitReason::kApicIdModified);
    }
  }
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    Lapic& lapic = vcpus_.lapic(i);
    lapic.reset(/*init_only=*/false);
    delivery_.reset_arb_prio(i);
    glue_.publish_accept_pic_intr(i);
    lapic.sync_pir_to_irr();
    if (vmx_) vmx_->clear(i);
    vcpus_.pmu(i).reset();
    inj_.reset_vcpu(i);
    timers_.clear(i);
    delivery_.reset_view(i);
  }
  glue_.reset();
  delivery_.rebuild_apic_map(-1);
  for (int i = 0; i < config_.nr_vcpus; ++i) reqs_.vcpu(i).make_request(kReqApicvUpdate);
  timers_.deadline_changed();
}

VmStats ApicvVm::stats() const {
  const ApicDeliveryStats d = delivery_.stats();
  const IrqchipGlueStats g = glue_.stats();
  const EventInjectionStats e = inj_.stats();
  VmStats s;
  s.ipis = d.ipis;
  s.ipi_kicks = d.ipi_kicks;
  s.map_rebuilds = d.map_rebuilds;
  s.injections = e.injections;
  s.hw_deliveries = e.hw_deliveries;
  s.nmis = e.nmis;
  s.windows_requested = e.windows_requested;
  s.window_exits = e.window_exits;
  s.pit_ticks = g.pit_ticks;
  s.pit_acks = g.pit_acks;
  s.eois = g.eois;
  s.vmm_exits = g.vmm_exits + e.vmm_exits;
  s.split_ioapic_eoi_exits = g.split_ioapic_eoi_exits;
  s.pmis = pmu_.pmis();
  s.inhibits = inhibits_.stats();
  if (vmx_) {
    const VmxPostedIntrStats p = vmx_->stats();
    s.ipi_kicks += p.kicks;
    s.eois_accelerated += p.eois_virtualized;
    s.pi_deliveries = p.deliveries;
    s.pi_notifications = p.notifications;
    s.pi_wakeups = p.wakeups;
    s.pi_suppressed_on = p.suppressed_on;
    s.pi_coalesced = p.coalesced;
    s.pi_harvests = p.harvests;
    s.vmx_eois_virtualized = p.eois_virtualized;
    s.vmx_eoi_exits = p.eoi_exits;
    s.vmx_ioapic_scans = p.ioapic_scans;
  }
  if (avic_) {
    const SvmAvicStats v = avic_->stats();
    const AvicStats& a = v.avic;
    s.ipi_kicks += v.ipi_kicks;
    s.eois_accelerated += v.eois_accelerated;
    s.avic_accelerated_accesses = v.accelerated_accesses;
    s.avic_unaccelerated_traps = v.unaccelerated_traps;
    s.avic_unaccelerated_faults = v.unaccelerated_faults;
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
