// Event injection and interrupt windows (KVM x86.c kvm_check_and_inject_events /
// kvm_vcpu_has_events / kvm_cpu_has_injectable_intr, svm.c svm_enable_irq_window /
// interrupt_window_interception through IrqWindow): before each entry, what the vCPU gets (an
// NMI, one external interrupt from the PIC or the LAPIC, or an interrupt window), and whether a
// halted vCPU has something to do. With APICv/AVIC active the "hardware" evaluates vIRR against
// vPPR, which the model does with the backend's window (not a KVM IRQ window). With
// kernel-irqchip=split the VMM layer acknowledges the PIC and hands the vector over
// (QEMU's kvm_arch_pre_run). Intel SDM vol. 3A 6.9 (priority among events), 11.8 (LAPIC
// delivery); AMD APM vol. 2 15.21.4 (virtual interrupts); spec §3-§4.
//
// Threading: every method runs on the vCPU's own thread; per-vCPU state (the model's window, the
// split ExtINT vector) is the vCPU's. No lock; the IRQ window strategies take
// apicv_update_lock inside ApicvInhibits.
//
// Not supported: NMI windows (the backend's KVM injects NMIs itself), exceptions, SMIs, nested
// (L2) event injection.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "devices/clock.h"
#include "virt/apicv_inhibits.h"
#include "virt/irq_window.h"
#include "virt/irqchip.h"
#include "virt/vcpu_devices.h"
#include "virt/vcpu_request.h"
#include "virt/vm_config.h"

namespace apicv::virt {

class IrqchipGlue;

struct EventInjectionStats {
  uint64_t injections = 0;         // vectors handed to the backend (KVM_INTERRUPT)
  uint64_t hw_deliveries = 0;      // LAPIC vectors "delivered by hardware" (APICv active)
  uint64_t nmis = 0;               // NMIs handed to the backend
  uint64_t windows_requested = 0;  // model IRQ windows opened (enable_irq_window)
  uint64_t window_exits = 0;       // model IRQ-window exits (interrupt_window_interception)
  uint64_t vmm_exits = 0;          // split placement: the VMM layer's PIC acknowledges
};

class EventInjection {
 public:
  EventInjection(const VmConfig& config, const Clock& clock, VcpuDevices& vcpus,
                 ApicvInhibits& inhibits, VcpuRequestSet& reqs, IrqchipGlue& glue,
                 trace::TraceSink* trace);
  EventInjection(const EventInjection&) = delete;
  EventInjection& operator=(const EventInjection&) = delete;

  // kvm_check_and_inject_events() after the vCPU's requests were processed and posted vectors
  // harvested; `req_event`: KVM_REQ_EVENT was pending (an open window is re-armed only then).
  Injection check_and_inject_events(int vcpu, bool ready, bool req_event);
  // interrupt_window_interception() for a window the model opened.
  void interrupt_window_exit(int vcpu);
  // kvm_vcpu_has_events() after the requests and posted vectors were processed.
  bool has_events(int vcpu, bool if_set);
  // INIT drops the split VMM layer's pending ExtINT vector; RESET also forgets the window.
  void init_vcpu(int vcpu) { per_vcpu_[static_cast<size_t>(vcpu)].pending_external_vector = -1; }
  void reset_vcpu(int vcpu) { per_vcpu_[static_cast<size_t>(vcpu)] = PerVcpu{}; }
  IrqWindow& irq_window() { return irqwin_; }

  EventInjectionStats stats() const;

 private:
  bool has_extint(int vcpu);
  int take_extint(int vcpu);

  struct PerVcpu {
    int pending_external_vector = -1;  // split placement: the VMM layer's ExtINT
    bool model_window = false;         // the model opened an IRQ window
  };
  const VmConfig& config_;
  const Clock& clock_;
  VcpuDevices& vcpus_;
  ApicvInhibits& inhibits_;
  VcpuRequestSet& reqs_;
  IrqchipGlue& glue_;
  IrqWindow irqwin_;
  std::unique_ptr<PerVcpu[]> per_vcpu_;
  std::atomic<uint64_t> st_injections_{0}, st_hw_deliveries_{0}, st_nmis_{0}, st_windows_{0},
      st_window_exits_{0}, st_vmm_exits_{0};
};

}  // namespace apicv::virt
