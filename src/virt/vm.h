// The apicv virtual machine: LAPICs, IOAPIC, PIC, PIT, routing, inhibits, AVIC/APICv models and
// event injection behind the IrqChip contract that backends drive.
#pragma once

#include <memory>

#include "devices/clock.h"
#include "virt/irqchip.h"
#include "virt/timer_service.h"
#include "virt/vm_config.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

// Creates apicv's interrupt controller for a VM. `trace` may be null (tracing off). The clock
// must outlive the returned object. `timers` null: the VM's timers are serviced by a host thread
// on `clock` (HostTimerService); otherwise the caller drives IrqChip::service_timers() and
// `timers` (which must outlive the VM) hears of deadline changes; no thread is started.
std::unique_ptr<IrqChip> CreateApicvIrqChip(const VmConfig& config, const Clock& clock,
                                            trace::TraceSink* trace,
                                            TimerService* timers = nullptr);

}  // namespace apicv::virt
