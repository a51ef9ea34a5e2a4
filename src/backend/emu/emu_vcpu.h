// One emulated vCPU as both -accel emu schedulers see it (docs/emu.md): its software CPU
// (src/cpu) and its exits. Every access the CPU hands out (port I/O, MMIO outside RAM, MSRs it
// does not own, CR8, CPUID, RDTSC) is a VM exit under KVM; here it goes through platform::Machine
// (and so the IrqChip first), exactly as in the KVM backend's exit dispatch; the vPMU counts every
// retired instruction from the CPU's own count (IrqChip::instructions_retired), not only these. The deterministic scheduler (run_emu.cc) and the parallel one
// (run_emu_multi.cc) share this code and differ only in the ExitContext they supply.
//
// Intel SDM vol. 3C 26.1 / 27 (VM exits), vol. 3A 9.1 (the boot state the loaders set up).
// Not supported: anything the software CPU itself does not implement (docs/cpu.md).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/emu/run_emu.h"
#include "cpu/cpu.h"
#include "devices/clock.h"
#include "platform/cpu_state.h"
#include "platform/cpuid.h"
#include "platform/machine.h"
#include "platform/run_options.h"
#include "trace/kvm_events.h"
#include "virt/irqchip.h"

namespace apicv::emu {

// What a scheduler does around an exit of vCPU `v`; called on the thread running that vCPU.
class ExitContext {
 public:
  virtual ~ExitContext() = default;
  // The vCPU leaves guest mode before the platform handles the access (KVM_RUN returns before the
  // KVM backend's exit dispatch); it re-enters at its next entry. `why` names the exit (its
  // kvm_exit line). The scheduler first hands the vPMU the instructions retired before the access
  // (an access to a counter sees them; the access itself counts once done, as KVM counts an
  // emulated instruction).
  virtual void leave_guest(int v, trace::ExitReason why) = 0;
  // A port write asked to stop the VM (isa-debug-exit, reset).
  virtual void stop(const platform::StopRequest& r) = 0;
};

// The platform a vCPU's exits reach.
struct EmuPlatform {
  platform::Machine& machine;
  virt::IrqChip& chip;
  const Clock& clock;  // RDTSC
};

class VcpuHost final : public cpu::CpuHost {
 public:
  // `counters` belongs to the thread running the vCPU.
  VcpuHost(ExitContext& ctx, const EmuPlatform& p, platform::RunCounters& counters, int v,
           std::vector<platform::CpuidEntry> cpuid)
      : ctx_(ctx), p_(p), counters_(counters), v_(v), cpuid_(std::move(cpuid)) {}
  uint32_t pio_in(uint16_t port, unsigned size) override;
  void pio_out(uint16_t port, unsigned size, uint32_t value) override;
  void mmio_read(uint64_t gpa, void* data, unsigned len) override;
  void mmio_write(uint64_t gpa, const void* data, unsigned len) override;
  cpu::MsrResult rdmsr(uint32_t msr, uint64_t* value) override;
  cpu::MsrResult wrmsr(uint32_t msr, uint64_t value) override;
  uint64_t read_cr8() override;
  void write_cr8(uint64_t value) override;
  cpu::CpuidLeaf cpuid(uint32_t leaf, uint32_t subleaf) override;
  uint64_t rdtsc() override;
  uint64_t tsc_aux() override { return 0; }

 private:
  ExitContext& ctx_;
  const EmuPlatform p_;
  platform::RunCounters& counters_;
  const int v_;
  const std::vector<platform::CpuidEntry> cpuid_;
};

// A vCPU's CPU and its exits, with the CPU model every emulated vCPU gets (features, CPUID leaves:
// the KVM backend's apicv leaves on the software CPU's base set).
struct EmuVcpu {
  std::unique_ptr<VcpuHost> host;
  std::unique_ptr<cpu::Cpu> cpu;
};
EmuVcpu CreateVcpu(const platform::RunOptions& opt, cpu::GuestRam& ram, ExitContext& ctx,
                   const EmuPlatform& p, platform::RunCounters& counters, int v);

// The boot CPU's state from the loader (flat / multiboot entry).
void LoadBootState(cpu::Cpu& c, const platform::CpuState& p);

// The options both modes refuse (std::runtime_error): -smp out of range, --irqchip kvm, RAM
// above the hole, an icount shift or quantum out of range.
void CheckOptions(const platform::RunOptions& opt, const EmuOptions& emu);

// Parallel mode (-accel emu,thread=multi): run_emu_multi.cc.
platform::RunResult RunGuestMulti(const platform::RunOptions& opt, const EmuOptions& emu);

}  // namespace apicv::emu
