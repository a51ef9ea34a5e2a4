#include "backend/emu/run_emu.h"

#include <linux/kvm.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/emu/emu_vcpu.h"
#include "backend/emu/virtual_clock.h"
#include "cpu/cpu.h"
#include "platform/boot_end.h"
#include "platform/cpu_state.h"
#include "platform/cpuid.h"
#include "platform/guest_memory.h"
#include "platform/machine.h"
#include "trace/kvm_events.h"
#include "trace/trace_sink.h"
#include "virt/timer_service.h"
#include "virt/vm.h"

namespace apicv::emu {

namespace {

using platform::StopKind;
using platform::StopRequest;

enum class VcpuRun : uint8_t { kRunning, kHalted, kWaitForSipi };

struct Vcpu {
  std::unique_ptr<VcpuHost> host;  // its exits (emu_vcpu.h)
  std::unique_ptr<cpu::Cpu> cpu;
  uint64_t clock_ns = 0;
  VcpuRun run = VcpuRun::kRunning;
  bool kicked = false;
  bool in_guest = false;  // between vcpu_enter and vcpu_exit
  // The last HLT ran in an STI shadow: the next entry reports "not ready" once, as the KVM
  // backend sees ready_for_interrupt_injection = 0 at such a HLT exit and opens a window.
  bool hlt_shadow = false;
  uint64_t pmu_synced = 0;  // Cpu::retired() already handed to the vPMU
};

// splitmix64: the scheduler's seeded generator (deterministic across hosts and builds).
uint64_t NextRandom(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class EmuMachine final : public ExitContext {
 public:
  EmuMachine(const platform::RunOptions& opt, const EmuOptions& emu, platform::GuestMemory& mem,
             VirtualClock& clock, virt::IrqChip& chip, platform::Machine& machine)
      : opt_(opt),
        emu_(emu),
        mem_(mem),
        clock_(clock),
        chip_(chip),
        machine_(machine),
        ram_(mem.host(), mem.low_size()),
        rng_(emu.sched_seed) {
    chip_.set_kick([this](int v) { Kick(v); });
    if (emu_.sched_seed != 0) {
      unsigned halvings = 0;
      while ((emu_.quantum >> halvings) > 1 && halvings < kMaxHalvings) ++halvings;
      mean_quantum_ = emu_.quantum >> (NextRandom(rng_) % (halvings + 1));
      static constexpr unsigned kDeschedPer256[] = {0, 16, 64, 128};
      desched_per_256_ = kDeschedPer256[NextRandom(rng_) % 4];
    }
  }
  ~EmuMachine() {
    chip_.set_kick([](int) {});
  }

  StopKind Boot(const platform::BootImage& boot, std::chrono::steady_clock::time_point deadline);

  void RequestStop(StopKind kind, int code, const std::string& msg) {
    if (stop_ != StopKind::kNone) return;
    stop_ = kind;
    exit_code_ = code;
    error_ = msg;
    if (running_ >= 0) vcpus_[running_].cpu->request_exit();
  }
  void stop(const StopRequest& r) override {
    if (!r) return;
    RequestStop(r.kind, r.kind == StopKind::kDebugExit ? r.code : 0, "");
  }
  int exit_code() const { return exit_code_; }
  const std::string& error() const { return error_; }
  platform::RunCounters& counters() { return counters_; }
  cpu::Cpu& cpu(int v) { return *vcpus_[v].cpu; }
  uint64_t now_ns() const { return time_ns_; }
  uint64_t retired() const { return retired_; }  // every vCPU, every finished boot
  // Every access the CPU hands out is a VM exit: the vCPU leaves guest mode before the platform
  // handles it (as KVM_RUN returns before the KVM backend does), and re-enters at its next entry.
  // The vPMU first counts the instructions before it (an access to a counter sees them; the
  // access itself counts after it, as KVM counts an emulated instruction once it is done).
  void leave_guest(int v, trace::ExitReason why) override {
    SyncPmu(v);
    Exit(v, why);
  }
  // The vPMU counts every instruction the CPU retired, not only those that exit. Each access ends
  // the run, so a PMI raised here is delivered at the vCPU's next entry.
  void SyncPmu(int v) {
    Vcpu& vc = vcpus_[v];
    const uint64_t now = vc.cpu->retired();
    if (now == vc.pmu_synced) return;
    const uint64_t n = now - vc.pmu_synced;
    vc.pmu_synced = now;
    (void)chip_.instructions_retired(v, n, vc.cpu->cpl());
  }

 private:
  void Kick(int v) {
    if (v < 0 || v >= static_cast<int>(vcpus_.size())) return;
    ++counters_.kicks;
    vcpus_[v].kicked = true;
    if (v == running_) {
      vcpus_[v].cpu->request_exit();  // ends its quantum early
    } else {
      // A vCPU waiting for its turn is in guest mode; a kick makes it exit at once, as the IPI
      // does on a host with a CPU per vCPU (a KVM_REQUEST_WAIT broadcast then sees it outside).
      // Its kvm_exit line is the target's own (its thread), at the kicker's time.
      if (vcpus_[v].in_guest) {
        const trace::TaskContext kicker = trace::current_task();
        SetTask(v);
        Exit(v, trace::ExitReason::kExternalInterrupt);
        trace::set_current_task(kicker);
      }
    }
  }
  void SetTask(int v) {
    trace::TaskContext t;
    t.comm = "CPU " + std::to_string(v) + "/KVM";
    t.pid = 10000 + v;  // synthetic: no gettid(), the same on every run
    t.cpu = v;
    trace::set_current_task(t);
  }
  bool IfSet(int v) { return (vcpus_[v].cpu->state().rflags & cpu::kIF) != 0; }
  bool Vmx() const { return opt_.vm_config.vendor == virt::VendorModel::kVmx; }
  void Enter(int v) {
    if (!vcpus_[v].in_guest) {
      chip_.vcpu_enter(v);
      vcpus_[v].in_guest = true;
      trace::trace_kvm_entry(opt_.trace, static_cast<uint32_t>(v), vcpus_[v].cpu->state().rip);
    }
  }
  // `why` names the exit in its kvm_exit line (the run's own stop, or a kick).
  void Exit(int v, trace::ExitReason why = trace::ExitReason::kExternalInterrupt) {
    if (vcpus_[v].in_guest) {
      trace::trace_kvm_exit(opt_.trace, static_cast<uint32_t>(v), why, Vmx(),
                            vcpus_[v].cpu->state().rip);
      chip_.vcpu_exit(v);
      vcpus_[v].in_guest = false;
    }
  }
  // KVM's vcpu_block wake-up test for a halted or waiting vCPU; true when it became runnable.
  bool TryWake(int v);
  void RunQuantum(int v);
  void MaybeDeschedule(int v);
  std::string HangReport();

  const platform::RunOptions& opt_;
  const EmuOptions& emu_;
  platform::GuestMemory& mem_;
  VirtualClock& clock_;
  virt::IrqChip& chip_;
  platform::Machine& machine_;
  cpu::GuestRam ram_;
  std::vector<Vcpu> vcpus_;
  uint64_t rng_;
  // Seeded preemption (--sched-seed S != 0), drawn once per run from the seed so that a range of
  // seeds covers fine interleavings (quanta of a few instructions, where a window of a handful of
  // instructions between two vCPUs' accesses opens) as well as coarse ones: this run's mean
  // quantum, quantum / 2^k for k uniform in 0..8, and its chance (in 256ths) that a vCPU preempted
  // at the end of a quantum is also descheduled for a while.
  static constexpr unsigned kMaxHalvings = 8;  // mean quantum >= quantum / 256
  uint64_t mean_quantum_ = 0;
  unsigned desched_per_256_ = 0;
  uint64_t time_ns_ = 0;  // the scheduler's time: the earliest clock of a running vCPU
  uint64_t retired_ = 0;
  int running_ = -1;
  StopKind stop_ = StopKind::kNone;
  int exit_code_ = 0;
  std::string error_;
  platform::RunCounters counters_;
};

bool EmuMachine::TryWake(int v) {
  Vcpu& vc = vcpus_[v];
  clock_.set(std::max(vc.clock_ns, time_ns_));
  SetTask(v);
  const virt::MpEvent ev = chip_.take_mp_event(v);
  if (ev.kind == virt::MpEvent::kInit) {
    vc.cpu->init(/*wait_for_sipi=*/true);
    vc.run = VcpuRun::kWaitForSipi;
    Exit(v);
  } else if (ev.kind == virt::MpEvent::kSipi && vc.run == VcpuRun::kWaitForSipi) {
    vc.cpu->sipi(ev.sipi_vector);
    vc.run = VcpuRun::kRunning;
    ++counters_.sipis;
  }
  if (vc.run == VcpuRun::kHalted) {
    chip_.run_timers(v);
    if (chip_.has_events(v, IfSet(v))) {
      vc.run = VcpuRun::kRunning;
      vc.cpu->state().activity = cpu::Activity::kActive;  // continues after the HLT
    }
  }
  if (vc.run == VcpuRun::kRunning) {
    vc.clock_ns = std::max(vc.clock_ns, time_ns_);
    return true;
  }
  return false;
}

void EmuMachine::RunQuantum(int v) {
  Vcpu& vc = vcpus_[v];
  cpu::Cpu& c = *vc.cpu;
  running_ = v;
  SetTask(v);
  clock_.set(vc.clock_ns);
  const virt::MpEvent ev = chip_.take_mp_event(v);
  if (ev.kind == virt::MpEvent::kInit) {
    c.init(true);
    vc.run = VcpuRun::kWaitForSipi;
    Exit(v);
    running_ = -1;
    return;
  }
  chip_.run_timers(v);
  const bool ready = c.ready_for_interrupt() && !vc.hlt_shadow;
  vc.hlt_shadow = false;
  const virt::Injection inj = chip_.check_and_inject_events(v, ready, IfSet(v));
  if (inj.nmi) {
    c.inject_nmi();
    ++counters_.nmis;
  }
  if (inj.vector >= 0 && ready) {
    c.inject_interrupt(static_cast<uint8_t>(inj.vector));
    ++counters_.injections;
  }
  c.set_interrupt_window_request(inj.request_window);
  if (inj.request_window) ++counters_.window_requests;
  Enter(v);
  // The budget never crosses this vCPU's or the VM's next deadline.
  const uint64_t d = std::min(chip_.next_deadline_ns(v), chip_.next_deadline_ns());
  uint64_t quantum = emu_.quantum;
  if (emu_.sched_seed != 0) quantum = 1 + NextRandom(rng_) % (2 * mean_quantum_);
  uint64_t budget = quantum;
  if (d != UINT64_MAX) {
    const uint64_t step = 1ull << emu_.icount_shift;
    const uint64_t left = d > vc.clock_ns ? (d - vc.clock_ns + step - 1) / step : 1;
    budget = std::min(budget, std::max<uint64_t>(left, 1));
  }
  // ... nor the instruction at which a vPMU instruction counter overflows (its PMI follows it).
  budget = std::min(budget, chip_.instructions_to_pmi(v, c.cpl()));
  vc.kicked = false;
  clock_.follow(&c, vc.clock_ns);
  const cpu::RunResult r = c.run(budget);
  SyncPmu(v);
  vc.clock_ns += r.retired << emu_.icount_shift;
  clock_.set(vc.clock_ns);
  running_ = -1;
  // Every stop but the end of the quantum is a VM exit: leave guest mode before handling it.
  if (r.reason != cpu::StopReason::kBudget) {
    trace::ExitReason why = trace::ExitReason::kExternalInterrupt;  // a kick or a stop request
    if (r.reason == cpu::StopReason::kHlt) why = trace::ExitReason::kHlt;
    if (r.reason == cpu::StopReason::kIrqWindow) why = trace::ExitReason::kIrqWindow;
    if (r.reason == cpu::StopReason::kShutdown) why = trace::ExitReason::kShutdown;
    Exit(v, why);
  }
  switch (r.reason) {
    case cpu::StopReason::kHlt: {
      ++counters_.exits[KVM_EXIT_HLT];
      vc.hlt_shadow = c.take_halted_in_shadow();
      if (inj.request_window && IfSet(v)) {
        // `sti; hlt` halts before the window opens: KVM takes it as the window exit.
        chip_.interrupt_window_exit(v);
        ++counters_.window_exits;
      }
      ++counters_.halts;
      Exit(v);
      if (chip_.has_events(v, IfSet(v))) {
        c.state().activity = cpu::Activity::kActive;
        ++counters_.halt_poll_success;
      } else {
        vc.run = VcpuRun::kHalted;
        ++counters_.halt_sleeps;
      }
      break;
    }
    case cpu::StopReason::kIrqWindow:
      ++counters_.exits[KVM_EXIT_IRQ_WINDOW_OPEN];
      chip_.interrupt_window_exit(v);
      ++counters_.window_exits;
      break;
    case cpu::StopReason::kShutdown:
      std::fprintf(stderr, "apicv: vCPU %d: triple fault (shutdown) at rip 0x%llx, resetting\n", v,
                   static_cast<unsigned long long>(c.state().rip));
      ++counters_.exits[KVM_EXIT_SHUTDOWN];
      RequestStop(StopKind::kReset, 0, "");
      break;
    case cpu::StopReason::kNotActive:
      if (c.state().activity == cpu::Activity::kWaitForSipi) {
        vc.run = VcpuRun::kWaitForSipi;
        Exit(v);
      }
      break;
    case cpu::StopReason::kExit:
      // A host access (an exit to userspace under KVM): leave guest mode and come back, as the
      // KVM backend does around every KVM_RUN.
      Exit(v);
      break;
    case cpu::StopReason::kBudget:
      // Preempted at the end of its quantum: still "running" (AVIC IsRunning stays set), unless
      // the seed deschedules it.
      MaybeDeschedule(v);
      break;
  }
}

void EmuMachine::MaybeDeschedule(int v) {
  if (desched_per_256_ == 0 || NextRandom(rng_) % 256 >= desched_per_256_) return;
  // Only while another vCPU can run in the meantime: alone, a descheduled period would just
  // shift this vCPU's events in time (a single vCPU's trace does not depend on the seed).
  bool other = false;
  for (size_t w = 0; w < vcpus_.size() && !other; ++w) {
    other = static_cast<int>(w) != v && vcpus_[w].run == VcpuRun::kRunning;
  }
  if (!other) return;
  // As after vcpu_put on a loaded host: out of guest mode (IsRunning clear), not halted, its
  // virtual time passing without instructions. The period never crosses its own next timer
  // deadline, so timer lateness stays independent of the seed.
  Vcpu& vc = vcpus_[v];
  uint64_t period = (1 + NextRandom(rng_) % (8 * mean_quantum_)) << emu_.icount_shift;
  const uint64_t d = chip_.next_deadline_ns(v);
  if (d != UINT64_MAX) period = d > vc.clock_ns ? std::min(period, d - vc.clock_ns) : 0;
  if (period == 0) return;
  Exit(v);
  vc.clock_ns += period;
}

std::string EmuMachine::HangReport() {
  std::string s =
      "all vCPUs are halted or waiting for SIPI with no timer armed and no event "
      "pending (a lost wake-up) at virtual time " +
      std::to_string(time_ns_) + " ns:";
  for (size_t v = 0; v < vcpus_.size(); ++v) {
    const cpu::CpuState& st = vcpus_[v].cpu->state();
    char buf[160];
    std::snprintf(buf, sizeof buf, " vCPU %zu %s rip=0x%llx IF=%d cr8=%llu;", v,
                  vcpus_[v].run == VcpuRun::kHalted ? "halted" : "wait-for-SIPI",
                  static_cast<unsigned long long>(st.rip), (st.rflags & cpu::kIF) ? 1 : 0,
                  static_cast<unsigned long long>(chip_.get_cr8(static_cast<int>(v))));
    s += buf;
  }
  return s;
}

StopKind EmuMachine::Boot(const platform::BootImage& boot,
                          std::chrono::steady_clock::time_point deadline) {
  stop_ = StopKind::kNone;
  vcpus_.clear();
  vcpus_.resize(static_cast<size_t>(opt_.smp));
  for (int v = 0; v < opt_.smp; ++v) {
    Vcpu& vc = vcpus_[v];
    EmuVcpu e = CreateVcpu(opt_, ram_, *this, EmuPlatform{machine_, chip_, clock_}, counters_, v);
    vc.host = std::move(e.host);
    vc.cpu = std::move(e.cpu);
    vc.clock_ns = time_ns_;
    if (v == 0) {
      LoadBootState(*vc.cpu, platform::BootCpuState(boot));
      vc.run = VcpuRun::kRunning;
    } else {
      vc.cpu->init(true);
      vc.run = VcpuRun::kWaitForSipi;
    }
  }
  ram_.note_write(0, ram_.size());  // the loader rewrote the image: drop stale translations
  uint64_t iterations = 0;
  while (stop_ == StopKind::kNone) {
    if ((++iterations & 1023) == 0 && std::chrono::steady_clock::now() >= deadline) {
      RequestStop(StopKind::kTimeout, platform::kExitTimeout, "");
      break;
    }
    // The earliest clock among running vCPUs is the machine's time.
    int pick = -1;
    uint64_t best = UINT64_MAX;
    for (int v = 0; v < opt_.smp; ++v) {
      if (vcpus_[v].run == VcpuRun::kRunning && vcpus_[v].clock_ns < best) {
        best = vcpus_[v].clock_ns;
        pick = v;
      }
    }
    if (pick < 0) {
      // Everyone is idle: time jumps to the next deadline.
      clock_.set(time_ns_);
      const uint64_t d = chip_.next_deadline_ns();
      if (d == UINT64_MAX) {
        RequestStop(StopKind::kError, platform::kExitVmmError, HangReport());
        break;
      }
      time_ns_ = std::max(time_ns_, d);
    } else {
      time_ns_ = std::max(time_ns_, best);
    }
    clock_.set(time_ns_);
    if (chip_.next_deadline_ns() <= time_ns_) chip_.service_timers(time_ns_);
    // Idle vCPUs that were kicked (or whose timers are due) get their wake-up test.
    bool woke = false;
    for (int v = 0; v < opt_.smp; ++v) {
      Vcpu& vc = vcpus_[v];
      if (vc.run == VcpuRun::kRunning) continue;
      const bool due = chip_.next_deadline_ns(v) <= time_ns_;
      if (vc.kicked || due) {
        vc.kicked = false;
        if (TryWake(v)) woke = true;
      }
    }
    if (woke || pick < 0) continue;  // pick again with the woken vCPUs
    // With a seed, ties and near-ties go to a random vCPU within one quantum of the earliest.
    if (emu_.sched_seed != 0) {
      std::vector<int> near;
      for (int v = 0; v < opt_.smp; ++v) {
        if (vcpus_[v].run == VcpuRun::kRunning &&
            vcpus_[v].clock_ns <= best + (emu_.quantum << emu_.icount_shift)) {
          near.push_back(v);
        }
      }
      pick = near[NextRandom(rng_) % near.size()];
    }
    RunQuantum(pick);
  }
  for (int v = 0; v < opt_.smp; ++v) {
    SetTask(v);  // each kvm_exit line on its own vCPU's thread
    Exit(v);
  }
  for (const Vcpu& vc : vcpus_) {
    time_ns_ = std::max(time_ns_, vc.clock_ns);
    retired_ += vc.cpu->retired();
  }
  return stop_;
}

}  // namespace

platform::RunResult RunGuest(const platform::RunOptions& opt, const EmuOptions& emu) {
  CheckOptions(opt, emu);
  if (emu.multi) return RunGuestMulti(opt, emu);
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(opt.timeout_s));
  platform::GuestMemory mem(opt.mem_size);
  // The image is the user's input: a bad -kernel is reported as such (every boot loads it again).
  try {
    (void)platform::LoadKernel(opt, mem);
  } catch (const std::runtime_error& e) {
    throw platform::InvalidBootImage(e.what());
  }
  const uint64_t khz = opt.vm_config.tsc_khz ? opt.vm_config.tsc_khz : emu.tsc_khz;
  VirtualClock clock(emu.icount_shift, khz);
  virt::ManualTimerService timers;
  virt::VmConfig cfg = opt.vm_config;
  cfg.nr_vcpus = opt.smp;
  cfg.tsc_khz = khz;
  cfg.tpr_writes_exit = true;  // MOV CR8 and TPR MMIO/MSR writes reach the chip synchronously
  // Every line, the VM creation's included, carries virtual time.
  if (opt.trace) opt.trace->set_clock(&clock);
  std::unique_ptr<virt::IrqChip> chip =
      opt.irqchip_factory ? opt.irqchip_factory(cfg, clock, &timers)
                          : virt::CreateApicvIrqChip(cfg, clock, opt.trace, &timers);
  platform::Machine machine(mem.size(), opt.smp, opt.serial, chip.get());
  platform::RunResult res;
  {
    EmuMachine m(opt, emu, mem, clock, *chip, machine);
    for (;;) {
      const platform::BootImage boot = platform::LoadKernel(opt, mem);
      const StopKind kind = m.Boot(boot, deadline);
      if (!platform::EndOfBoot(kind, m.exit_code(), m.error(), opt, &res)) break;
      machine.Reset();
      clock.set(m.now_ns());
      chip->reset();
    }
    res.counters = m.counters();
    res.guest_instructions = m.retired();
    res.virtual_ns = m.now_ns();
  }
  if (opt.trace) opt.trace->set_clock(nullptr);
  res.samples = machine.TakeSamples();
  res.tsc_khz = khz;
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace apicv::emu
