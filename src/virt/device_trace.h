// Which trace sink each layer's tracepoints reach (docs/trace-format.md). KVM only emits a
// device's events where KVM owns the device: LAPIC events with kernel-irqchip=on|split, PIC /
// IOAPIC / PIT events with kernel-irqchip=on. Inhibit, injection and AVIC exit events always go
// to the sink; device-level events follow the run's device-trace switch.
//
// Threading: the switch may flip while the timer service (another thread) traces, so the device
// pointer is published atomically. No lock. The sink itself outlives the VM.
#pragma once

#include <atomic>

#include "virt/vm_config.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

class DeviceTrace {
 public:
  DeviceTrace(trace::TraceSink* sink, IrqchipPlacement placement)
      : sink_(sink), device_(sink), placement_(placement) {}

  // The sink for events KVM always emits (inhibits, injections, AVIC exits); may be null.
  trace::TraceSink* sink() const { return sink_; }
  void set_device_trace(bool on) { device_.store(on ? sink_ : nullptr, std::memory_order_release); }
  trace::TraceSink* device() const { return device_.load(std::memory_order_acquire); }
  // LAPIC-level events (kvm_apic_ipi, kvm_apic_accept_irq, kvm_eoi, ...): null with irqchip off.
  trace::TraceSink* lapic() const {
    return placement_ == IrqchipPlacement::kOff ? nullptr : device();
  }
  // PIC / IOAPIC / PIT events (kvm_pic_set_irq, kvm_ioapic_set_irq, kvm_set_irq, kvm_ack_irq):
  // only with the in-kernel irqchip.
  trace::TraceSink* kernel_irqchip() const {
    return placement_ == IrqchipPlacement::kOn ? device() : nullptr;
  }

 private:
  trace::TraceSink* const sink_;
  std::atomic<trace::TraceSink*> device_;
  const IrqchipPlacement placement_;
};

}  // namespace apicv::virt
