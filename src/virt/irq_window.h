// IRQ-window handling on SVM with AVIC, in the two KVM versions apicv compares (spec §3, §4):
//
//  kLegacy  (2025, seed 000): svm_enable_irq_window() sets the IRQWIN inhibit whenever the vCPU is
//           not running L2; interrupt_window_interception() clears it. Each is a write lock on
//           apicv_update_lock, and the first vCPU whose window opens clears IRQWIN for everyone.
//  kCounted (2026, "KVM: SVM: Fix IRQ window inhibit handling" v2): a per-vCPU avic_irq_window flag
//           plus the VM counter apicv_nr_irq_window_req; the flag is set in svm_enable_irq_window()
//           and dropped in svm_inject_irq() once no injectable interrupt remains (or in L2);
//           interrupt_window_interception() only requests KVM_REQ_EVENT.
//
// SVM detects the window with a dummy V_IRQ plus the VINTR intercept (svm_set_vintr /
// svm_clear_vintr); here that is the per-vCPU `vintr` flag the backend reads via
// window_requested(). AMD APM vol. 2 §15.21.4 (virtual interrupts), §15.29 (AVIC).
// Per-vCPU methods run on that vCPU's thread.
//
// On VMX both strategies only arm/disarm the window (interrupt-window exiting needs no inhibit).
// Not supported: vGIF/GIF=0 handling beyond the `gif_set` argument (STGI intercept), nested L2
// V_IRQ restoration from vmcb12.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "virt/apicv_inhibits.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

enum class IrqWinStrategy : uint8_t { kLegacy, kCounted };

class IrqWindow {
 public:
  // `inhibits` must have been built with irqwin_counted == (strategy == kCounted).
  IrqWindow(IrqWinStrategy strategy, ApicvInhibits& inhibits, trace::TraceSink* trace);

  IrqWinStrategy strategy() const { return strategy_; }

  // svm_enable_irq_window(): called from check_and_inject_events when an interrupt is still
  // injectable after injection, or when userspace asks for a window. `gif_set`: GIF=1 or vGIF.
  void enable_irq_window(int vcpu, bool gif_set = true);
  // svm_inject_irq(): the IRQ `vector` (-1: don't trace) is being injected; `has_more` is
  // kvm_cpu_has_injectable_intr() after this one was taken.
  void inject_irq(int vcpu, bool has_more, int vector = -1);
  // interrupt_window_interception(): the window opened and the guest exited for it.
  void interrupt_window_interception(int vcpu);

  // VINTR intercept armed (the backend must exit when the guest can take an interrupt).
  bool window_requested(int vcpu) const;
  bool avic_irq_window(int vcpu) const;
  // Sums of the per-vCPU stat counters (vcpu->stat.irq_window_exits / irq_injections).
  uint64_t irq_window_exits() const;
  uint64_t irq_injections() const;

 private:
  struct alignas(64) PerVcpu {
    bool vintr = false;            // svm_set_vintr() armed the VINTR intercept
    bool avic_irq_window = false;  // this vCPU holds one count of apicv_nr_irq_window_req
    // Owner-written, read by stats readers: relaxed atomics on the owner's cache line.
    std::atomic<uint64_t> irq_window_exits{0};
    std::atomic<uint64_t> irq_injections{0};
  };
  bool valid(int vcpu) const { return vcpu >= 0 && vcpu < nr_vcpus_; }

  const IrqWinStrategy strategy_;
  ApicvInhibits& inhibits_;
  trace::TraceSink* trace_;
  const int nr_vcpus_;
  std::unique_ptr<PerVcpu[]> vcpu_;
};

}  // namespace apicv::virt
