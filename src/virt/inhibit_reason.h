// The APICv/AVIC inhibit reasons for the virtualization layer: the vocabulary itself is KVM ABI
// and lives in x86/inhibit_reason.h, below the trace layer; this header re-exports it.
#pragma once

#include "x86/inhibit_reason.h"

namespace apicv::virt {

using x86::InhibitBit;
using x86::InhibitReason;
using x86::InhibitReasonName;
using x86::kAllInhibitsMask;
using x86::kInhibitReasonNames;
using x86::kNrApicvInhibitReasons;
using x86::kSvmRequiredApicvInhibits;
using x86::kVmxRequiredApicvInhibits;
using x86::RequiredApicvInhibits;
using x86::Vendor;

}  // namespace apicv::virt
