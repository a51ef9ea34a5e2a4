// An IrqChip that forwards to an ApicvVm it shares with the caller. The KVM backend's RunGuest()
// owns and destroys the irqchip it is given; tools that read the VM's counters after the run
// (repro, run --stats, the benchmarks) hand it this forwarder and keep the ApicvVm themselves.
#pragma once

#include <memory>

#include "virt/apicv_vm.h"

namespace apicv::virt {

std::unique_ptr<IrqChip> ShareApicvVm(std::shared_ptr<ApicvVm> vm);

}  // namespace apicv::virt
