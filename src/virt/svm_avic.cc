// The VM's AVIC side (KVM svm/avic.c around the hardware model); see svm_avic.h.
#include "virt/svm_avic.h"

#include <bit>

#include "virt/vm_defs.h"

namespace apicv::virt {

namespace {

AvicConfig AvicConfigFor(const VmConfig& config, trace::TraceSink* trace) {
  AvicConfig ac;
  ac.table = config.nr_vcpus > 255 ? AvicTableMode::kX2Avic : AvicTableMode::kXApic;
  ac.kick = config.avic_kick == AvicKick::kSlow ? AvicKickMode::kSlow : AvicKickMode::kFast;
  ac.trace = trace;
  return ac;
}

void Bump(std::atomic<uint64_t>& c) {
  c.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// What the AVIC hardware and KVM's SVM code do to other vCPUs. One per ICR write, on the
// sender's thread, over the map snapshot the sender pinned.
class SvmAvic::Ops final : public AvicVcpuOps {
 public:
  Ops(SvmAvic& avic, std::span<const irq::ApicView> views) : avic_(avic), views_(views) {}
  void set_irr(int vcpu, uint8_t vector) override {
    avic_.vcpus_.lapic(vcpu).post(vector, /*level=*/false);
  }
  // The doorbell makes a running target evaluate its IRR; a wake-up makes a halted one run; both
  // become the backend's kick here. KVM_REQ_EVENT is set on every path so a target between its
  // event check and guest entry sees a pending request in vcpu_enter and does not miss the IRR.
  void ring_doorbell(int vcpu) override { kick(vcpu); }
  void wake(int vcpu) override { kick(vcpu); }
  void request_event_and_kick(int vcpu) override { kick(vcpu); }
  bool in_guest_mode(int vcpu) override {
    return avic_.reqs_.vcpu(vcpu).mode() == VcpuMode::kInGuestMode;
  }
  bool apicv_active(int vcpu) override { return avic_.inhibits_.vcpu_apicv_active(vcpu); }
  const irq::ApicView& view(int vcpu) override {
    static const irq::ApicView kAbsent{};
    if (vcpu < 0 || static_cast<size_t>(vcpu) >= views_.size()) return kAbsent;
    return views_[static_cast<size_t>(vcpu)];
  }

 private:
  void kick(int vcpu) {
    Bump(avic_.st_.ipi_kicks);
    avic_.reqs_.make_request_and_kick(vcpu, kReqEvent);
  }
  SvmAvic& avic_;
  std::span<const irq::ApicView> views_;
};

SvmAvic::SvmAvic(const VmConfig& config, VcpuDevices& vcpus, ApicvInhibits& inhibits,
                 VcpuRequestSet& reqs, trace::TraceSink* trace)
    : vcpus_(vcpus),
      inhibits_(inhibits),
      reqs_(reqs),
      avic_(AvicConfigFor(config, trace), config.nr_vcpus) {}

uint32_t SvmAvic::HostApicIdOf(int vcpu) {
  return HostApicId(vcpu);
}

void SvmAvic::init_vcpus() {
  for (int i = 0; i < vcpus_.size(); ++i) {
    if (!avic_.init_vcpu(i, static_cast<uint32_t>(i)))
      inhibits_.set(InhibitReason::kPhysicalIdTooBig);
  }
}

bool SvmAvic::icr_write(int src, const x86::InterruptRequest& req,
                        std::span<const irq::ApicView> views) {
  Ops ops(*this, views);
  const uint32_t icrl = IcrLow(req);
  const uint32_t icrh = IcrHigh(req);
  const AvicIcrResult r = avic_.handle_icr_write(src, icrl, icrh, req.source_x2apic, ops);
  if (!r.exit) return false;
  switch (avic_.avic_incomplete_ipi_interception(src, icrl, icrh, static_cast<uint32_t>(r.cause),
                                                 r.index, ops)) {
    case AvicIncompleteIpiAction::kSendIpi:
    case AvicIncompleteIpiAction::kWriteIcrNodecode:
      // INVALID_INT_TYPE / INVALID_TARGET: the hardware touched no IRR; KVM emulates the whole
      // IPI through the ICR write path.
      return true;
    case AvicIncompleteIpiAction::kNone:           // TARGET_NOT_RUNNING: IRRs set, targets kicked
    case AvicIncompleteIpiAction::kIgnoredVector:  // vector < 16: dropped as by the hardware
    case AvicIncompleteIpiAction::kWarnBackingPage:
    case AvicIncompleteIpiAction::kUnhandledCause:
      return false;
  }
  return false;
}

// With AVIC active, the guest's xAPIC page is the backing page: the "hardware" completes most
// accesses; the rest exit with AVIC_UNACCELERATED_ACCESS, which KVM traces before emulating
// (fault) or before kvm_apic_write_nodecode (trap). Either way the Lapic then performs the access,
// so only the trace and the counters depend on the classification.
void SvmAvic::lapic_mmio_access(int vcpu, uint32_t offset, unsigned len, bool write) {
  if (!inhibits_.vcpu_apicv_active(vcpu)) return;
  const Lapic& lapic = vcpus_.lapic(vcpu);
  const uint32_t reg = offset & 0xFF0;
  // An EOI write traps only when the vector it retires (the highest in-service one) is
  // level-triggered; the hardware looks at the backing page's ISR and TMR.
  int eoi_vector = -1;
  bool eoi_level = false;
  if (write && reg == x86::kApicEoi) {
    for (int w = 7; w >= 0 && eoi_vector < 0; --w) {
      const uint32_t isr = lapic.reg(x86::kApicIsr + static_cast<uint32_t>(w) * 0x10);
      if (isr == 0) continue;
      const int bit = 31 - std::countl_zero(isr);
      eoi_vector = w * 32 + bit;
      eoi_level = (lapic.reg(x86::kApicTmr + static_cast<uint32_t>(w) * 0x10) >> bit) & 1u;
    }
  }
  const AvicAccess kind = Avic::xapic_access(offset, len, write, eoi_level);
  if (kind == AvicAccess::kAccelerated) {
    Bump(st_.accelerated_accesses);
    return;
  }
  Bump(kind == AvicAccess::kTrap ? st_.unaccelerated_traps : st_.unaccelerated_faults);
  // exit_info_1: offset, bit 32 = write. exit_info_2 (KVM's "vec"): the retired vector for an EOI
  // trap, 0 otherwise [INFERRED: the APM names no other vector for this exit].
  const uint64_t exit_info_1 = (static_cast<uint64_t>(write) << 32) | reg;
  const uint64_t exit_info_2 =
      (kind == AvicAccess::kTrap && reg == x86::kApicEoi) ? static_cast<uint64_t>(eoi_vector) : 0;
  avic_.avic_unaccelerated_access_interception(vcpu, exit_info_1, exit_info_2);
}

bool SvmAvic::eoi_accelerated(bool level_triggered) {
  if (!Avic::eoi_accelerated(level_triggered)) return false;
  Bump(st_.eois_accelerated);
  return true;
}

SvmAvicStats SvmAvic::stats() const {
  auto ld = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  SvmAvicStats s;
  s.avic = avic_.stats();
  s.ipi_kicks = ld(st_.ipi_kicks);
  s.eois_accelerated = ld(st_.eois_accelerated);
  s.accelerated_accesses = ld(st_.accelerated_accesses);
  s.unaccelerated_traps = ld(st_.unaccelerated_traps);
  s.unaccelerated_faults = ld(st_.unaccelerated_faults);
  return s;
}

}  // namespace apicv::virt
