// Library entry point of the KVM backend: run one guest to completion and report what happened.
// Used by `apicv run`, `apicv repro` and the benchmarks.
//
// Two interrupt-controller modes:
//  - kApicv: no in-kernel irqchip; every APIC/IOAPIC/PIC/PIT access, MSR, HLT and interrupt
//    window goes through apicv's IrqChip (virt/irqchip.h).
//  - kKvm: KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2; KVM's own devices serve interrupts (oracle).
// Threading: RunGuest blocks the caller; it starts one thread per vCPU and joins them all before
// returning. Not supported: live migration, more than one memory slot below 4 GiB, Linux boot.
#pragma once

#include <stdexcept>

#include "platform/run_options.h"

namespace apicv::kvm {

// The options and results are the platform's, shared with every backend.
using platform::BootImage;
using platform::EntryMode;
using platform::IrqchipMode;
using platform::kExitTimeout;
using platform::kExitVmmError;
using platform::kMaxVcpus;
using platform::RunCounters;
using platform::RunOptions;
using platform::RunResult;

// /dev/kvm cannot be opened or lacks a capability the chosen mode needs.
struct KvmUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using InvalidBootImage = platform::InvalidBootImage;

// Throws InvalidBootImage for a kernel that cannot be loaded (before looking for /dev/kvm),
// KvmUnavailable when /dev/kvm is missing or unusable, std::runtime_error for bad options.
RunResult RunGuest(const RunOptions& options);

// Human-readable name of a KVM exit reason ("HLT", "IO", ...).
const char* ExitReasonName(unsigned reason);

}  // namespace apicv::kvm
