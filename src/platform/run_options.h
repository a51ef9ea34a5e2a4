// What `apicv run`, `apicv repro` and the benchmarks ask of an execution backend, and what it
// reports back: the same RunOptions / RunResult for every backend (KVM today, the software CPU
// next), so the front end picks a backend without changing what it passes.
// RunCounters' exit counts are indexed by KVM_EXIT_* reason numbers (linux/kvm.h, a uapi header
// that needs no /dev/kvm); a backend without KVM counts the exits it models under the same numbers.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "platform/boot_loader.h"
#include "virt/irqchip.h"
#include "virt/timer_service.h"
#include "virt/vm_config.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::platform {

// kApicv: apicv's IrqChip serves every APIC/IOAPIC/PIC/PIT access, MSR, HLT and interrupt window.
// kKvm: KVM's in-kernel irqchip + PIT (the oracle; only the KVM backend has it).
enum class IrqchipMode : uint8_t { kApicv, kKvm };

// Status codes a backend reports besides the guest's own debug-exit code.
inline constexpr int kExitTimeout = 124;
inline constexpr int kExitVmmError = 125;

// -smp: 1024 under -accel emu (vCPUs above 255 need x2APIC), 288 under -accel kvm (what the KVM
// backend has been run with).
inline constexpr int kMaxVcpus = 1024;
inline constexpr int kMaxKvmVcpus = 288;

struct RunOptions {
  int smp = 1;                      // 1..kMaxVcpus
  uint64_t mem_size = 64ull << 20;  // bytes
  std::vector<uint8_t> kernel;      // multiboot ELF or flat binary
  std::string kernel_name = "kernel";
  std::optional<EntryMode> flat_entry;  // set: load `kernel` as a flat binary with this entry
  std::vector<uint8_t> initrd;
  std::string initrd_name;
  std::string append;
  IrqchipMode irqchip = IrqchipMode::kApicv;
  virt::VmConfig vm_config;             // apicv mode only (nr_vcpus is taken from smp)
  std::function<void(uint8_t)> serial;  // UART output; null: discard
  trace::TraceSink* trace = nullptr;    // apicv mode tracepoints (may be null)
  double timeout_s = 120;
  int max_reboots = 8;
  // Creates the apicv irqchip; null: CreateApicvIrqChip. Lets tests and tools inject a model.
  // `timers` is the backend's timer service (virt/timer_service.h): null under KVM (the VM runs
  // its own HostTimerService thread), the virtual-time scheduler's under -accel emu; pass it on.
  std::function<std::unique_ptr<virt::IrqChip>(const virt::VmConfig&, const Clock&,
                                               virt::TimerService* timers)>
      irqchip_factory;
};

struct RunCounters {
  std::array<uint64_t, 64> exits{};  // by KVM_EXIT_* reason
  uint64_t eintr = 0;                // KVM_RUN returned EINTR (kicks that hit the guest)
  uint64_t msr_exits_inval = 0;
  uint64_t msr_exits_filter = 0;
  uint64_t window_requests = 0;  // entries with request_interrupt_window = 1
  uint64_t window_exits = 0;     // interrupt_window_exit() calls
  uint64_t injections = 0;       // KVM_INTERRUPT
  uint64_t nmis = 0;             // KVM_NMI
  uint64_t kicks = 0;            // kick callback invocations
  uint64_t kick_signals = 0;     // kicks that needed pthread_kill
  uint64_t halts = 0;            // HLT exits that blocked
  uint64_t halt_poll_success = 0;
  uint64_t halt_sleeps = 0;
  uint64_t sipis = 0;
  void Add(const RunCounters& o);
};

struct RunResult {
  int exit_code = 0;  // guest debug-exit status, kExitTimeout, or kExitVmmError
  bool debug_exit = false;
  bool timed_out = false;
  int reboots = 0;
  std::string error;              // set with kExitVmmError
  std::vector<uint32_t> samples;  // port 0x2100 writes, in arrival order
  uint64_t tsc_khz = 0;           // TSC frequency the guest sees (KVM_GET_TSC_KHZ of vCPU 0)
  double wall_s = 0;
  // -accel emu only (0 under KVM): instructions every vCPU retired, and the virtual time at the
  // end (the furthest vCPU clock), over every boot of the run.
  uint64_t guest_instructions = 0;
  uint64_t virtual_ns = 0;
  RunCounters counters;
};

// The kernel image (or its multiboot module) cannot be loaded: the user's input, checked by every
// backend before it looks for its accelerator.
struct InvalidBootImage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Loads opt.kernel into `mem`: as a flat binary when opt.flat_entry is set, as Multiboot v1 (with
// opt.initrd as its module) when it has a multiboot header, else as a flat 32-bit binary.
// Throws std::runtime_error for an empty kernel, an ELF without a multiboot header, or a loader
// error.
BootImage LoadKernel(const RunOptions& opt, GuestMemory& mem);

}  // namespace apicv::platform
