// IRQ-window strategies; see irq_window.h and spec §3.3.
#include "virt/irq_window.h"

#include "trace/kvm_events.h"

namespace apicv::virt {

IrqWindow::IrqWindow(IrqWinStrategy strategy, ApicvInhibits& inhibits, trace::TraceSink* trace)
    : strategy_(strategy),
      inhibits_(inhibits),
      trace_(trace),
      nr_vcpus_(inhibits.vcpus().nr_vcpus()),
      vcpu_(std::make_unique<PerVcpu[]>(static_cast<size_t>(nr_vcpus_))) {}

void IrqWindow::enable_irq_window(int vcpu, bool gif_set) {
  if (!valid(vcpu)) return;
  // GIF=0 without vGIF: the STGI intercept re-evaluates later; nothing to arm now.
  if (!gif_set) return;
  PerVcpu& v = vcpu_[vcpu];
  const bool l2 = inhibits_.vcpu_guest_mode(vcpu);
  if (inhibits_.vendor() == Vendor::kVmx) {
    // vmx_enable_irq_window(): interrupt-window exiting works with APICv on; no inhibit.
  } else if (strategy_ == IrqWinStrategy::kLegacy) {
    // V_IRQ is ignored while AVIC is on, so the window needs AVIC off VM-wide. In L2 AVIC is
    // already off for this vCPU (NESTED).
    if (!l2) inhibits_.set(InhibitReason::kIrqWin);
  } else if (inhibits_.enable_apicv() && !v.avic_irq_window && !l2) {
    // Counted even when AVIC is already inhibited for another reason, so AVIC stays off if that
    // reason clears while this vCPU still has an injectable interrupt.
    v.avic_irq_window = true;
    inhibits_.inc_or_dec_irq_window_req(true);
  }
  v.vintr = true;  // svm_set_vintr()
}

void IrqWindow::inject_irq(int vcpu, bool has_more, int vector) {
  if (!valid(vcpu)) return;
  PerVcpu& v = vcpu_[vcpu];
  if (inhibits_.vendor() == Vendor::kSvm && strategy_ == IrqWinStrategy::kCounted &&
      v.avic_irq_window && (!has_more || inhibits_.vcpu_guest_mode(vcpu))) {
    v.avic_irq_window = false;
    inhibits_.inc_or_dec_irq_window_req(false);
  }
  if (vector >= 0) {
    // Always "IRQ", never " [reinjected]": svm_inject_irq(vcpu, true) runs only when
    // svm_complete_interrupts() finds an interrupted EVENTINJ in EXITINTINFO, and the model never
    // sees one: the vector goes to the backend (KVM_INTERRUPT) and the host kernel re-injects it.
    // Soft interrupts (INTn) are emulated by the host too.
    trace::trace_kvm_inj_virq(trace_, static_cast<unsigned>(vector) & 0xFF, false, false);
  }
  v.irq_injections.fetch_add(1, std::memory_order_relaxed);
}

void IrqWindow::interrupt_window_interception(int vcpu) {
  if (!valid(vcpu)) return;
  PerVcpu& v = vcpu_[vcpu];
  inhibits_.vcpus().vcpu(vcpu).make_request(kReqEvent);
  v.vintr = false;  // svm_clear_vintr()
  if (inhibits_.vendor() == Vendor::kSvm && strategy_ == IrqWinStrategy::kLegacy) {
    // The 2025 code clears the VM-wide bit even if other vCPUs still wait for their window.
    inhibits_.clear(InhibitReason::kIrqWin);
  }
  v.irq_window_exits.fetch_add(1, std::memory_order_relaxed);
}

bool IrqWindow::window_requested(int vcpu) const {
  return valid(vcpu) && vcpu_[vcpu].vintr;
}

bool IrqWindow::avic_irq_window(int vcpu) const {
  return valid(vcpu) && vcpu_[vcpu].avic_irq_window;
}

uint64_t IrqWindow::irq_window_exits() const {
  uint64_t n = 0;
  for (int i = 0; i < nr_vcpus_; ++i)
    n += vcpu_[i].irq_window_exits.load(std::memory_order_relaxed);
  return n;
}

uint64_t IrqWindow::irq_injections() const {
  uint64_t n = 0;
  for (int i = 0; i < nr_vcpus_; ++i) n += vcpu_[i].irq_injections.load(std::memory_order_relaxed);
  return n;
}

}  // namespace apicv::virt
