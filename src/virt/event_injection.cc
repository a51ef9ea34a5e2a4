// Event injection and interrupt windows (KVM x86.c kvm_check_and_inject_events); see
// event_injection.h.
#include "virt/event_injection.h"

#include "virt/irqchip_glue.h"

namespace apicv::virt {

EventInjection::EventInjection(const VmConfig& config, const Clock& clock, VcpuDevices& vcpus,
                               ApicvInhibits& inhibits, VcpuRequestSet& reqs, IrqchipGlue& glue,
                               trace::TraceSink* trace)
    : config_(config),
      clock_(clock),
      vcpus_(vcpus),
      inhibits_(inhibits),
      reqs_(reqs),
      glue_(glue),
      irqwin_(config.irqwin == IrqWindowMode::kCounted ? IrqWinStrategy::kCounted
                                                       : IrqWinStrategy::kLegacy,
              inhibits, trace),
      per_vcpu_(std::make_unique<PerVcpu[]>(static_cast<size_t>(vcpus.size()))) {}

bool EventInjection::has_extint(int vcpu) {
  if (!vcpus_.lapic(vcpu).accept_pic_intr()) return false;
  if (config_.placement == IrqchipPlacement::kSplit)
    return per_vcpu_[static_cast<size_t>(vcpu)].pending_external_vector >= 0;
  return glue_.pic_intr();
}

int EventInjection::take_extint(int vcpu) {
  if (config_.placement == IrqchipPlacement::kSplit) {
    int& pending = per_vcpu_[static_cast<size_t>(vcpu)].pending_external_vector;
    const int v = pending;
    pending = -1;
    return v;
  }
  return glue_.acknowledge_pic();
}

Injection EventInjection::check_and_inject_events(int vcpu, bool ready, bool req_event) {
  Lapic& lapic = vcpus_.lapic(vcpu);
  PerVcpu& c = per_vcpu_[static_cast<size_t>(vcpu)];
  Injection inj;

  // NMI first (KVM_NMI; KVM itself waits for the NMI window). At most one event is injected
  // per entry: an NMI here means no external interrupt below.
  if (lapic.take_nmi()) {
    inj.nmi = true;
    st_nmis_.fetch_add(1, std::memory_order_relaxed);
  }

  // Split placement: the VMM layer (QEMU's kvm_arch_pre_run) acknowledges the PIC and hands the
  // vector over with KVM_INTERRUPT only when the guest can take it; otherwise it asks for an
  // interrupt window (req_int_win), which KVM turns into enable_irq_window().
  bool req_int_win = false;
  if (config_.placement == IrqchipPlacement::kSplit && c.pending_external_vector < 0 &&
      lapic.accept_pic_intr() && glue_.pic_intr()) {
    if (ready) {
      st_vmm_exits_.fetch_add(1, std::memory_order_relaxed);
      c.pending_external_vector = glue_.acknowledge_pic();
    } else {
      req_int_win = true;
    }
  }

  const bool apicv_active = inhibits_.vcpu_apicv_active(vcpu);
  // kvm_cpu_has_injectable_intr(): ExtINT, or a LAPIC vector KVM must inject itself.
  auto injectable = [&] {
    return has_extint(vcpu) || (!apicv_active && lapic.pending_deliverable() >= 0);
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
        const int vec = has_extint(vcpu) ? take_extint(vcpu) : lapic.get_interrupt();
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
  if (apicv_active && lapic.pending_deliverable() >= 0) {
    // APICv/AVIC active: the "hardware" evaluates vIRR against vPPR at instruction boundaries.
    // apicv models that with the backend's window, which is not a KVM IRQ window.
    if (ready && inj.vector < 0 && !inj.nmi) {
      inj.vector = lapic.get_interrupt();
      st_hw_deliveries_.fetch_add(1, std::memory_order_relaxed);
    }
    if (lapic.pending_deliverable() >= 0) inj.request_window = true;
  }
  // A vector held back only by TPR becomes deliverable when the guest lowers CR8, which the
  // backend learns at an exit; not every host reports KVM_EXIT_SET_TPR (kvm_pvm does not), so
  // keep a window requested until the next exit re-syncs CR8 (KVM's TPR threshold / CR8 intercept).
  const int irr = lapic.highest_irr();
  if (!config_.tpr_writes_exit && !inj.request_window && lapic.hw_enabled() && irr >= 0 &&
      lapic.get_cr8() != 0 && (static_cast<uint32_t>(irr) >> 4) <= lapic.get_cr8())
    inj.request_window = true;
  return inj;
}

void EventInjection::interrupt_window_exit(int vcpu) {
  PerVcpu& c = per_vcpu_[static_cast<size_t>(vcpu)];
  if (!c.model_window) return;  // a mechanical window for "hardware" delivery, not KVM's
  c.model_window = false;
  st_window_exits_.fetch_add(1, std::memory_order_relaxed);
  irqwin_.interrupt_window_interception(vcpu);
}

bool EventInjection::has_events(int vcpu, bool if_set) {
  const Lapic& lapic = vcpus_.lapic(vcpu);
  if (lapic.nmi_pending() || lapic.init_pending() || lapic.sipi_pending()) return true;
  if (reqs_.vcpu(vcpu).test_request(kReqPmi)) return true;  // a pending PMI wakes
  if (lapic.next_timer_deadline_ns() <= clock_.now_ns()) return true;
  if (!if_set) return false;
  if (lapic.pending_deliverable() >= 0) return true;
  if (lapic.accept_pic_intr()) {
    if (config_.placement == IrqchipPlacement::kSplit
            ? (per_vcpu_[static_cast<size_t>(vcpu)].pending_external_vector >= 0 ||
               glue_.pic_intr())
            : glue_.pic_intr())
      return true;
  }
  return false;
}

EventInjectionStats EventInjection::stats() const {
  EventInjectionStats s;
  s.injections = st_injections_.load(std::memory_order_relaxed);
  s.hw_deliveries = st_hw_deliveries_.load(std::memory_order_relaxed);
  s.nmis = st_nmis_.load(std::memory_order_relaxed);
  s.windows_requested = st_windows_.load(std::memory_order_relaxed);
  s.window_exits = st_window_exits_.load(std::memory_order_relaxed);
  s.vmm_exits = st_vmm_exits_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace apicv::virt
