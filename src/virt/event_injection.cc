// ApicvVm, event injection (KVM x86.c kvm_check_and_inject_events, kvm_vcpu_has_events,
// kvm_apic_accept_events, pmu.c PMI delivery and cycle counting): see apicv_vm.h.
#include <algorithm>
#include <bit>

#include "virt/apicv_vm_internal.h"

namespace apicv::virt {

using namespace vm_detail;  // NOLINT: the split files share ApicvVm's private helpers
using x86::DeliveryMode;

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
  if (!config_.tpr_writes_exit && !inj.request_window && c.lapic.hw_enabled() && irr >= 0 &&
      c.lapic.get_cr8() != 0 && (static_cast<uint32_t>(irr) >> 4) <= c.lapic.get_cr8())
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

}  // namespace apicv::virt
