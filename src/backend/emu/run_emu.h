// -accel emu: apicv's software CPU (src/cpu) as an execution backend behind the same IrqChip
// contract and platform (loaders, system ports, exit dispatch, CPUID) as the KVM backend.
//
// Deterministic mode (the default, docs/emu.md): every vCPU on the calling thread, interleaved in
// instruction quanta; each vCPU has its own virtual clock (QEMU -icount shift=N,sleep=off: an
// instruction is 2^N ns, an idle machine jumps to its next deadline); the vCPU whose clock is
// furthest behind runs next, for at most `quantum` instructions and never past its own or the VM's
// next timer deadline, so no two clocks drift apart by more than a quantum. The VM's timers are
// serviced in virtual time (ApicvVm starts no thread). Identical inputs give identical serial
// output and traces on every run. All vCPUs halted with nothing armed is reported as a hang (a
// lost wake-up) with the state of every LAPIC, not waited out.
//
// Parallel mode (EmuOptions::multi, -accel emu,thread=multi; run_emu_multi.cc): one host thread
// per vCPU as under KVM, real time (the host clock and the VM's own HostTimerService thread),
// kicks ending a vCPU's run, HLT blocking its thread; nondeterministic.
//
// Not supported: --irqchip kvm (KVM's in-kernel irqchip needs /dev/kvm), RAM above the 3 GiB
// PCI hole (-m larger than 3 GiB).
#pragma once

#include <cstdint>

#include "platform/run_options.h"

namespace apicv::emu {

struct EmuOptions {
  unsigned icount_shift = 3;     // 2^shift ns per instruction (QEMU -icount shift=N); 0..10
  uint64_t quantum = 2000;       // instructions per scheduling quantum
  uint64_t sched_seed = 0;       // 0: fixed quanta, lowest-index tie break; else seeded quanta,
                                 // tie breaks and descheduled periods (docs/emu.md)
  uint64_t tsc_khz = 2'000'000;  // guest TSC rate when VmConfig::tsc_khz is 0
  bool multi = false;            // thread=multi: a host thread per vCPU, real time
};

// Runs the guest to completion. Throws std::runtime_error for bad options or a kernel that cannot
// be loaded.
platform::RunResult RunGuest(const platform::RunOptions& options, const EmuOptions& emu);

}  // namespace apicv::emu
