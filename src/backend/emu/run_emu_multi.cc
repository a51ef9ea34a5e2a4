// -accel emu,thread=multi: the parallel mode of the emu backend (docs/emu.md). One host thread per
// vCPU runs its software CPU in a loop shaped like the KVM backend's (run_guest.cc ApicvLoop):
// INIT/SIPI, run_timers, check_and_inject_events, vcpu_enter, run, vcpu_exit, exit dispatch
// (emu_vcpu.h, shared with the deterministic mode). Time is real: a Clock on CLOCK_MONOTONIC and
// the VM's own HostTimerService thread, as under KVM, so ApicvVm's concurrent paths (the inhibit
// rwlock, APICV_UPDATE kick-and-wait, AVIC IsRunning, posted interrupts) run on real threads.
//
// Kicks: a kick bumps the vCPU's wake sequence, asks its CPU to end the run at the next
// instruction-block boundary (Cpu::request_exit, the IPI that forces a VM exit) and wakes it from a
// futex wait; a vCPU reads the sequence before it looks for events, so no wake-up is lost
// (docs/kick-protocol.md, the same argument as the KVM backend's with immediate_exit).
// HLT blocks the thread (no polling) until has_events(), a kick, its next timer deadline or a stop.
// A stop (debug exit, reset, triple fault, VMM error, timeout) from any thread stops every vCPU.
//
// Guest memory: LOCK-prefixed read-modify-writes and XCHG are host atomics, aligned loads and
// stores are single host accesses (cpu/guest_ram.h); the decode caches are per CPU and stay
// coherent with other threads' stores through GuestRam's code-page generations.
//
// Not supported: determinism (interleavings and timing depend on the host; use the default
// thread=single for replay), -icount / --sched-seed / --quantum (virtual-time options), halt
// polling (a halted vCPU sleeps at once).
#include <linux/futex.h>
#include <linux/kvm.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backend/emu/emu_vcpu.h"
#include "platform/boot_end.h"
#include "platform/guest_memory.h"
#include "trace/kvm_events.h"
#include "trace/trace_sink.h"
#include "virt/vm.h"

namespace apicv::emu {

namespace {

using platform::StopKind;
using platform::StopRequest;

constexpr uint64_t kMaxWaitNs = 1'000'000'000;  // re-check the stop flag at least every second
// Instructions per Cpu::run(): kicks and exits end a run earlier; this only bounds how long a
// vCPU that never exits goes without looking at its timers itself.
constexpr uint64_t kRunBudget = 1u << 20;

// Real time: CLOCK_MONOTONIC from the run's start. The guest TSC counts at `tsc_khz` from the same
// nanoseconds, so a TSC-deadline value converts back to the nanosecond it names.
class HostClock final : public Clock {
 public:
  explicit HostClock(uint64_t tsc_khz) : khz_(tsc_khz), t0_(Monotonic()) {}
  uint64_t now_ns() const override { return Monotonic() - t0_; }
  uint64_t tsc() const override {
    const unsigned __int128 t = static_cast<unsigned __int128>(now_ns()) * khz_;
    return static_cast<uint64_t>(t / 1'000'000);
  }
  uint64_t tsc_khz() const override { return khz_; }

 private:
  static uint64_t Monotonic() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
  const uint64_t khz_;
  const uint64_t t0_;
};

struct Slot {
  EmuVcpu vcpu;
  std::atomic<uint32_t> wake_seq{0};
  platform::RunCounters counters;  // the vCPU thread's
  bool in_guest = false;           // the vCPU thread's: between vcpu_enter and vcpu_exit
  uint64_t pmu_synced = 0;         // the vCPU thread's: Cpu::retired() last handed to the vPMU
};

class MultiMachine final : public ExitContext {
 public:
  MultiMachine(const platform::RunOptions& opt, platform::GuestMemory& mem, const Clock& clock,
               virt::IrqChip& chip, platform::Machine& machine)
      : opt_(opt), clock_(clock), chip_(chip), ram_(mem.host(), mem.low_size()) {
    ram_.set_shared(opt.smp > 1);
    const EmuPlatform p{machine, chip, clock};
    for (int v = 0; v < opt.smp; ++v) {
      slots_.push_back(std::make_unique<Slot>());
      slots_.back()->vcpu = CreateVcpu(opt, ram_, *this, p, slots_.back()->counters, v);
    }
    chip_.set_kick([this](int v) { Kick(v); });
  }
  ~MultiMachine() override { Detach(); }

  // No kick reaches this object after Detach() returns (the VM's timer thread may still run).
  void Detach() {
    chip_.set_kick([](int) {});
    std::unique_lock lock(kick_mu_);
    attached_ = false;
  }

  StopKind Boot(const platform::BootImage& boot, std::chrono::steady_clock::time_point deadline);

  void leave_guest(int v, trace::ExitReason why) override {
    Slot& s = *slots_[v];
    SyncPmu(s, v);
    Exit(s, v, why);
  }
  void stop(const StopRequest& r) override {
    if (r) RequestStop(r.kind, r.kind == StopKind::kDebugExit ? r.code : 0, "");
  }

  int exit_code() const { return exit_code_; }
  const std::string& error() const { return error_; }
  platform::RunCounters Counters() const {
    platform::RunCounters c;
    for (const auto& s : slots_) c.Add(s->counters);
    c.kicks = kicks_.load(std::memory_order_relaxed);
    return c;
  }

 private:
  bool stopping() const { return stop_.load(std::memory_order_acquire) != 0; }

  void RequestStop(StopKind kind, int code, const std::string& msg) {
    {
      std::lock_guard lock(stop_mu_);
      int expected = 0;
      if (!stop_.compare_exchange_strong(expected, static_cast<int>(kind))) return;
      exit_code_ = code;
      error_ = msg;
    }
    stop_cv_.notify_all();
    for (int v = 0; v < opt_.smp; ++v) Kick(v);
  }

  void Kick(int v) {
    if (v < 0 || v >= opt_.smp) return;
    std::shared_lock lock(kick_mu_);
    if (!attached_) return;
    kicks_.fetch_add(1, std::memory_order_relaxed);
    Slot& s = *slots_[v];
    // Sequence first, then the run's exit request, then the futex: whatever the vCPU is doing
    // (about to look for events, running, or waiting), it sees the kick.
    s.wake_seq.fetch_add(1, std::memory_order_seq_cst);
    s.vcpu.cpu->request_exit();
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&s.wake_seq), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
  }

  // Sleeps until the wake sequence moves from `seq` (returns at once if it already has) or
  // `timeout_ns` passes; spurious returns are allowed.
  static void Wait(Slot& s, uint32_t seq, uint64_t timeout_ns) {
    timespec ts;
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000ull);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000ull);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&s.wake_seq), FUTEX_WAIT_PRIVATE, seq, &ts,
            nullptr, 0);
  }

  bool Vmx() const { return opt_.vm_config.vendor == virt::VendorModel::kVmx; }
  void Enter(Slot& s, int v) {
    if (!s.in_guest) {
      chip_.vcpu_enter(v);
      s.in_guest = true;
      trace::trace_kvm_entry(opt_.trace, static_cast<uint32_t>(v), s.vcpu.cpu->state().rip);
    }
  }
  // `why` names the exit in its kvm_exit line (the run's own stop, or a kick).
  void Exit(Slot& s, int v, trace::ExitReason why = trace::ExitReason::kExternalInterrupt) {
    if (s.in_guest) {
      trace::trace_kvm_exit(opt_.trace, static_cast<uint32_t>(v), why, Vmx(),
                            s.vcpu.cpu->state().rip);
      chip_.vcpu_exit(v);
      s.in_guest = false;
    }
  }
  // The vPMU counts every instruction the CPU retired (as the deterministic mode does); a PMI
  // raised here is delivered at the vCPU's next entry.
  void SyncPmu(Slot& s, int v) {
    const uint64_t now = s.vcpu.cpu->retired();
    if (now == s.pmu_synced) return;
    const uint64_t n = now - s.pmu_synced;
    s.pmu_synced = now;
    (void)chip_.instructions_retired(v, n, s.vcpu.cpu->cpl());
  }

  void VcpuThread(int v);
  void Loop(int v);
  void Halt(Slot& s, int v);

  const platform::RunOptions& opt_;
  const Clock& clock_;
  virt::IrqChip& chip_;
  cpu::GuestRam ram_;
  std::vector<std::unique_ptr<Slot>> slots_;

  std::shared_mutex kick_mu_;  // shared: kickers; exclusive: Detach()
  bool attached_ = true;       // guarded by kick_mu_
  std::atomic<uint64_t> kicks_{0};

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<int> stop_{0};
  int exit_code_ = 0;  // guarded by stop_mu_ until the threads are joined
  std::string error_;  // same
};

bool IfSet(const cpu::Cpu& c) {
  return (c.state().rflags & cpu::kIF) != 0;
}

void MultiMachine::VcpuThread(int v) {
  trace::TaskContext task;
  task.comm = "CPU " + std::to_string(v) + "/KVM";
  task.pid = static_cast<int>(gettid());
  task.cpu = sched_getcpu();
  trace::set_current_task(task);
  try {
    Loop(v);
  } catch (const std::exception& e) {
    RequestStop(StopKind::kError, platform::kExitVmmError,
                "vCPU " + std::to_string(v) + ": " + e.what());
  }
  Exit(*slots_[v], v);
}

void MultiMachine::Loop(int v) {
  Slot& s = *slots_[v];
  cpu::Cpu& c = *s.vcpu.cpu;
  platform::RunCounters& n = s.counters;
  bool wait_for_sipi = c.state().activity == cpu::Activity::kWaitForSipi;
  // The last HLT ran in an STI shadow: the next entry reports "not ready" once, as the KVM
  // backend sees ready_for_interrupt_injection = 0 at such a HLT exit and opens a window.
  bool hlt_shadow = false;
  while (!stopping()) {
    // Read before looking for events: a kick after this point makes the wait or run below end.
    const uint32_t seq = s.wake_seq.load(std::memory_order_seq_cst);
    const virt::MpEvent ev = chip_.take_mp_event(v);
    if (ev.kind == virt::MpEvent::kInit) {
      c.init(/*wait_for_sipi=*/true);
      wait_for_sipi = true;
    } else if (ev.kind == virt::MpEvent::kSipi && wait_for_sipi) {
      c.sipi(ev.sipi_vector);
      wait_for_sipi = false;
      ++n.sipis;
    }
    if (wait_for_sipi) {
      // No interrupts are accepted; only INIT/SIPI (and this vCPU's timers) matter.
      const uint64_t now = clock_.now_ns();
      const uint64_t d = chip_.next_deadline_ns(v);
      if (now >= d) {
        chip_.run_timers(v);
        continue;
      }
      Wait(s, seq, std::min(d - now, kMaxWaitNs));
      continue;
    }
    chip_.run_timers(v);
    const bool ready = c.ready_for_interrupt() && !hlt_shadow;
    hlt_shadow = false;
    const virt::Injection inj = chip_.check_and_inject_events(v, ready, IfSet(c));
    if (inj.nmi) {
      c.inject_nmi();
      ++n.nmis;
    }
    if (inj.vector >= 0 && ready) {
      c.inject_interrupt(static_cast<uint8_t>(inj.vector));
      ++n.injections;
    }
    c.set_interrupt_window_request(inj.request_window);
    if (inj.request_window) ++n.window_requests;
    Enter(s, v);
    // A run never crosses the instruction at which a vPMU instruction counter overflows.
    const cpu::RunResult r = c.run(std::min(kRunBudget, chip_.instructions_to_pmi(v, c.cpl())));
    SyncPmu(s, v);
    trace::ExitReason why = trace::ExitReason::kExternalInterrupt;  // a kick or a stop request
    if (r.reason == cpu::StopReason::kHlt) why = trace::ExitReason::kHlt;
    if (r.reason == cpu::StopReason::kIrqWindow) why = trace::ExitReason::kIrqWindow;
    if (r.reason == cpu::StopReason::kShutdown) why = trace::ExitReason::kShutdown;
    Exit(s, v, why);
    switch (r.reason) {
      case cpu::StopReason::kHlt:
        ++n.exits[KVM_EXIT_HLT];
        hlt_shadow = c.take_halted_in_shadow();
        if (inj.request_window && IfSet(c)) {
          // `sti; hlt` halts before the window opens: KVM takes it as the window exit.
          chip_.interrupt_window_exit(v);
          ++n.window_exits;
        }
        Halt(s, v);
        break;
      case cpu::StopReason::kIrqWindow:
        ++n.exits[KVM_EXIT_IRQ_WINDOW_OPEN];
        chip_.interrupt_window_exit(v);
        ++n.window_exits;
        break;
      case cpu::StopReason::kShutdown:
        std::fprintf(stderr, "apicv: vCPU %d: triple fault (shutdown) at rip 0x%llx, resetting\n",
                     v, static_cast<unsigned long long>(c.state().rip));
        ++n.exits[KVM_EXIT_SHUTDOWN];
        RequestStop(StopKind::kReset, 0, "");
        break;
      case cpu::StopReason::kNotActive:
        if (c.state().activity == cpu::Activity::kWaitForSipi) {
          wait_for_sipi = true;
        } else if (c.state().activity == cpu::Activity::kHalted) {
          Halt(s, v);  // a halt a stop interrupted, resumed
        }
        break;
      case cpu::StopReason::kExit:    // a host access (handled in the callback) or a kick
      case cpu::StopReason::kBudget:  // still running: look at timers and events again
        break;
    }
  }
}

// KVM's kvm_vcpu_halt without polling: sleep until the vCPU has something to do.
void MultiMachine::Halt(Slot& s, int v) {
  cpu::Cpu& c = *s.vcpu.cpu;
  platform::RunCounters& n = s.counters;
  ++n.halts;
  const bool if_set = IfSet(c);
  bool slept = false;
  while (!stopping()) {
    const uint32_t seq = s.wake_seq.load(std::memory_order_seq_cst);
    uint64_t now = clock_.now_ns();
    if (now >= chip_.next_deadline_ns(v)) chip_.run_timers(v);
    if (chip_.has_events(v, if_set)) {
      c.state().activity = cpu::Activity::kActive;  // continues after the HLT
      if (!slept) ++n.halt_poll_success;
      break;
    }
    const uint64_t d = chip_.next_deadline_ns(v);
    now = clock_.now_ns();
    if (d <= now) continue;  // due meanwhile: run it
    slept = true;
    Wait(s, seq, std::min(d - now, kMaxWaitNs));
  }
  if (slept) ++n.halt_sleeps;
}

StopKind MultiMachine::Boot(const platform::BootImage& boot,
                            std::chrono::steady_clock::time_point deadline) {
  stop_.store(0, std::memory_order_release);
  for (int v = 0; v < opt_.smp; ++v) {
    cpu::Cpu& c = *slots_[v]->vcpu.cpu;
    c.flush_decode_cache();
    if (v == 0) {
      c.reset();
      LoadBootState(c, platform::BootCpuState(boot));
    } else {
      c.init(/*wait_for_sipi=*/true);
    }
  }
  ram_.note_write(0, ram_.size());  // the loader rewrote the image: drop stale translations
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(opt_.smp));
  for (int v = 0; v < opt_.smp; ++v) threads.emplace_back([this, v] { VcpuThread(v); });
  {
    std::unique_lock lock(stop_mu_);
    if (!stop_cv_.wait_until(lock, deadline, [this] { return stopping(); })) {
      lock.unlock();
      RequestStop(StopKind::kTimeout, platform::kExitTimeout, "");
    }
  }
  for (auto& t : threads) t.join();
  return static_cast<StopKind>(stop_.load(std::memory_order_acquire));
}

}  // namespace

platform::RunResult RunGuestMulti(const platform::RunOptions& opt, const EmuOptions& emu) {
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
  HostClock clock(khz);
  virt::VmConfig cfg = opt.vm_config;
  cfg.nr_vcpus = opt.smp;
  cfg.tsc_khz = khz;
  cfg.tpr_writes_exit = true;  // MOV CR8 and TPR MMIO/MSR writes reach the chip synchronously
  if (opt.trace) opt.trace->set_clock(&clock);
  // No TimerService: the VM services its timers on its own HostTimerService thread, as under KVM.
  std::unique_ptr<virt::IrqChip> chip = opt.irqchip_factory
                                            ? opt.irqchip_factory(cfg, clock, nullptr)
                                            : virt::CreateApicvIrqChip(cfg, clock, opt.trace);
  platform::Machine machine(mem.size(), opt.smp, opt.serial, chip.get());
  platform::RunResult res;
  {
    MultiMachine m(opt, mem, clock, *chip, machine);
    for (;;) {
      const platform::BootImage boot = platform::LoadKernel(opt, mem);
      const StopKind kind = m.Boot(boot, deadline);
      if (!platform::EndOfBoot(kind, m.exit_code(), m.error(), opt, &res)) break;
      machine.Reset();
      chip->reset();
    }
    m.Detach();
    res.counters = m.Counters();
  }
  res.samples = machine.TakeSamples();
  chip.reset();  // joins the VM's timer thread, the last one that could emit a trace line
  if (opt.trace) opt.trace->set_clock(nullptr);
  res.tsc_khz = khz;
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace apicv::emu
