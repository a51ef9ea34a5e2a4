// The exit dispatch every backend shares: one guest port access, MMIO access or foreign MSR
// access, offered first to the IrqChip (LAPIC, IOAPIC, PIC, PIT, x2APIC and PMU MSRs, test
// device) and otherwise served by the system ports of platform/system_ports.h, the UART 16550 at
// 0x3F8 and fw_cfg at 0x510. What a guest access asks of the VMM (isa-debug-exit, 0xCF9 or 8042
// reset) comes back as a StopRequest; the backend stops its vCPUs.
// Unclaimed accesses behave like an empty ISA bus / unassigned physical address (reads all ones,
// writes dropped) and are logged once per address on stderr, at most 64 addresses per Machine.
// The sample port 0x2100 appends 32-bit writes to a buffer bounded at 16 Mi samples.
// Threading: any vCPU thread may call any method; the port devices are behind one leaf lock.
// Not supported: port I/O wider than 4 bytes (only the low 4 bytes are served), MMIO wider than
// 8 bytes (clamped to 8), guest RAM accesses (the backend handles RAM itself).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "platform/fw_cfg.h"
#include "platform/system_ports.h"
#include "platform/uart_16550.h"
#include "virt/irqchip.h"

namespace apicv::platform {

// Why a backend stops all vCPUs. kTimeout and kError are raised by backends themselves; guest
// accesses through Machine produce kDebugExit and kReset.
enum class StopKind : int { kNone, kDebugExit, kReset, kError, kTimeout, kPoweroff };

struct StopRequest {
  StopKind kind = StopKind::kNone;
  int code = 0;  // kDebugExit: DebugExitStatus(value); otherwise 0
  explicit operator bool() const { return kind != StopKind::kNone; }
};

// What an MSR the IrqChip does not serve does.
enum class MsrMiss : uint8_t {
  kGp,        // no one implements it: #GP, as on hardware (KVM_MSR_EXIT_REASON_INVAL)
  kReadZero,  // routed to apicv but not served (e.g. no vPMU): reads 0, writes dropped, logged
};

class Machine {
 public:
  // `chip` may be null (KVM's in-kernel irqchip serves interrupts); `serial` receives UART output
  // (null: discarded). fw_cfg reports `ram_size` and `nr_vcpus`.
  Machine(uint64_t ram_size, int nr_vcpus, std::function<void(uint8_t)> serial,
          virt::IrqChip* chip);
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Without an IrqChip, test-device port writes (0x2000 + N, 1 byte) drive ISA line N through
  // `fn` (the KVM backend's KVM_IRQ_LINE). Unset: such writes are logged as unclaimed.
  void set_irq_line_handler(std::function<void(uint32_t line, bool level)> fn) {
    irq_line_ = std::move(fn);
  }

  // `count` port accesses of `size` bytes each (REP INS/OUTS: `data` holds count * size bytes,
  // in order). Every access is served, even after one of them requested a stop; the first stop
  // request is returned.
  StopRequest Pio(int vcpu, bool out, uint16_t port, uint8_t* data, unsigned size,
                  uint32_t count = 1);
  // One port access; `data` holds `size` bytes, little-endian.
  StopRequest PioOut(int vcpu, uint16_t port, const uint8_t* data, unsigned size);
  void PioIn(int vcpu, uint16_t port, uint8_t* data, unsigned size);

  // One MMIO access of `len` bytes (clamped to 8) outside guest RAM.
  void MmioRead(int vcpu, uint64_t gpa, uint8_t* data, unsigned len);
  void MmioWrite(int vcpu, uint64_t gpa, const uint8_t* data, unsigned len);

  // RDMSR / WRMSR of an MSR the executing CPU does not implement itself. Return false when the
  // instruction must raise #GP(0) (then *value is unchanged).
  bool Rdmsr(int vcpu, uint32_t index, uint64_t* value, MsrMiss miss);
  bool Wrmsr(int vcpu, uint32_t index, uint64_t value, MsrMiss miss);

  // System reset: UART, 0xCF9 and the fw_cfg selector return to their power-on state. Samples and
  // the unknown-access log survive (they describe the whole run).
  void Reset();

  std::vector<uint32_t> TakeSamples();
  size_t unknown_logged() const;

  // Port writes of a value from the system ports alone (no IrqChip), for callers that already
  // offered the access to the IrqChip.
  StopRequest PortOut(uint16_t port, uint32_t value, unsigned size);
  uint32_t PortIn(uint16_t port, unsigned size);

 private:
  void LogUnknownOnce(const char* what, uint64_t addr);

  virt::IrqChip* chip_;
  std::function<void(uint32_t, bool)> irq_line_;

  std::mutex dev_mu_;  // the port devices below; leaf lock
  Uart16550 uart_;
  FwCfg fw_cfg_;
  ResetControl reset_ctl_;
  std::vector<uint32_t> samples_;

  mutable std::mutex log_mu_;
  std::set<uint64_t> logged_;
};

}  // namespace apicv::platform
