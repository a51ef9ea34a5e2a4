// ApicvVm: see apicv_vm.h.
#include "virt/apicv_vm.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

#include "irq/match_dest.h"
#include "trace/kvm_events.h"
#include "virt/avic.h"
#include "virt/vm.h"
#include "x86/ioapic_defs.h"

namespace apicv::virt {

using x86::DeliveryMode;
using x86::InterruptRequest;

namespace {

constexpr uint64_t kIoApicBase = 0xFEC00000ull;
constexpr uint64_t kIoApicSize = 0x100;  // KVM's IOAPIC_MEM_LENGTH
constexpr uint16_t kTestDevBase = 0x2000;
constexpr uint16_t kTestDevEnd = 0x2017;
constexpr unsigned kIsaIrq0IoApicPin = 2;
// Linux's POSTED_INTR_VECTOR: the notification vector KVM writes into every PiDesc.NV.
constexpr uint8_t kPostedIntrVector = 0xF2;
// kvm_set_irq() sources: KVM_USERSPACE_IRQ_SOURCE_ID (KVM_IRQ_LINE) and KVM_PIT_IRQ_SOURCE_ID.
constexpr int kUserspaceIrqSourceId = 0;
constexpr int kPitIrqSourceId = 2;
// KVM_IRQCHIP_* numbers printed by kvm_ack_irq.
constexpr unsigned kIrqchipPicMaster = 0;
constexpr unsigned kIrqchipPicSlave = 1;
constexpr unsigned kIrqchipIoapic = 2;
// KVM's min_timer_period_us module parameter default, in ns.
constexpr uint64_t kKvmMinTimerPeriodNs = 200'000;

bool TraceOn(const trace::TraceSink* sink) {
  return sink && sink->enabled();
}

// PMU MSRs served by the vPMU (Intel v2 and AMD legacy / core extension).
bool IsPmuMsrRange(uint32_t msr) {
  return (msr >= 0xC1 && msr <= 0xC4) || (msr >= 0x186 && msr <= 0x189) ||
         (msr >= 0x309 && msr <= 0x30B) || (msr >= 0x38D && msr <= 0x390) || msr == 0x345 ||
         (msr >= 0xC0010000 && msr <= 0xC0010007) || (msr >= 0xC0010200 && msr <= 0xC001020B);
}

uint64_t LoadLe(const void* data, unsigned len) {
  uint64_t v = 0;
  std::memcpy(&v, data, std::min(len, 8u));
  return v;
}

void StoreLe(void* data, unsigned len, uint64_t v) {
  std::memcpy(data, &v, std::min(len, 8u));
}

// The ICR value a guest wrote, rebuilt from its decoded request (x86::DecodeIcr is lossless for
// every field the AVIC hardware looks at).
uint32_t IcrLow(const InterruptRequest& r) {
  return r.vector | (static_cast<uint32_t>(r.delivery_mode) << x86::kIcrDeliveryModeShift) |
         (r.dest_logical ? x86::kIcrDestLogical : 0) | (r.level ? x86::kIcrLevelAssert : 0) |
         (r.trigger_level ? x86::kIcrTriggerLevel : 0) |
         (static_cast<uint32_t>(r.shorthand) << x86::kIcrShorthandShift);
}

uint32_t IcrHigh(const InterruptRequest& r) {
  return r.source_x2apic ? r.dest_id : (r.dest_id & 0xFF) << 24;
}

// A vCPU stays on "its" pCPU: the host APIC ID in its physical table entry is its index.
uint32_t HostApicId(int vcpu) {
  return static_cast<uint32_t>(vcpu) & 0xFFF;
}

// The VMM's IOAPIC serves the directed EOIs KVM lets through with Suppress EOI Broadcast enabled:
// QEMU's version 0x20 with the EOI register. Otherwise KVM's (and QEMU's legacy) 0x11.
IoApicConfig IoApicConfigFor(const VmConfig& config) {
  if (config.suppress_eoi_broadcast != SuppressEoiBroadcast::kQuirk &&
      config.placement != IrqchipPlacement::kSplit)
    throw std::invalid_argument(
        "Suppress EOI Broadcast flags need kernel-irqchip=split (KVM_CAP_X2APIC_API: EINVAL)");
  IoApicConfig c;
  if (config.suppress_eoi_broadcast == SuppressEoiBroadcast::kEnabled)
    c.version = x86::kIoApicVersionEoiRegister;
  return c;
}

}  // namespace

struct ApicvVm::VcpuCtx {
  VcpuCtx(int id, const LapicConfig& lc, const PmuConfig& pc)
      : lapic(static_cast<uint32_t>(id), id == 0, lc), pmu(pc) {}
  Lapic lapic;
  Pmu pmu;
  // Published LAPIC timer / vPMU deadline for service_timers(); the owner writes it.
  std::atomic<uint64_t> timer_deadline{UINT64_MAX};
  // The deadline service_timers() last kicked for (written by the one servicing thread, read by
  // next_deadline_ns() on any thread).
  std::atomic<uint64_t> kicked_deadline{UINT64_MAX};
  // KVM's vcpu->arch.apic_arb_prio: lowest-priority messages that reached this vCPU since its
  // last INIT/RESET; the arbitration input when vector hashing is off.
  std::atomic<uint32_t> arb_prio{0};
  // kvm_apic_accept_pic_intr() as of the owner's last LAPIC change (LVT0, APIC base, reset),
  // published for the vCPU that picks whom an ExtINT kicks.
  std::atomic<bool> accepts_pic_intr{false};
  // When an enabled cycle counter with PMI wraps if the guest keeps running (owner thread).
  uint64_t pmu_deadline = UINT64_MAX;
  int pending_external_vector = -1;  // split placement: the VMM layer's ExtINT (owner thread)
  bool model_window = false;         // the model opened an IRQ window (owner thread)
  // Vendor vmx. The trigger mode of a posted vector is written before its PIR bit, as
  // vmx_deliver_interrupt() writes the vAPIC TMR before posting; read when harvesting.
  PiDesc pi;
  std::array<std::atomic<uint32_t>, 8> pi_tmr{};
  EoiExitBitmap eoi_exit_bitmap;  // owner thread
};

// What the AVIC hardware and KVM's SVM code do to other vCPUs. One per ICR write, on the sender's
// thread: it pins the map snapshot the hardware walk reads views from.
class ApicvVm::AvicOps final : public AvicVcpuOps {
 public:
  AvicOps(ApicvVm& vm, std::shared_ptr<const MapSnapshot> snap) : vm_(vm), snap_(std::move(snap)) {}
  void set_irr(int vcpu, uint8_t vector) override {
    vm_.vcpus_[static_cast<size_t>(vcpu)]->lapic.post(vector, /*level=*/false);
  }
  // The doorbell makes a running target evaluate its IRR; a wake-up makes a halted one run; both
  // become the backend's kick here. KVM_REQ_EVENT is set on every path so a target between its
  // event check and guest entry sees a pending request in vcpu_enter and does not miss the IRR.
  void ring_doorbell(int vcpu) override { kick(vcpu); }
  void wake(int vcpu) override { kick(vcpu); }
  void request_event_and_kick(int vcpu) override { kick(vcpu); }
  bool in_guest_mode(int vcpu) override {
    return vm_.reqs_.vcpu(vcpu).mode() == VcpuMode::kInGuestMode;
  }
  bool apicv_active(int vcpu) override { return vm_.inhibits_.vcpu_apicv_active(vcpu); }
  const irq::ApicView& view(int vcpu) override {
    static const irq::ApicView kAbsent{};
    if (vcpu < 0 || static_cast<size_t>(vcpu) >= snap_->views.size()) return kAbsent;
    return snap_->views[static_cast<size_t>(vcpu)];
  }

 private:
  void kick(int vcpu) {
    vm_.st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
    vm_.reqs_.make_request_and_kick(vcpu, kReqEvent);
  }
  ApicvVm& vm_;
  std::shared_ptr<const MapSnapshot> snap_;
};

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

void ApicvVm::send_ipi(int src, const InterruptRequest& req) {
  st_ipis_.fetch_add(1, std::memory_order_relaxed);
  // With AVIC active on the sender, the hardware takes the ICR write; KVM only sees it when it
  // exits with AVIC_INCOMPLETE_IPI. When the sender's AVIC is inhibited, the write traps and KVM
  // emulates it (kvm_apic_send_ipi).
  if (avic_ && req.from_ipi && src >= 0 && src < config_.nr_vcpus &&
      inhibits_.vcpu_apicv_active(src)) {
    avic_send_ipi(src, req);
    return;
  }
  kvm_apic_send_ipi(src, req);
}

void ApicvVm::kvm_apic_send_ipi(int src, const InterruptRequest& req) {
  // kvm_apic_send_ipi() traces the ICR low word (BUSY already cleared) and the decoded
  // destination: ICR[63:32] for an x2APIC source, ICR2[31:24] for xAPIC.
  trace::trace_kvm_apic_ipi(lapic_trace(), IcrLow(req), req.dest_id);
  route_and_deliver(src, req);
}

void ApicvVm::avic_send_ipi(int src, const InterruptRequest& req) {
  AvicOps ops(*this, load_map());
  const uint32_t icrl = IcrLow(req);
  const uint32_t icrh = IcrHigh(req);
  const AvicIcrResult r = avic_->handle_icr_write(src, icrl, icrh, req.source_x2apic, ops);
  if (!r.exit) return;
  switch (avic_->avic_incomplete_ipi_interception(src, icrl, icrh, static_cast<uint32_t>(r.cause),
                                                  r.index, ops)) {
    case AvicIncompleteIpiAction::kSendIpi:
    case AvicIncompleteIpiAction::kWriteIcrNodecode:
      // INVALID_INT_TYPE / INVALID_TARGET: the hardware touched no IRR; KVM emulates the whole
      // IPI through the ICR write path.
      kvm_apic_send_ipi(src, req);
      return;
    case AvicIncompleteIpiAction::kNone:           // TARGET_NOT_RUNNING: IRRs set, targets kicked
    case AvicIncompleteIpiAction::kIgnoredVector:  // vector < 16: dropped as by the hardware
    case AvicIncompleteIpiAction::kWarnBackingPage:
    case AvicIncompleteIpiAction::kUnhandledCause:
      return;
  }
}

void ApicvVm::route_and_deliver(int src, const InterruptRequest& req) {
  std::shared_ptr<const MapSnapshot> snap = load_map();
  thread_local irq::TargetList targets;
  targets.clear();
  if (!route_options_.vector_hashing && irq::IsLowestPriority(req)) {
    // kvm_apic_compare_prio() reads each candidate's live apic_arb_prio.
    thread_local std::vector<irq::ApicView> views;
    views = snap->views;
    for (size_t i = 0; i < views.size(); ++i)
      views[i].arb_prio = vcpus_[i]->arb_prio.load(std::memory_order_relaxed);
    irq::Route(req, &snap->map, views, route_options_, targets);
  } else {
    irq::Route(req, &snap->map, snap->views, route_options_, targets);
  }
  for (int t : targets.targets()) deliver(src, req, t);
}

int ApicvVm::ioapic_delivery_result(const InterruptRequest& req) const {
  std::shared_ptr<const MapSnapshot> snap = load_map();
  thread_local irq::TargetList targets;
  targets.clear();
  const int matched = irq::Route(req, &snap->map, snap->views, route_options_, targets);
  // The slow path starts from -1 and only a matched APIC moves it; the fast path starts from 0.
  if (matched < 0) return -1;
  int r = 0;
  for (int t : targets.targets()) {
    if (t < 0 || static_cast<size_t>(t) >= snap->views.size()) continue;
    const irq::ApicView& v = snap->views[static_cast<size_t>(t)];
    switch (req.delivery_mode) {
      case DeliveryMode::kFixed:
      case DeliveryMode::kLowestPriority:
        // __apic_accept_irq(): a level deassert carries nothing; a disabled APIC refuses.
        if (!(req.trigger_level && !req.level) && v.present && v.sw_enabled) ++r;
        break;
      case DeliveryMode::kInit:
        if (!req.trigger_level || req.level) ++r;
        break;
      case DeliveryMode::kNmi:
      case DeliveryMode::kStartup:
      case DeliveryMode::kSmi:
      case DeliveryMode::kRemoteRead:
        ++r;  // accepted by KVM (SMI and remote read are not modelled further here)
        break;
      default:
        break;  // ExtINT: __apic_accept_irq() leaves it to the PIC path (0)
    }
  }
  return r;
}

void ApicvVm::deliver(int src, const InterruptRequest& req, int target) {
  if (target < 0 || target >= config_.nr_vcpus) return;
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  trace::trace_kvm_apic_accept_irq(lapic_trace(), static_cast<uint32_t>(target),
                                   static_cast<uint16_t>(req.delivery_mode) << 8, req.trigger_level,
                                   req.vector);
  switch (req.delivery_mode) {
    case DeliveryMode::kLowestPriority:
      // __apic_accept_irq: every lowest-priority arrival counts, accepted or not.
      t.arb_prio.fetch_add(1, std::memory_order_relaxed);
      [[fallthrough]];
    case DeliveryMode::kFixed:
      // __apic_accept_irq drops a level-triggered deassert.
      if (req.trigger_level && !req.level) return;
      deliver_fixed(src, target, req);
      return;
    case DeliveryMode::kNmi:
      t.lapic.post_nmi();
      break;
    case DeliveryMode::kInit:
      if (req.trigger_level && !req.level) return;  // INIT level de-assert: ignored
      t.lapic.post_init();
      break;
    case DeliveryMode::kStartup:
      t.lapic.post_sipi(req.vector);
      break;
    default:
      return;  // SMI, remote read, ExtINT through the bus: ignored, as KVM does
  }
  // NMI / INIT / SIPI: the target may sit in the backend's wait-for-SIPI loop, which is neither
  // guest mode nor a halt; the backend's kick reaches every wait, so use it unconditionally.
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.vcpu(target).make_request(kReqEvent);
  kick(target);
}

void ApicvVm::deliver_fixed(int src, int target, const InterruptRequest& req) {
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  const uint8_t vector = req.vector;
  const bool level = req.trigger_level;
  // The vendor deliver_interrupt hook traces kvm_apicv_accept_irq when the interrupt goes through
  // the target's APICv/AVIC: vmx_deliver_interrupt() after posting,
  // svm_complete_interrupt_delivery() before the doorbell or wake-up. With APICv inhibited on the
  // target neither traces.
  const bool apicv_active = inhibits_.vcpu_apicv_active(target);
  auto trace_apicv_accept = [&] {
    trace::trace_kvm_apicv_accept_irq(lapic_trace(), static_cast<uint32_t>(target),
                                      static_cast<uint16_t>(req.delivery_mode) << 8, level, vector);
  };
  if (target == src) {
    InterruptRequest r;
    r.vector = vector;
    r.trigger_level = level;
    t.lapic.accept_irq(r);
    // The sender is outside guest mode (it is handling its own exit): no doorbell, no notification.
    if (apicv_active) trace_apicv_accept();
    reqs_.vcpu(target).make_request(kReqEvent);
    return;
  }
  // vmx_deliver_interrupt(): with APICv active on the target, post into its descriptor.
  if (config_.vendor == VendorModel::kVmx && apicv_active) {
    vmx_deliver_posted_interrupt(target, vector, level);
    trace_apicv_accept();
    return;
  }
  // Lock-free posting into the target's PIR; the owner folds it into IRR before injecting.
  t.lapic.post(vector, level);
  if (avic_ && apicv_active) {
    trace_apicv_accept();
    // avic_ring_doorbell() for a target in guest mode (the kick below stands for the doorbell).
    if (reqs_.vcpu(target).mode() == VcpuMode::kInGuestMode &&
        (src < 0 || HostApicId(src) != HostApicId(target)))
      trace::trace_kvm_avic_doorbell(lapic_trace(), static_cast<uint32_t>(target),
                                     HostApicId(target));
  }
  st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
  reqs_.make_request_and_kick(target, kReqEvent);
}

void ApicvVm::vmx_deliver_posted_interrupt(int target, uint8_t vector, bool level) {
  VcpuCtx& t = *vcpus_[static_cast<size_t>(target)];
  const int w = vector >> 5;
  const uint32_t bit = 1u << (vector & 31);
  if (level) {
    t.pi_tmr[static_cast<size_t>(w)].fetch_or(bit, std::memory_order_seq_cst);
  } else {
    t.pi_tmr[static_cast<size_t>(w)].fetch_and(~bit, std::memory_order_seq_cst);
  }
  // Only for the counters: which of the "no notification" cases it was.
  const bool was_pending = t.pi.test_pir(vector);
  st_pi_deliveries_.fetch_add(1, std::memory_order_relaxed);
  switch (deliver_posted_interrupt(t.pi, vector, reqs_.vcpu(target))) {
    case PiNotify::kNotify:
      // kvm_vcpu_trigger_posted_interrupt(): the notification IPI. The model has no hardware
      // PIR processing inside the guest, so the target exits and harvests on re-entry.
      st_pi_notifications_.fetch_add(1, std::memory_order_relaxed);
      st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
      reqs_.kick_vcpu(target);
      return;
    case PiNotify::kWake:
      // kvm_vcpu_wake_up(): a blocked target is woken; one between exit and entry finds ON in
      // vcpu_enter() or its next harvest.
      st_pi_wakeups_.fetch_add(1, std::memory_order_relaxed);
      if (reqs_.vcpu(target).blocked()) {
        st_ipi_kicks_.fetch_add(1, std::memory_order_relaxed);
        reqs_.kick_vcpu(target);
      }
      return;
    case PiNotify::kNone:
      if (was_pending) {
        st_pi_coalesced_.fetch_add(1, std::memory_order_relaxed);
      } else if (!t.pi.sn()) {
        st_pi_suppressed_on_.fetch_add(1, std::memory_order_relaxed);
      }
      return;
  }
}

void ApicvVm::vmx_sync_pir_to_irr(VcpuCtx& c) {
  if (!c.pi.on()) return;
  std::array<uint32_t, 8> posted{};
  if (!sync_pir_to_irr(c.pi, posted).harvested) return;
  st_pi_harvests_.fetch_add(1, std::memory_order_relaxed);
  // __kvm_apic_update_irr(): the vectors join IRR with the trigger mode recorded by the sender;
  // a disabled APIC drops them, as __apic_accept_irq would have.
  for (int w = 0; w < 8; ++w) {
    uint32_t bits = posted[static_cast<size_t>(w)];
    if (bits == 0) continue;
    const uint32_t level = c.pi_tmr[static_cast<size_t>(w)].load(std::memory_order_seq_cst);
    while (bits != 0) {
      const int b = std::countr_zero(bits);
      bits &= bits - 1;
      InterruptRequest r;
      r.vector = static_cast<uint8_t>(w * 32 + b);
      r.delivery_mode = DeliveryMode::kFixed;
      r.trigger_level = (level >> b) & 1u;
      r.level = true;
      c.lapic.accept_irq(r);
    }
  }
}

void ApicvVm::vmx_clear_pi(VcpuCtx& c) {
  // Posted vectors are gone with the IRR they were meant for (INIT, RESET).
  c.pi.control.fetch_and(~kPiControlOn, std::memory_order_seq_cst);
  for (auto& w : c.pi.pir) w.store(0, std::memory_order_seq_cst);
}

void ApicvVm::request_scan_ioapic() {
  // kvm_make_scan_ioapic_request(): only the VMX model keeps an EOI-exit bitmap.
  // KVM_REQ_SCAN_IOAPIC is NO_WAKEUP: a halted vCPU rescans when it next runs; one in the guest
  // is kicked so it cannot EOI with a stale bitmap for long. (KVM also waits for the kicked
  // vCPUs; nothing here depends on that.)
  if (config_.vendor != VendorModel::kVmx) return;
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    VcpuRequests& r = reqs_.vcpu(i);
    r.make_request(kReqScanIoapic);
    if (r.exiting_guest_mode() == VcpuMode::kInGuestMode) kick(i);
  }
}

void ApicvVm::vcpu_scan_ioapic(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  st_vmx_ioapic_scans_.fetch_add(1, std::memory_order_relaxed);
  c.eoi_exit_bitmap = ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/true);
}

EoiExitBitmap ApicvVm::ioapic_handled_vectors(VcpuCtx& c, int vcpu, bool with_ack_notifier) {
  EoiExitBitmap b;
  // vcpu_scan_ioapic(): nothing for an absent APIC.
  if (!c.lapic.hw_enabled()) return b;
  std::array<uint64_t, x86::kIoApicNumPins> rtes;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    for (unsigned p = 0; p < x86::kIoApicNumPins; ++p) rtes[p] = ioapic_.rte(p);
  }
  const LapicIdentity id = c.lapic.identity();
  const irq::ApicView self{id.vcpu_id,  id.hw_enabled, id.x2apic, id.sw_enabled,
                           id.xapic_id, id.ldr,        id.dfr,    0};
  // kvm_ioapic_scan_entry() / kvm_scan_ioapic_routes(): level-triggered pins and (in-kernel
  // IOAPIC only) pins with an ack notifier (the PIT's GSI 0, routed to pin 2, while reinjection
  // is on), masked or not, whose destination is this vCPU, or whose vector this vCPU still has in
  // IRR/ISR (kvm_apic_pending_eoi).
  for (unsigned p = 0; p < x86::kIoApicNumPins; ++p) {
    const uint64_t e = rtes[p];
    const bool ack_notifier = with_ack_notifier && p == kIsaIrq0IoApicPin && pit_reinject_;
    if (!(e & x86::kRteTriggerLevel) && !ack_notifier) continue;
    const uint8_t vec = static_cast<uint8_t>(e & x86::kRteVectorMask);
    const uint32_t dest = static_cast<uint32_t>((e & x86::kRteDestMask) >> x86::kRteDestShift);
    const uint32_t word = static_cast<uint32_t>(vec >> 5) * 0x10;
    const bool pending_eoi =
        ((c.lapic.reg(x86::kApicIsr + word) | c.lapic.reg(x86::kApicIrr + word)) >> (vec & 31)) &
        1u;
    if (irq::MatchDest(self, vcpu, nullptr, -1, x86::Shorthand::kNone, dest,
                       e & x86::kRteDestLogical, route_options_.x2apic_broadcast_quirk_disabled) ||
        pending_eoi)
      b.set(vec);
  }
  return b;
}

void ApicvVm::eoi_broadcast(int vcpu, const LapicEoi& eoi) {
  const bool apicv_active = inhibits_.vcpu_apicv_active(vcpu);
  // APICv EOI virtualization (SDM 30.1.3): the Lapic already completed the EOI (ISR, PPR); only a
  // vector in the EOI-exit bitmap makes it exit to the hypervisor (handle_apic_eoi_induced).
  if (config_.vendor == VendorModel::kVmx && apicv_active) {
    if (!vcpus_[static_cast<size_t>(vcpu)]->eoi_exit_bitmap.test(eoi.vector)) {
      st_eois_accel_.fetch_add(1, std::memory_order_relaxed);
      st_vmx_eois_virtualized_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    st_vmx_eoi_exits_.fetch_add(1, std::memory_order_relaxed);
  }
  // AVIC completes edge-triggered EOIs in the backing page: no exit, no IOAPIC EOI, no ack
  // notifier. That is why PIT reinjection (which needs the ack) inhibits AVIC.
  if (config_.vendor == VendorModel::kSvm && apicv_active &&
      Avic::eoi_accelerated(eoi.level_triggered)) {
    st_eois_accel_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Only EOIs that reach KVM's emulation (apic_set_eoi, kvm_apic_set_eoi_accelerated) trace.
  trace::trace_kvm_eoi(lapic_trace(), static_cast<uint32_t>(vcpu), eoi.vector);
  st_eois_.fetch_add(1, std::memory_order_relaxed);
  if (config_.placement == IrqchipPlacement::kSplit) {
    // kvm_ioapic_send_eoi() with a split irqchip: a vector in ioapic_handled_vectors (the
    // level-triggered routes scanned for this vCPU) sets pending_ioapic_eoi and exits with
    // KVM_EXIT_IOAPIC_EOI; the VMM-layer IOAPIC then does the EOI. Other vectors stop here.
    VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
    if (!ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/false).test(eoi.vector)) return;
    // Suppress EOI Broadcast (SVR[12]) honoured only when the VMM enabled it: no exit, the guest
    // EOIs the IOAPIC through its EOI register. In the legacy quirk KVM ignores the bit.
    if (eoi.directed && config_.suppress_eoi_broadcast == SuppressEoiBroadcast::kEnabled) return;
    st_split_ioapic_eoi_exits_.fetch_add(1, std::memory_order_relaxed);
    st_vmm_exits_.fetch_add(1, std::memory_order_relaxed);
  }
  IoApicOutput out;
  bool deferred = false;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    const uint64_t before = ioapic_.next_deadline_ns();
    out = ioapic_.eoi(eoi.vector, eoi.level_triggered, now());
    deferred = ioapic_.next_deadline_ns() < before;
  }
  // The storm guard deferred a re-delivery: the timer service must learn the new deadline.
  if (deferred) timer_deadline_changed();
  // kvm_ioapic_update_eoi_one() runs kvm_notify_acked_irq() (kvm_ack_irq) for every pin with the
  // EOIed vector, before the pin's notifier acts. KVM only gets there for vectors in
  // ioapic_handled_vectors (kvm_ioapic_send_eoi); the model's IOAPIC sees every EOI, so the
  // trace is filtered here.
  if (out.acked_pins != 0 && TraceOn(kernel_irqchip_trace())) {
    VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
    if (ioapic_handled_vectors(c, vcpu, /*with_ack_notifier=*/true).test(eoi.vector)) {
      for (uint32_t pins = out.acked_pins; pins != 0; pins &= pins - 1)
        trace::trace_kvm_ack_irq(kernel_irqchip_trace(), kIrqchipIoapic,
                                 static_cast<unsigned>(std::countr_zero(pins)));
    }
  }
  ioapic_output(out);
}

void ApicvVm::ioapic_output(const IoApicOutput& out) {
  if (out.acked_pins & (1u << kIsaIrq0IoApicPin)) ack_notify_isa_irq(0);
  if (out.mask_changed_pins & (1u << kIsaIrq0IoApicPin)) {
    bool masked;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      masked = ioapic_.rte(kIsaIrq0IoApicPin) & (1ull << 16);
    }
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.irq0_mask_changed(masked);
  }
  const bool split_msi = config_.placement == IrqchipPlacement::kSplit && TraceOn(lapic_trace());
  for (unsigned i = 0; i < out.num_deliveries; ++i) {
    const IoApicDelivery& d = out.deliveries[i];
    if (split_msi) trace_split_ioapic_msi(d.pin, /*assert_only=*/true);
    route_and_deliver(-1, d.irq);
    if (split_msi && !d.irq.trigger_level) trace_split_ioapic_msi(d.pin, /*assert_only=*/false);
  }
}

// kernel-irqchip=split: the VMM's IOAPIC raises a pin through KVM_IRQ_LINE on the GSI the VMM
// routed as an MSI (QEMU: GSI = pin, MSI address/data built from the RTE; an edge pin is raised
// and lowered at once, a level pin only raised). kvm_set_irq() traces the line, kvm_set_msi()
// traces kvm_msi_set_irq for the assertion only (it returns before the trace when level is 0).
void ApicvVm::trace_split_ioapic_msi(unsigned pin, bool assert_only) {
  trace::TraceSink* tp = lapic_trace();
  if (!assert_only) {
    trace::trace_kvm_set_irq(tp, pin, 0, kUserspaceIrqSourceId);
    return;
  }
  uint64_t e;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    e = ioapic_.rte(pin);
  }
  trace::trace_kvm_set_irq(tp, pin, 1, kUserspaceIrqSourceId);
  // QEMU's ioapic_entry_parse(): address = 0xFEE00000 | RTE[63:48] << 4 | dest mode << 2; data =
  // vector | delivery mode << 8 | trigger << 15.
  const uint64_t address =
      0xFEE00000ull | (((e >> 48) & 0xFFFF) << 4) | ((e & x86::kRteDestLogical) ? (1ull << 2) : 0);
  const uint64_t data = (e & x86::kRteVectorMask) | (e & x86::kRteDeliveryModeMask) |
                        ((e & x86::kRteTriggerLevel) ? (1ull << 15) : 0);
  trace::trace_kvm_msi_set_irq(tp, address, data);
}

void ApicvVm::trace_pic_acks(uint16_t acked_irqs) {
  // pic_clear_isr() -> kvm_notify_acked_irq(SELECT_PIC(irq), irq): irq counts 0-15 across both
  // chips, so a slave pin prints as 8-15.
  for (uint32_t irqs = acked_irqs; irqs != 0; irqs &= irqs - 1) {
    const unsigned irq = static_cast<unsigned>(std::countr_zero(irqs));
    trace::trace_kvm_ack_irq(kernel_irqchip_trace(), irq < 8 ? kIrqchipPicMaster : kIrqchipPicSlave,
                             irq);
  }
}

void ApicvVm::pic_output(const PicOutput& out) {
  if (out.acked_irqs != 0 && TraceOn(kernel_irqchip_trace())) trace_pic_acks(out.acked_irqs);
  if (out.acked_irqs & 1u) ack_notify_isa_irq(0);
  if (out.mask_changed_irqs & 1u) {
    bool masked;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      masked = pic_.imr(0) & 1u;
    }
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.irq0_mask_changed(masked);
  }
  if (out.output_changed && pic_output_.load(std::memory_order_acquire)) kick_extint_vcpu();
}

void ApicvVm::kick_extint_vcpu() {
  // KVM's pic_unlock(): the first vCPU for which kvm_apic_accept_pic_intr() holds (LVT0 unmasked
  // in ExtINT mode, or the LAPIC hardware-disabled) gets KVM_REQ_EVENT and a kick; none, nobody.
  // The target re-evaluates accept_pic_intr() on its own thread before injecting.
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    if (vcpus_[static_cast<size_t>(i)]->accepts_pic_intr.load(std::memory_order_acquire)) {
      reqs_.make_request_and_kick(i, kReqEvent);
      return;
    }
  }
}

void ApicvVm::publish_accept_pic_intr(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  c.accepts_pic_intr.store(c.lapic.accept_pic_intr(), std::memory_order_release);
}

void ApicvVm::ack_notify_isa_irq(unsigned irq) {
  if (irq != 0 || !pit_reinject_) return;
  st_pit_acks_.fetch_add(1, std::memory_order_relaxed);
  PitOutput out;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    out = pit_.ack_irq();
  }
  pit_output(out);
}

void ApicvVm::pit_output(const PitOutput& out) {
  for (unsigned i = 0; i < out.irq0_pulses; ++i) {
    st_pit_ticks_.fetch_add(1, std::memory_order_relaxed);
    // pit_do_work(): kvm_set_irq(GSI 0, 1) then (GSI 0, 0) from the PIT's source.
    set_irq_line(0, true, kPitIrqSourceId);
    set_irq_line(0, false, kPitIrqSourceId);
  }
}

void ApicvVm::set_isa_irq(unsigned irq, bool level) {
  set_irq_line(irq, level, kUserspaceIrqSourceId);
}

void ApicvVm::set_irq_line(unsigned irq, bool level, int irq_source_id) {
  if (irq >= 24) return;
  // kvm_set_irq() traces the GSI before walking its routes (PIC, then IOAPIC). Only with the
  // in-kernel PIC/IOAPIC: with split/off the line belongs to the VMM's devices.
  trace::trace_kvm_set_irq(kernel_irqchip_trace(), irq, level ? 1 : 0, irq_source_id);
  if (irq < 16) {
    PicOutput pout;
    uint8_t elcr, imr;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      pout = pic_.set_irq(irq, level);
      pic_output_.store(pic_.output(), std::memory_order_release);
      elcr = pic_.elcr(irq >> 3);
      imr = pic_.imr(irq >> 3);
    }
    // kvm_pic_set_irq(): traced after pic_update_irq(), " (coalesced)" when pic_set_irq1()
    // returned 0.
    trace::trace_kvm_pic_set_irq(kernel_irqchip_trace(), static_cast<uint8_t>(irq >> 3),
                                 static_cast<uint8_t>(irq & 7), elcr, imr, pout.coalesced);
    pic_output(pout);
  }
  const unsigned pin = irq == 0 ? kIsaIrq0IoApicPin : irq == kIsaIrq0IoApicPin ? 0xFF : irq;
  if (pin < x86::kIoApicNumPins) {
    IoApicOutput out;
    uint64_t rte;
    {
      std::lock_guard<std::mutex> g(ioapic_mu_);
      out = ioapic_.set_irq(pin, level, now());
      rte = ioapic_.rte(pin);
    }
    // KVM traces every ioapic_set_irq() call, deassertions included, with the entry's bits.
    trace::trace_kvm_ioapic_set_irq(kernel_irqchip_trace(), rte, static_cast<int>(pin),
                                    out.coalesced);
    ioapic_output(out);
  }
}

// ---------------------------------------------------------------------------------------------
// Event injection (kvm_check_and_inject_events)

void ApicvVm::update_apicv(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  // __kvm_vcpu_update_apicv(): APICv needs an in-kernel LAPIC that is enabled.
  const bool lapic_in_kernel = config_.placement != IrqchipPlacement::kOff;
  if (inhibits_.update_vcpu_apicv(vcpu, lapic_in_kernel && c.lapic.hw_enabled()))
    reqs_.vcpu(vcpu).make_request(kReqEvent);
}

bool ApicvVm::has_extint(VcpuCtx& c) {
  if (!c.lapic.accept_pic_intr()) return false;
  if (config_.placement == IrqchipPlacement::kSplit) return c.pending_external_vector >= 0;
  return pic_output_.load(std::memory_order_acquire);
}

int ApicvVm::take_extint(VcpuCtx& c) {
  if (config_.placement == IrqchipPlacement::kSplit) {
    const int v = c.pending_external_vector;
    c.pending_external_vector = -1;
    return v;
  }
  PicOutput out;
  uint8_t vec;
  {
    std::lock_guard<std::mutex> g(pic_mu_);
    vec = pic_.acknowledge(&out);
    pic_output_.store(pic_.output(), std::memory_order_release);
  }
  pic_output(out);
  return vec;
}

void ApicvVm::deliver_pmi(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  // kvm_apic_local_deliver(LVTPC); since 2023 (a16eb25b09c0, restricted to Intel in 2024) LVTPC is
  // masked on delivery so a second PMI cannot follow before the guest's handler unmasks it.
  const bool mask = config_.pmi_delivery == PmiDelivery::kCurrent && c.pmu.mask_lvtpc_on_pmi();
  if (c.lapic.local_deliver(x86::kApicLvtPc, mask)) {
    st_pmis_.fetch_add(1, std::memory_order_relaxed);
    // An LVTPC in NMI mode queued the NMI in the Lapic's latch.
    reqs_.vcpu(vcpu).make_request(kReqEvent);
  }
}

Injection ApicvVm::check_and_inject_events(int vcpu, bool ready, bool if_set) {
  (void)if_set;
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  VcpuRequests& r = reqs_.vcpu(vcpu);
  Injection inj;

  bool req_event = false;
  if (r.requests_pending()) {
    if (r.check_request(kReqApicvUpdate)) update_apicv(vcpu);
    if (r.check_request(kReqPmi)) deliver_pmi(vcpu);  // at most one PMI per entry
    if (r.check_request(kReqScanIoapic)) vcpu_scan_ioapic(vcpu);
    req_event = r.check_request(kReqEvent);
  }
  if (c.lapic.has_posted()) c.lapic.sync_pir_to_irr();
  vmx_sync_pir_to_irr(c);

  // NMI first (KVM_NMI; KVM itself waits for the NMI window). At most one event is injected
  // per entry: an NMI here means no external interrupt below.
  if (c.lapic.take_nmi()) {
    inj.nmi = true;
    st_nmis_.fetch_add(1, std::memory_order_relaxed);
  }

  // Split placement: the VMM layer (QEMU's kvm_arch_pre_run) acknowledges the PIC and hands the
  // vector over with KVM_INTERRUPT only when the guest can take it; otherwise it asks for an
  // interrupt window (req_int_win), which KVM turns into enable_irq_window().
  bool req_int_win = false;
  if (config_.placement == IrqchipPlacement::kSplit && c.pending_external_vector < 0 &&
      c.lapic.accept_pic_intr() && pic_output_.load(std::memory_order_acquire)) {
    if (ready) {
      st_vmm_exits_.fetch_add(1, std::memory_order_relaxed);
      PicOutput out;
      {
        std::lock_guard<std::mutex> g(pic_mu_);
        c.pending_external_vector = pic_.acknowledge(&out);
        pic_output_.store(pic_.output(), std::memory_order_release);
      }
      pic_output(out);
    } else {
      req_int_win = true;
    }
  }

  const bool apicv_active = inhibits_.vcpu_apicv_active(vcpu);
  // kvm_cpu_has_injectable_intr(): ExtINT, or a LAPIC vector KVM must inject itself.
  auto injectable = [&] {
    return has_extint(c) || (!apicv_active && c.lapic.pending_deliverable() >= 0);
  };
  if (injectable()) {
    if (inj.nmi) {
      // One event per entry: after inject_nmi() can_inject is false, so the interrupt check
      // returns -EBUSY and kvm_check_and_inject_events() requests an immediate exit instead of
      // an IRQ window (the goto out skips enable_irq_window). The backend's window request is
      // that immediate exit; it is not a model window.
      inj.request_window = true;
    } else {
      if (ready) {
        const int vec = has_extint(c) ? take_extint(c) : c.lapic.get_interrupt();
        if (vec >= 0) {
          inj.vector = vec;
          st_injections_.fetch_add(1, std::memory_order_relaxed);
        }
        irqwin_.inject_irq(vcpu, injectable(), vec);
      }
      if (injectable()) req_int_win = true;
    }
  }
  if (req_int_win) {
    // enable_irq_window(): with AVIC this is where IRQWIN is set (legacy) or counted. KVM
    // runs kvm_check_and_inject_events() only on KVM_REQ_EVENT, so an open window is not
    // re-armed on unrelated exits.
    if (req_event || !c.model_window) {
      irqwin_.enable_irq_window(vcpu);
      st_windows_.fetch_add(1, std::memory_order_relaxed);
    }
    c.model_window = true;
    inj.request_window = true;
  }
  if (apicv_active && c.lapic.pending_deliverable() >= 0) {
    // APICv/AVIC active: the "hardware" evaluates vIRR against vPPR at instruction boundaries.
    // apicv models that with the backend's window, which is not a KVM IRQ window.
    if (ready && inj.vector < 0 && !inj.nmi) {
      inj.vector = c.lapic.get_interrupt();
      st_hw_deliveries_.fetch_add(1, std::memory_order_relaxed);
    }
    if (c.lapic.pending_deliverable() >= 0) inj.request_window = true;
  }
  // A vector held back only by TPR becomes deliverable when the guest lowers CR8, which the
  // backend learns at an exit; not every host reports KVM_EXIT_SET_TPR (kvm_pvm does not), so
  // keep a window requested until the next exit re-syncs CR8 (KVM's TPR threshold / CR8 intercept).
  const int irr = c.lapic.highest_irr();
  if (!inj.request_window && c.lapic.hw_enabled() && irr >= 0 && c.lapic.get_cr8() != 0 &&
      (static_cast<uint32_t>(irr) >> 4) <= c.lapic.get_cr8())
    inj.request_window = true;
  return inj;
}

void ApicvVm::interrupt_window_exit(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (!c.model_window) return;  // a mechanical window for "hardware" delivery, not KVM's
  c.model_window = false;
  st_window_exits_.fetch_add(1, std::memory_order_relaxed);
  irqwin_.interrupt_window_interception(vcpu);
}

void ApicvVm::vcpu_enter(int vcpu) {
  VcpuRequests& r = reqs_.vcpu(vcpu);
  r.set_blocked(false);
  r.enter_guest_mode();
  // __avic_vcpu_load / avic_vcpu_unblocking: IsRunning after the mode, so a sender that reads
  // IsRunning = 1 also sees IN_GUEST_MODE when it kicks.
  if (avic_) avic_->vcpu_load(vcpu, HostApicId(vcpu));
  pmu_cycles_enter(vcpu);
  // A request that raced with the checks above must not wait for the next exit. On vmx the same
  // holds for a posted interrupt whose sender saw us outside guest mode (KVM syncs PIR again
  // after setting IN_GUEST_MODE); the mode store above and the sender's ON RMW are seq_cst.
  if (r.requests_pending() ||
      (config_.vendor == VendorModel::kVmx && vcpus_[static_cast<size_t>(vcpu)]->pi.on()))
    kick(vcpu);
}

void ApicvVm::vcpu_exit(int vcpu) {
  // __avic_vcpu_put: the vCPU leaves its pCPU (KVM_RUN returns to the VMM).
  if (avic_) avic_->vcpu_put(vcpu);
  reqs_.vcpu(vcpu).exit_guest_mode();
  pmu_cycles_exit(vcpu);
}

// Cycle counters count guest time only: the interval from entry to exit, as a perf event that
// excludes the host does. Entry resynchronises (time in the VMM or in HLT does not count), exit
// counts. Guest CPL is not known at an exit without an ioctl, so cycles count as CPL 0.
void ApicvVm::pmu_cycles_enter(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (!c.pmu.any_counter_enabled()) [[likely]] {
    if (c.pmu_deadline != UINT64_MAX) {
      c.pmu_deadline = UINT64_MAX;
      note_timer(vcpu);
    }
    return;
  }
  c.pmu.advance_cycles(now(), read_tsc(), 0, /*halted=*/true);
  const uint64_t d = c.pmu.next_cycles_overflow_ns(tsc_khz_);
  if (d != c.pmu_deadline) {
    // The timer service kicks the vCPU out of the guest when the counter would wrap.
    c.pmu_deadline = d;
    note_timer(vcpu);
  }
}

void ApicvVm::pmu_cycles_exit(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (!c.pmu.any_counter_enabled()) [[likely]]
    return;
  const PmuOverflow ov = c.pmu.advance_cycles(now(), read_tsc(), 0, /*halted=*/false);
  // A perf overflow: KVM_REQ_PMI only (kvm_perf_overflow), in both delivery modes.
  if (ov.pmi && c.pmu.take_pmi_request()) reqs_.vcpu(vcpu).make_request(kReqPmi);
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
  const bool ev = has_events_locked(vcpu, if_set);
  if (ev) {
    r.set_blocked(false);
    if (avic_) avic_->vcpu_unblocking(vcpu, HostApicId(vcpu));
  }
  return ev;
}

bool ApicvVm::has_events_locked(int vcpu, bool if_set) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  VcpuRequests& r = reqs_.vcpu(vcpu);
  if (r.check_request(kReqApicvUpdate)) update_apicv(vcpu);
  if (c.lapic.has_posted()) c.lapic.sync_pir_to_irr();
  vmx_sync_pir_to_irr(c);
  if (c.lapic.nmi_pending() || c.lapic.init_pending() || c.lapic.sipi_pending()) return true;
  if (r.test_request(kReqPmi)) return true;  // kvm_vcpu_has_events(): a pending PMI wakes
  if (c.lapic.next_timer_deadline_ns() <= now()) return true;
  if (!if_set) return false;
  if (c.lapic.pending_deliverable() >= 0) return true;
  if (c.lapic.accept_pic_intr()) {
    if (config_.placement == IrqchipPlacement::kSplit
            ? (c.pending_external_vector >= 0 || pic_output_.load(std::memory_order_acquire))
            : pic_output_.load(std::memory_order_acquire))
      return true;
  }
  return false;
}

uint64_t ApicvVm::next_deadline_ns(int vcpu) {
  return vcpus_[static_cast<size_t>(vcpu)]->lapic.next_timer_deadline_ns();
}

void ApicvVm::run_timers(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  if (c.lapic.next_timer_deadline_ns() <= now()) {
    if (c.lapic.on_timer(now())) reqs_.vcpu(vcpu).make_request(kReqEvent);
    note_timer(vcpu);
  }
}

void ApicvVm::note_timer(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  const uint64_t d = std::min(c.lapic.next_timer_deadline_ns(), c.pmu_deadline);
  if (c.timer_deadline.exchange(d, std::memory_order_acq_rel) != d) timer_deadline_changed();
}

MpEvent ApicvVm::take_mp_event(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  MpEvent ev;
  if (c.lapic.take_init()) {
    // The INIT reset drops queued NMIs; a SIPI latched before the INIT was processed survives
    // (kvm_apic_accept_events() handles INIT, then a pending SIPI in the same pass).
    handle_lapic_output(vcpu, c.lapic.reset(/*init_only=*/true));
    c.arb_prio.store(0, std::memory_order_relaxed);
    vmx_clear_pi(c);
    c.pending_external_vector = -1;
    ev.kind = MpEvent::kInit;
    return ev;
  }
  uint8_t sipi = 0;
  if (c.lapic.take_sipi(&sipi)) {
    ev.kind = MpEvent::kSipi;
    ev.sipi_vector = sipi;
  }
  return ev;
}

void ApicvVm::instruction_emulated(int vcpu) {
  VcpuCtx& c = *vcpus_[static_cast<size_t>(vcpu)];
  // kvm_pmu_trigger_event(PERF_COUNT_HW_INSTRUCTIONS) from kvm_skip_emulated_instruction().
  const PmuOverflow ov = c.pmu.instruction_retired(/*cpl=*/0);
  if (!ov.pmi) return;
  c.pmu.take_pmi_request();
  if (config_.pmi_delivery == PmiDelivery::kLegacy) {
    // Before 73554b29bd70 an irq_work delivered the PMI at once, beside the request below; an
    // overflow in the same exit therefore produced two PMIs.
    deliver_pmi(vcpu);
  }
  reqs_.vcpu(vcpu).make_request(kReqPmi);
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
// Timers

uint64_t ApicvVm::service_timers(uint64_t t) {
  PitOutput pout;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    if (pit_.next_deadline_ns() <= t) pout = pit_.on_timer(t);
  }
  pit_output(pout);
  IoApicOutput iout;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    if (ioapic_.next_deadline_ns() <= t) iout = ioapic_.poll(t);
  }
  ioapic_output(iout);
  // apic_timer_fn() / the PMU's overflow: the Lapic and Pmu belong to their vCPU's thread, so the
  // service only makes the request and kicks; the vCPU fires the timer in run_timers(). One kick
  // per deadline value: an expired deadline the vCPU has not serviced yet is not due again.
  for (int i = 0; i < config_.nr_vcpus; ++i) {
    VcpuCtx& c = *vcpus_[static_cast<size_t>(i)];
    const uint64_t d = c.timer_deadline.load(std::memory_order_acquire);
    if (d <= t && c.kicked_deadline.load(std::memory_order_relaxed) != d) {
      c.kicked_deadline.store(d, std::memory_order_relaxed);
      reqs_.make_request_and_kick(i, kReqEvent);
    }
  }
  return next_deadline_ns();
}

uint64_t ApicvVm::next_deadline_ns() {
  uint64_t next = UINT64_MAX;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    next = std::min(next, pit_.next_deadline_ns());
  }
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    next = std::min(next, ioapic_.next_deadline_ns());
  }
  for (const auto& cp : vcpus_) {
    const uint64_t d = cp->timer_deadline.load(std::memory_order_acquire);
    if (d != cp->kicked_deadline.load(std::memory_order_relaxed)) next = std::min(next, d);
  }
  return next;
}

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
