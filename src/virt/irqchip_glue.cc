// IOAPIC / PIC / PIT and their glue (KVM ioapic.c glue, irq.c, irq_comm.c, i8254.c, i8259.c);
// see irqchip_glue.h.
#include "virt/irqchip_glue.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

#include "irq/match_dest.h"
#include "trace/kvm_events.h"
#include "virt/apic_delivery.h"
#include "virt/vm_defs.h"
#include "virt/vmx_posted_intr.h"
#include "x86/ioapic_defs.h"

namespace apicv::virt {

namespace {

constexpr uint64_t kIoApicBase = 0xFEC00000ull;
constexpr uint64_t kIoApicSize = 0x100;  // KVM's IOAPIC_MEM_LENGTH
constexpr uint16_t kTestDevBase = 0x2000;
constexpr uint16_t kTestDevEnd = 0x2017;
constexpr unsigned kIsaIrq0IoApicPin = 2;
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

uint64_t LoadLe(const void* data, unsigned len) {
  uint64_t v = 0;
  std::memcpy(&v, data, std::min(len, 8u));
  return v;
}

void StoreLe(void* data, unsigned len, uint64_t v) {
  std::memcpy(data, &v, std::min(len, 8u));
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

IrqchipGlue::IrqchipGlue(const VmConfig& config, const Clock& clock, VcpuDevices& vcpus,
                         VcpuRequestSet& reqs, const DeviceTrace& trace, ApicDelivery& delivery,
                         VmxPostedIntr* vmx, VmTimers& timers, bool pit_reinject)
    : config_(config),
      clock_(clock),
      vcpus_(vcpus),
      reqs_(reqs),
      trace_(trace),
      delivery_(delivery),
      vmx_(vmx),
      timers_(timers),
      pit_reinject_(pit_reinject),
      ioapic_(IoApicConfigFor(config)),
      // With kernel-irqchip=on the PIT is KVM's: create_pit_timer() clamps periodic modes to
      // min_timer_period_us (200 us by default). A userspace PIT (split/off) is not clamped.
      pit_(PitConfig{
          .policy = LostTickPolicy::kDiscard,
          .min_period_ns = config.placement == IrqchipPlacement::kOn ? kKvmMinTimerPeriodNs : 0}),
      accepts_pic_intr_(std::make_unique<std::atomic<bool>[]>(static_cast<size_t>(vcpus.size()))) {
  pit_.set_lost_tick_policy(pit_reinject_ ? LostTickPolicy::kDelay : LostTickPolicy::kDiscard);
  ioapic_.set_delivery_result(
      [this](const x86::InterruptRequest& req) { return delivery_.ioapic_delivery_result(req); });
}

void IrqchipGlue::count_vmm_exit() {
  if (config_.placement != IrqchipPlacement::kOn)
    st_vmm_exits_.fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Guest accesses

AccessResult IrqchipGlue::mmio_read(uint64_t gpa, void* data, unsigned len) {
  if (gpa < kIoApicBase || gpa >= kIoApicBase + kIoApicSize) return AccessResult::kNotMine;
  IoApicOutput out;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    out = ioapic_.mmio_read(static_cast<uint32_t>(gpa - kIoApicBase), data, len, now());
  }
  count_vmm_exit();
  ioapic_output(out);
  return AccessResult::kHandled;
}

AccessResult IrqchipGlue::mmio_write(uint64_t gpa, const void* data, unsigned len) {
  if (gpa < kIoApicBase || gpa >= kIoApicBase + kIoApicSize) return AccessResult::kNotMine;
  IoApicOutput out;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    out = ioapic_.mmio_write(static_cast<uint32_t>(gpa - kIoApicBase), data, len, now());
  }
  count_vmm_exit();
  // ioapic_write_indirect(): a rewritten RTE changes which vectors need an EOI exit.
  if (out.rte_changed && vmx_) vmx_->request_scan_ioapic();
  ioapic_output(out);
  return AccessResult::kHandled;
}

AccessResult IrqchipGlue::pio_in(uint16_t port, void* data, unsigned len) {
  if (Pic::handles_port(port)) {
    uint8_t v = 0xFF;
    PicOutput out;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      out = pic_.pio_read(port, &v);
      pic_intr_.store(pic_.output(), std::memory_order_release);
    }
    count_vmm_exit();
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
    count_vmm_exit();
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

AccessResult IrqchipGlue::pio_out(uint16_t port, const void* data, unsigned len) {
  const uint8_t v = static_cast<uint8_t>(LoadLe(data, len));
  if (Pic::handles_port(port)) {
    PicOutput out;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      out = pic_.pio_write(port, v);
      pic_intr_.store(pic_.output(), std::memory_order_release);
    }
    count_vmm_exit();
    pic_output(out);
    return AccessResult::kHandled;
  }
  if (Pit::handles_port(port)) {
    PitOutput out;
    {
      std::lock_guard<std::mutex> g(pit_mu_);
      out = pit_.pio_write(port, v, now());
    }
    count_vmm_exit();
    pit_output(out);
    timers_.deadline_changed();
    return AccessResult::kHandled;
  }
  if (port >= kTestDevBase && port <= kTestDevEnd) {
    set_isa_irq(port - kTestDevBase, v != 0);
    return AccessResult::kHandled;
  }
  return AccessResult::kNotMine;
}

// ---------------------------------------------------------------------------------------------
// GSI lines (kvm_set_irq)

void IrqchipGlue::set_isa_irq(unsigned irq, bool level) {
  set_irq_line(irq, level, kUserspaceIrqSourceId);
}

void IrqchipGlue::set_irq_line(unsigned irq, bool level, int irq_source_id) {
  if (irq >= 24) return;
  // kvm_set_irq() traces the GSI before walking its routes (PIC, then IOAPIC). Only with the
  // in-kernel PIC/IOAPIC: with split/off the line belongs to the VMM's devices.
  trace::trace_kvm_set_irq(trace_.kernel_irqchip(), irq, level ? 1 : 0, irq_source_id);
  if (irq < 16) {
    PicOutput pout;
    uint8_t elcr, imr;
    {
      std::lock_guard<std::mutex> g(pic_mu_);
      pout = pic_.set_irq(irq, level);
      pic_intr_.store(pic_.output(), std::memory_order_release);
      elcr = pic_.elcr(irq >> 3);
      imr = pic_.imr(irq >> 3);
    }
    // kvm_pic_set_irq(): traced after pic_update_irq(), " (coalesced)" when pic_set_irq1()
    // returned 0.
    trace::trace_kvm_pic_set_irq(trace_.kernel_irqchip(), static_cast<uint8_t>(irq >> 3),
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
    trace::trace_kvm_ioapic_set_irq(trace_.kernel_irqchip(), rte, static_cast<int>(pin),
                                    out.coalesced);
    ioapic_output(out);
  }
}

// ---------------------------------------------------------------------------------------------
// EOI, the IOAPIC scan, ack and mask notifiers

EoiExitBitmap IrqchipGlue::ioapic_handled_vectors(int vcpu, bool with_ack_notifier) {
  EoiExitBitmap b;
  const Lapic& lapic = vcpus_.lapic(vcpu);
  // vcpu_scan_ioapic(): nothing for an absent APIC.
  if (!lapic.hw_enabled()) return b;
  std::array<uint64_t, x86::kIoApicNumPins> rtes;
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    for (unsigned p = 0; p < x86::kIoApicNumPins; ++p) rtes[p] = ioapic_.rte(p);
  }
  const irq::ApicView self = ApicViewOf(lapic.identity());
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
        ((lapic.reg(x86::kApicIsr + word) | lapic.reg(x86::kApicIrr + word)) >> (vec & 31)) & 1u;
    if (irq::MatchDest(self, vcpu, nullptr, -1, x86::Shorthand::kNone, dest,
                       e & x86::kRteDestLogical,
                       delivery_.route_options().x2apic_broadcast_quirk_disabled) ||
        pending_eoi)
      b.set(vec);
  }
  return b;
}

void IrqchipGlue::eoi(int vcpu, const LapicEoi& eoi) {
  // Only EOIs that reach KVM's emulation (apic_set_eoi, kvm_apic_set_eoi_accelerated) trace.
  trace::trace_kvm_eoi(trace_.lapic(), static_cast<uint32_t>(vcpu), eoi.vector);
  st_eois_.fetch_add(1, std::memory_order_relaxed);
  if (config_.placement == IrqchipPlacement::kSplit) {
    // kvm_ioapic_send_eoi() with a split irqchip: a vector in ioapic_handled_vectors (the
    // level-triggered routes scanned for this vCPU) sets pending_ioapic_eoi and exits with
    // KVM_EXIT_IOAPIC_EOI; the VMM-layer IOAPIC then does the EOI. Other vectors stop here.
    if (!ioapic_handled_vectors(vcpu, /*with_ack_notifier=*/false).test(eoi.vector)) return;
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
  if (deferred) timers_.deadline_changed();
  // kvm_ioapic_update_eoi_one() runs kvm_notify_acked_irq() (kvm_ack_irq) for every pin with the
  // EOIed vector, before the pin's notifier acts. KVM only gets there for vectors in
  // ioapic_handled_vectors (kvm_ioapic_send_eoi); the model's IOAPIC sees every EOI, so the
  // trace is filtered here.
  if (out.acked_pins != 0 && TraceOn(trace_.kernel_irqchip())) {
    if (ioapic_handled_vectors(vcpu, /*with_ack_notifier=*/true).test(eoi.vector)) {
      for (uint32_t pins = out.acked_pins; pins != 0; pins &= pins - 1)
        trace::trace_kvm_ack_irq(trace_.kernel_irqchip(), kIrqchipIoapic,
                                 static_cast<unsigned>(std::countr_zero(pins)));
    }
  }
  ioapic_output(out);
}

void IrqchipGlue::ioapic_output(const IoApicOutput& out) {
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
  const bool split_msi = config_.placement == IrqchipPlacement::kSplit && TraceOn(trace_.lapic());
  for (unsigned i = 0; i < out.num_deliveries; ++i) {
    const IoApicDelivery& d = out.deliveries[i];
    if (split_msi) trace_split_ioapic_msi(d.pin, /*assert_only=*/true);
    delivery_.route_and_deliver(-1, d.irq);
    if (split_msi && !d.irq.trigger_level) trace_split_ioapic_msi(d.pin, /*assert_only=*/false);
  }
}

// kernel-irqchip=split: the VMM's IOAPIC raises a pin through KVM_IRQ_LINE on the GSI the VMM
// routed as an MSI (QEMU: GSI = pin, MSI address/data built from the RTE; an edge pin is raised
// and lowered at once, a level pin only raised). kvm_set_irq() traces the line, kvm_set_msi()
// traces kvm_msi_set_irq for the assertion only (it returns before the trace when level is 0).
void IrqchipGlue::trace_split_ioapic_msi(unsigned pin, bool assert_only) {
  trace::TraceSink* tp = trace_.lapic();
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

void IrqchipGlue::trace_pic_acks(uint16_t acked_irqs) {
  // pic_clear_isr() -> kvm_notify_acked_irq(SELECT_PIC(irq), irq): irq counts 0-15 across both
  // chips, so a slave pin prints as 8-15.
  for (uint32_t irqs = acked_irqs; irqs != 0; irqs &= irqs - 1) {
    const unsigned irq = static_cast<unsigned>(std::countr_zero(irqs));
    trace::trace_kvm_ack_irq(trace_.kernel_irqchip(),
                             irq < 8 ? kIrqchipPicMaster : kIrqchipPicSlave, irq);
  }
}

void IrqchipGlue::pic_output(const PicOutput& out) {
  if (out.acked_irqs != 0 && TraceOn(trace_.kernel_irqchip())) trace_pic_acks(out.acked_irqs);
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
  if (out.output_changed && pic_intr_.load(std::memory_order_acquire)) kick_extint_vcpu();
}

// ---------------------------------------------------------------------------------------------
// ExtINT

void IrqchipGlue::kick_extint_vcpu() {
  // KVM's pic_unlock(): the first vCPU for which kvm_apic_accept_pic_intr() holds (LVT0 unmasked
  // in ExtINT mode, or the LAPIC hardware-disabled) gets KVM_REQ_EVENT and a kick; none, nobody.
  // The target re-evaluates accept_pic_intr() on its own thread before injecting.
  for (int i = 0; i < vcpus_.size(); ++i) {
    if (accepts_pic_intr_[static_cast<size_t>(i)].load(std::memory_order_acquire)) {
      reqs_.make_request_and_kick(i, kReqEvent);
      return;
    }
  }
}

void IrqchipGlue::publish_accept_pic_intr(int vcpu) {
  accepts_pic_intr_[static_cast<size_t>(vcpu)].store(vcpus_.lapic(vcpu).accept_pic_intr(),
                                                     std::memory_order_release);
}

uint8_t IrqchipGlue::acknowledge_pic() {
  PicOutput out;
  uint8_t vec;
  {
    std::lock_guard<std::mutex> g(pic_mu_);
    vec = pic_.acknowledge(&out);
    pic_intr_.store(pic_.output(), std::memory_order_release);
  }
  pic_output(out);
  return vec;
}

// ---------------------------------------------------------------------------------------------
// PIT reinjection (i8254.c)

void IrqchipGlue::ack_notify_isa_irq(unsigned irq) {
  if (irq != 0 || !pit_reinject_) return;
  st_pit_acks_.fetch_add(1, std::memory_order_relaxed);
  PitOutput out;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    out = pit_.ack_irq();
  }
  pit_output(out);
}

void IrqchipGlue::pit_output(const PitOutput& out) {
  // Counted before the pulses: a guest that took tick k can already read at least k edges.
  if (out.irq0_edges) st_pit_edges_.fetch_add(out.irq0_edges, std::memory_order_release);
  if (out.irq0_pulses == 0) return;
  // One pulser at a time, as KVM's single kvm-pit worker runs pit_do_work: two threads pulsing GSI
  // 0 at once (a timer tick and an ack's reinjection) would interleave 1,1,0,0 into one edge and
  // lose a tick. A thread that finds another pulsing hands its pulses over and returns (KVM queues
  // the work); no lock is held across the delivery.
  pit_pulses_pending_.fetch_add(out.irq0_pulses, std::memory_order_seq_cst);
  for (;;) {
    bool idle = false;
    if (!pit_pulsing_.compare_exchange_strong(idle, true, std::memory_order_seq_cst)) return;
    while (pit_pulses_pending_.load(std::memory_order_seq_cst) > 0) {
      pit_pulses_pending_.fetch_sub(1, std::memory_order_seq_cst);
      // pit_do_work(): kvm_set_irq(GSI 0, 1) then (GSI 0, 0) from the PIT's source.
      set_irq_line(0, true, kPitIrqSourceId);
      set_irq_line(0, false, kPitIrqSourceId);
      // Counted once raised (release): a thread that sees the count also sees the PIC's IRR.
      st_pit_ticks_.fetch_add(1, std::memory_order_release);
    }
    pit_pulsing_.store(false, std::memory_order_seq_cst);
    // Pulses handed over between the last check and the store above are this thread's to do.
    if (pit_pulses_pending_.load(std::memory_order_seq_cst) == 0) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Timers, reset, statistics

void IrqchipGlue::service_timers(uint64_t t) {
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
}

uint64_t IrqchipGlue::next_deadline_ns() {
  uint64_t next = UINT64_MAX;
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    next = std::min(next, pit_.next_deadline_ns());
  }
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    next = std::min(next, ioapic_.next_deadline_ns());
  }
  return next;
}

void IrqchipGlue::reset() {
  {
    std::lock_guard<std::mutex> g(ioapic_mu_);
    ioapic_.reset();
  }
  {
    std::lock_guard<std::mutex> g(pic_mu_);
    pic_.reset();
    pic_intr_.store(false);
  }
  {
    std::lock_guard<std::mutex> g(pit_mu_);
    pit_.reset(now());
  }
}

IrqchipGlueStats IrqchipGlue::stats() const {
  IrqchipGlueStats s;
  s.pit_ticks = st_pit_ticks_.load(std::memory_order_acquire);
  s.pit_acks = st_pit_acks_.load(std::memory_order_relaxed);
  s.eois = st_eois_.load(std::memory_order_relaxed);
  s.vmm_exits = st_vmm_exits_.load(std::memory_order_relaxed);
  s.split_ioapic_eoi_exits = st_split_ioapic_eoi_exits_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace apicv::virt
