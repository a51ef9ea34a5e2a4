// What the CPU cannot decide alone: everything outside the core (port I/O, physical addresses that
// are not RAM, MSRs it does not own, CR8/TPR, CPUID leaves, the time stamp counter and HLT). The
// platform (an execution backend) implements this. Calls happen on the thread running the CPU,
// in the middle of an instruction; a callback may call Cpu::request_exit() to end run() once the
// current instruction has retired, as every such access is a VM exit under KVM.
#pragma once

#include <cstdint>

namespace apicv::cpu {

enum class MsrResult : uint8_t { kOk, kGp };

struct CpuidLeaf {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

class CpuHost {
 public:
  virtual ~CpuHost() = default;
  virtual uint32_t pio_in(uint16_t port, unsigned size) = 0;
  virtual void pio_out(uint16_t port, unsigned size, uint32_t value) = 0;
  // Physical accesses outside RAM; `len` 1..8, little-endian `data`.
  virtual void mmio_read(uint64_t gpa, void* data, unsigned len) = 0;
  virtual void mmio_write(uint64_t gpa, const void* data, unsigned len) = 0;
  // MSRs not owned by the CPU (APIC, TSC, PMU, ...).
  virtual MsrResult rdmsr(uint32_t msr, uint64_t* value) = 0;
  virtual MsrResult wrmsr(uint32_t msr, uint64_t value) = 0;
  // MOV to/from CR8 is the LAPIC's TPR[7:4] (SDM vol. 3A 10.8.6.1); lowering it may unmask an
  // interrupt, so the platform sees every write.
  virtual uint64_t read_cr8() = 0;
  virtual void write_cr8(uint64_t value) = 0;
  virtual CpuidLeaf cpuid(uint32_t leaf, uint32_t subleaf) = 0;
  // RDTSC / RDTSCP: the platform's clock (virtual under -accel emu); TSC_AUX for RDTSCP.
  virtual uint64_t rdtsc() = 0;
  virtual uint64_t tsc_aux() = 0;
};

}  // namespace apicv::cpu
