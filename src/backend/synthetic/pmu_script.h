// The seed-002 reproduction without /dev/kvm: a scripted single-vCPU "guest" that replays what the
// built-in `pmu` guest (guests/pmu.c) makes the KVM backend do, against a real virt::ApicvVm,
// through exactly the IrqChip calls the backend's run loop makes for every exit
// (src/backend/kvm/run_guest.cc): run_timers, check_and_inject_events (an NMI it returns is
// queued as KVM_NMI), vcpu_enter, vcpu_exit, set_cr8, the access (wrmsr / rdmsr / pio_out), then
// instruction_emulated. Intel SDM vol. 3B 20.2.1-20.2.2 (PMC0, PERFEVTSEL0, GLOBAL_CTRL/STATUS/
// OVF_CTRL), vol. 3A 11.5.1 (LVTPC in NMI mode), 6.7.1 (NMI blocking until IRET); AMD APM vol. 2
// 13.2 (PerfEvtSel0 / PerfCtr0); spec §8.
//
// The guest's sequence: enable x2APIC (IA32_APIC_BASE, SPIV), GLOBAL_CTRL := 0 (the guest's PMU
// probe), PERFEVTSEL0 := 0, OVF_CTRL := 1, LVTPC := NMI, PMC0 := -N (legacy 32-bit write), read
// PMC0 and GLOBAL_STATUS back, PERFEVTSEL0 := instructions retired (0xC0) | USR | OS | INT | EN,
// GLOBAL_CTRL := 1, then N + 64 port writes to the unclaimed port 0x80, then disarm. The NMI
// handler reads LVTPC and GLOBAL_STATUS, writes OVF_CTRL when bit 0 is set, and unmasks LVTPC;
// each of those accesses is an exit and an emulated instruction too, as in the real guest. With
// the AMD PMU (VmConfig::pmu_vendor) the same runs on PerfEvtSel0 / PerfCtr0 without the global
// MSRs (PerfMonV2 is absent); the handler sees the overflow as PerfCtr0 bit 47 clear.
//
// NMI delivery as KVM does it: an NMI handed over while the guest is in its NMI handler stays
// pending until the handler's IRET; at most one NMI is held pending while NMIs are blocked and
// two otherwise (process_nmi()).
//
// What is NOT modelled: guest memory, guest instructions, page tables, CPUID, the IDT — the
// instruction stream is scripted, so only the exiting instructions exist and every guest
// instruction between them is invisible (it retires nothing apicv counts, as on KVM). No
// interrupt other than the NMI is expected; a vector handed over is counted as unexpected. One
// vCPU, CPL 0, CR8 0, IF = 1. Time is a FakeClock that never advances, and no cycles event is
// programmed, so a run is deterministic: the same configuration gives the same result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "virt/vm_config.h"

namespace apicv::synthetic {

struct PmuScriptConfig {
  virt::PmiDelivery delivery = virt::PmiDelivery::kCurrent;
  virt::PmuVendor vendor = virt::PmuVendor::kIntel;
  // The period N (PMC0 armed at -N). The guest's bounds: 2..1000000.
  uint32_t period = 16;
};

struct PmuScriptResult {
  // Host view: counter wraps the Pmu counted, and PMIs ApicvVm delivered through LVTPC.
  uint64_t overflows = 0;
  uint64_t lvtpc_deliveries = 0;
  // NMIs check_and_inject_events handed to the "backend" (KVM_NMI ioctls).
  uint64_t nmis_injected = 0;
  // Guest view: NMI handler runs (PMIs seen) and those that found the overflow (GLOBAL_STATUS
  // bit 0, or AMD PerfCtr0 bit 47 clear).
  uint64_t pmis = 0;
  uint64_t guest_overflows = 0;
  bool lvtpc_masked_after_pmi = false;  // LVTPC.MASK as the first handler run read it
  bool global_status_seen = false;      // a handler run saw the overflow
  uint64_t outs_at_first_pmi = 0;       // port writes completed when the first PMI arrived
  uint64_t exits = 0;                   // scripted exits (each an emulated instruction)
  uint64_t unexpected_vectors = 0;      // external interrupts injected (none expected)
  // The guest's own checks that failed ("FAIL: ..." lines of guests/pmu.c), empty when it passed.
  std::vector<std::string> failures;
  bool passed() const { return failures.empty(); }
};

// Runs the script once. Rejects a period outside 2..1000000 with std::invalid_argument.
PmuScriptResult RunPmuScript(const PmuScriptConfig& config);

}  // namespace apicv::synthetic
