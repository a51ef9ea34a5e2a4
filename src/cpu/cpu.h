// apicv's software x86-64 CPU (docs/cpu.md): an interpreter that executes guest code in real,
// protected and long mode from a cache of decoded instructions, behind a small interface.
// Intel SDM vol. 1-3; AMD APM vol. 2-3. Not supported: see docs/cpu.md ("Not implemented").
#pragma once

#include <cstdint>
#include <memory>

#include "cpu/cpu_host.h"
#include "cpu/cpu_state.h"
#include "cpu/guest_ram.h"

namespace apicv::cpu {

struct Core;

enum class StopReason : uint8_t {
  kBudget,     // the instruction budget is used up
  kHlt,        // HLT retired; state is Activity::kHalted
  kExit,       // a CpuHost callback or another thread asked to end the run
  kIrqWindow,  // an interrupt window was requested and is open (IF=1, no shadow)
  kShutdown,   // triple fault (SDM vol. 3A 6.15, "Interrupt 8"): state is Activity::kShutdown
  kNotActive,  // the CPU is halted / waiting for SIPI / shut down and nothing woke it
};

struct RunResult {
  StopReason reason = StopReason::kBudget;
  uint64_t retired = 0;  // instructions retired by this call
};

// Identity facts the CPU reports about itself (CPUID is the platform's, but a few instruction
// behaviours depend on the vendor and feature set the platform advertises).
struct CpuFeatures {
  bool popcnt = true;
  bool lzcnt_tzcnt = false;  // ABM/BMI1: without them LZCNT/TZCNT execute as BSR/BSF
  bool rdtscp = true;
  bool monitor = false;  // MONITOR/MWAIT: #UD when false
  bool cx16 = true;
  bool nx = true;
  bool pdpe1gb = true;
  bool syscall = true;
};

class Cpu {
 public:
  Cpu(GuestRam& ram, CpuHost& host, const CpuFeatures& features = {});
  ~Cpu();
  Cpu(const Cpu&) = delete;
  Cpu& operator=(const Cpu&) = delete;

  CpuState& state();
  const CpuState& state() const;
  // Call after changing state() from outside (CR0/CR4/EFER/segments/paging): re-derives modes
  // and flushes the TLB.
  void state_changed();

  // Executes at most `budget` instructions.
  RunResult run(uint64_t budget);

  // Power-on RESET (SDM vol. 3A table 10-1) and INIT (same table, "following INIT": EFER and a
  // few MSRs keep their values; an AP then waits for a SIPI when `wait_for_sipi`).
  void reset();
  void init(bool wait_for_sipi);
  // Start-up IPI: real mode at vector:0000 (CS = vector << 8, base = vector << 12).
  void sipi(uint8_t vector);

  // Event injection for the next instruction boundary (VM-entry interruption information).
  // The caller checks ready_for_interrupt() first, as KVM does before KVM_INTERRUPT.
  void inject_interrupt(uint8_t vector);
  void inject_nmi();
  bool ready_for_interrupt() const;  // RFLAGS.IF = 1 and no STI / MOV SS shadow
  // True when the last HLT executed inside an STI / MOV SS shadow (`sti; hlt`): the state a
  // hypervisor sees at that HLT exit (interruptibility "blocking by STI"), so KVM reports it not
  // ready for injection and opens an interrupt window. Consumed by the call.
  bool take_halted_in_shadow();
  bool nmi_blocked() const;
  // Ask run() to stop at the first instruction boundary where an interrupt can be injected.
  void set_interrupt_window_request(bool on);

  // Thread-safe: end the current run() at the next block boundary (a kick).
  void request_exit();

  // Instructions retired since construction; inside a CpuHost callback, those before the
  // instruction making the call.
  uint64_t retired() const;
  uint8_t cpl() const;  // current privilege level
  // Drops every decoded block (e.g. after the platform rewrote guest memory wholesale).
  void flush_decode_cache();

 private:
  std::unique_ptr<Core> core_;
};

}  // namespace apicv::cpu
