// RunGuest: vCPU threads, KVM_RUN exit dispatch into apicv's IrqChip or KVM's in-kernel irqchip,
// halt with adaptive polling, reset and shutdown; port, MMIO and MSR exits go through the
// platform's exit dispatch (platform/machine.h). See run_guest.h.
#include "backend/kvm/run_guest.h"

#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "backend/kvm/cpuid.h"
#include "backend/kvm/halt_poll.h"
#include "backend/kvm/kvm_vm.h"
#include "backend/kvm/vcpu_kick.h"
#include "devices/clock.h"
#include "platform/boot_end.h"
#include "platform/guest_memory.h"
#include "platform/machine.h"
#include "trace/trace_sink.h"
#include "virt/vm.h"

namespace apicv::kvm {

const char* ExitReasonName(unsigned reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN:
      return "UNKNOWN";
    case KVM_EXIT_EXCEPTION:
      return "EXCEPTION";
    case KVM_EXIT_IO:
      return "IO";
    case KVM_EXIT_HYPERCALL:
      return "HYPERCALL";
    case KVM_EXIT_DEBUG:
      return "DEBUG";
    case KVM_EXIT_HLT:
      return "HLT";
    case KVM_EXIT_MMIO:
      return "MMIO";
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return "IRQ_WINDOW_OPEN";
    case KVM_EXIT_SHUTDOWN:
      return "SHUTDOWN";
    case KVM_EXIT_FAIL_ENTRY:
      return "FAIL_ENTRY";
    case KVM_EXIT_INTR:
      return "INTR";
    case KVM_EXIT_INTERNAL_ERROR:
      return "INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT:
      return "SYSTEM_EVENT";
    case KVM_EXIT_X86_RDMSR:
      return "X86_RDMSR";
    case KVM_EXIT_X86_WRMSR:
      return "X86_WRMSR";
    default:
      return "OTHER";
  }
}

namespace {

constexpr uint64_t kMaxWaitNs = 1000000000ull;  // re-check the stop flag at least every second

using platform::BootImage;
using platform::GuestMemory;
using platform::StopKind;
enum class RunState : uint8_t { kRunning, kWaitForSipi };

inline void CpuRelax() {
  __builtin_ia32_pause();
}

// One run's VM: vCPU threads around KVM_RUN; the exits go to the platform's Machine.
class KvmMachine {
 public:
  KvmMachine(const RunOptions& opt, KvmSystem& sys, GuestMemory& mem, const Clock& clock,
             virt::IrqChip* chip)
      : opt_(opt),
        sys_(sys),
        mem_(mem),
        clock_(clock),
        chip_(chip),
        bus_(
            mem.size(), opt.smp,
            [this](uint8_t b) {
              if (opt_.serial) opt_.serial(b);
            },
            chip),
        kicks_(static_cast<size_t>(opt.smp)) {
    // Only KVM's in-kernel irqchip takes ISA lines from user space (KVM_IRQ_LINE).
    bus_.set_irq_line_handler([this](uint32_t line, bool level) {
      if (vm_ != nullptr) vm_->SetIrqLine(line, level);
    });
  }

  void Kick(int v) {
    if (v < 0 || v >= opt_.smp) return;
    std::shared_lock lock(kick_mu_);
    kick_count_.fetch_add(1, std::memory_order_relaxed);
    if (kicks_[v].Kick()) kick_signal_count_.fetch_add(1, std::memory_order_relaxed);
  }

  // One boot: create the VM, run every vCPU until a stop request, tear down.
  StopKind Boot(const BootImage& boot, std::chrono::steady_clock::time_point deadline) {
    stop_.store(static_cast<int>(StopKind::kNone));
    KvmVm vm(sys_, mem_, opt_.irqchip, opt_.smp);
    vm_ = &vm;
    std::vector<kvm_cpuid_entry2> supported = GetSupportedCpuid(sys_.fd());
    std::vector<std::unique_ptr<KvmVcpu>> vcpus;
    vcpus.reserve(static_cast<size_t>(opt_.smp));
    for (int i = 0; i < opt_.smp; ++i) {
      vcpus.push_back(std::make_unique<KvmVcpu>(sys_, vm.fd(), i));
      std::vector<kvm_cpuid_entry2> c = supported;
      PatchCpuidForVcpu(c, static_cast<uint32_t>(i),
                        GuestPmuFor(opt_.irqchip == IrqchipMode::kApicv, opt_.vm_config));
      PatchCpuidForCpuModel(c, opt_.vm_config);
      if (!vcpus.back()->SetCpuid(c) && !cpuid_warned_) {
        cpuid_warned_ = true;
        std::fprintf(stderr, "apicv: KVM_SET_CPUID2 failed (%s): guest CPUID is unsupported here\n",
                     std::strerror(errno));
      }
    }
    vcpus[0]->SetBootState(boot);
    if (tsc_khz_ == 0) {
      const int khz = ioctl(vcpus[0]->fd(), KVM_GET_TSC_KHZ, 0);
      tsc_khz_ = khz > 0 ? static_cast<uint64_t>(khz) : 0;
    }
    std::vector<std::thread> threads;
    threads.reserve(vcpus.size());
    for (int i = 0; i < opt_.smp; ++i) {
      threads.emplace_back([this, &vcpus, i] { VcpuThread(*vcpus[i]); });
    }
    {
      std::unique_lock lock(stop_mu_);
      if (!stop_cv_.wait_until(lock, deadline, [this] { return stop_.load() != 0; })) {
        lock.unlock();
        RequestStop(StopKind::kTimeout, kExitTimeout, "");
      }
    }
    for (auto& t : threads) t.join();
    vm_ = nullptr;
    return static_cast<StopKind>(stop_.load());
  }

  void ResetDevices() { bus_.Reset(); }

  int exit_code() const { return exit_code_; }
  const std::string& error() const { return error_; }
  std::vector<uint32_t> TakeSamples() { return bus_.TakeSamples(); }
  uint64_t tsc_khz() const { return tsc_khz_; }
  RunCounters Counters() const {
    RunCounters c = counters_;
    c.kicks = kick_count_.load();
    c.kick_signals = kick_signal_count_.load();
    return c;
  }

 private:
  bool stopping() const { return stop_.load(std::memory_order_acquire) != 0; }

  void RequestStop(StopKind kind, int code, const std::string& msg) {
    int expected = 0;
    {
      std::lock_guard lock(stop_mu_);
      if (!stop_.compare_exchange_strong(expected, static_cast<int>(kind))) return;
      exit_code_ = code;
      error_ = msg;
    }
    stop_cv_.notify_all();
    for (int i = 0; i < opt_.smp; ++i) Kick(i);
  }

  // Stops every vCPU for what a guest access asked (debug exit, reset).
  void Stop(const platform::StopRequest& req) {
    if (req) RequestStop(req.kind, req.code, "");
  }

  void VcpuThread(KvmVcpu& vcpu) {
    const int v = vcpu.id();
    trace::TaskContext task;
    task.comm = "CPU " + std::to_string(v) + "/KVM";
    task.pid = static_cast<int>(gettid());
    task.cpu = sched_getcpu();
    trace::set_current_task(task);
    VcpuKick& kick = kicks_[v];
    kick.Attach(pthread_self(), &vcpu.run()->immediate_exit);
    RunCounters c;
    try {
      if (chip_ != nullptr) {
        ApicvLoop(vcpu, kick, c);
      } else {
        KvmLoop(vcpu, kick, c);
      }
    } catch (const std::exception& e) {
      RequestStop(StopKind::kError, kExitVmmError,
                  std::string("vCPU ") + std::to_string(v) + ": " + e.what());
    }
    {
      std::unique_lock lock(kick_mu_);
      kick.Detach();
    }
    std::lock_guard lock(stop_mu_);
    counters_.Add(c);
  }

  // Returns false when the exit stops this vCPU.
  bool RunOnce(KvmVcpu& vcpu, VcpuKick& kick, RunCounters& c) {
    kick.EnterRun();
    const int r = ioctl(vcpu.fd(), KVM_RUN, 0);
    const int err = errno;
    kick.LeaveRun();
    if (r != 0) {
      if (err == EINTR || err == EAGAIN) {
        ++c.eintr;
        return true;
      }
      RequestStop(StopKind::kError, kExitVmmError,
                  std::string("KVM_RUN failed: ") + std::strerror(err));
      return false;
    }
    return true;
  }

  void KvmLoop(KvmVcpu& vcpu, VcpuKick& kick, RunCounters& c) {
    kvm_run* run = vcpu.run();
    while (!stopping()) {
      kick.BeginCheck();
      if (stopping()) break;
      const int prev_eintr = static_cast<int>(c.eintr);
      if (!RunOnce(vcpu, kick, c)) break;
      if (static_cast<int>(c.eintr) != prev_eintr) continue;
      HandleExit(vcpu, run, c, false);
    }
  }

  void ApicvLoop(KvmVcpu& vcpu, VcpuKick& kick, RunCounters& c) {
    const int v = vcpu.id();
    kvm_run* run = vcpu.run();
    HaltPollController halt_poll(opt_.vm_config.halt_poll_ns);
    RunState state = v == 0 ? RunState::kRunning : RunState::kWaitForSipi;
    while (!stopping()) {
      const uint32_t seq = kick.BeginCheck();
      const virt::MpEvent ev = chip_->take_mp_event(v);
      if (ev.kind == virt::MpEvent::kInit) {
        state = RunState::kWaitForSipi;
        vcpu.SetInitState();
      } else if (ev.kind == virt::MpEvent::kSipi && state == RunState::kWaitForSipi) {
        vcpu.SetSipiState(ev.sipi_vector);
        state = RunState::kRunning;
        ++c.sipis;
      }
      if (state == RunState::kWaitForSipi) {
        // Wait-for-SIPI: no interrupts are accepted; only INIT/SIPI (and timers) matter.
        const uint64_t now = clock_.now_ns();
        const uint64_t deadline = chip_->next_deadline_ns(v);
        if (now >= deadline) {
          chip_->run_timers(v);
          continue;
        }
        if (!stopping()) kick.Wait(seq, std::min(deadline - now, kMaxWaitNs));
        continue;
      }
      chip_->run_timers(v);
      const bool ready = run->ready_for_interrupt_injection != 0;
      const virt::Injection inj = chip_->check_and_inject_events(v, ready, run->if_flag != 0);
      if (inj.nmi) {
        if (ioctl(vcpu.fd(), KVM_NMI, 0) != 0) throw std::runtime_error("KVM_NMI failed");
        ++c.nmis;
      }
      if (inj.vector >= 0 && ready) {
        kvm_interrupt irq{};
        irq.irq = static_cast<uint32_t>(inj.vector);
        if (ioctl(vcpu.fd(), KVM_INTERRUPT, &irq) != 0) {
          throw std::runtime_error("KVM_INTERRUPT failed");
        }
        ++c.injections;
      }
      run->request_interrupt_window = inj.request_window ? 1 : 0;
      if (inj.request_window) ++c.window_requests;
      run->cr8 = chip_->get_cr8(v);
      chip_->vcpu_enter(v);
      const uint64_t prev_eintr = c.eintr;
      const bool ok = RunOnce(vcpu, kick, c);
      chip_->vcpu_exit(v);
      if (!ok) break;
      if (c.eintr != prev_eintr) continue;
      chip_->set_cr8(v, run->cr8);
      if (run->exit_reason == KVM_EXIT_HLT) {
        chip_->instruction_emulated(v);
        ++c.exits[KVM_EXIT_HLT];
        // `sti; hlt` exits with HLT instead of a window exit: treat it as the window exit.
        if (inj.request_window && run->if_flag) {
          chip_->interrupt_window_exit(v);
          ++c.window_exits;
        }
        Halt(v, kick, run->if_flag != 0, halt_poll, c);
        continue;
      }
      HandleExit(vcpu, run, c, inj.request_window);
    }
  }

  // Blocks until has_events(), a stop, or nothing: polls first for halt_poll.poll_ns().
  void Halt(int v, VcpuKick& kick, bool if_set, HaltPollController& hp, RunCounters& c) {
    ++c.halts;
    const uint64_t start = clock_.now_ns();
    const uint64_t poll_ns = hp.poll_ns();
    bool valid = false;
    bool slept = false;
    uint64_t now = start;
    while (!stopping()) {
      const uint32_t seq = kick.BeginCheck();
      now = clock_.now_ns();
      const uint64_t deadline = chip_->next_deadline_ns(v);
      if (now >= deadline) chip_->run_timers(v);
      if (chip_->has_events(v, if_set)) {
        valid = true;
        break;
      }
      if (now - start < poll_ns) {
        CpuRelax();
        continue;
      }
      const uint64_t d2 = chip_->next_deadline_ns(v);
      const uint64_t timeout = d2 > now ? std::min(d2 - now, kMaxWaitNs) : 0;
      if (timeout == 0) continue;
      slept = true;
      kick.Wait(seq, timeout);
    }
    now = clock_.now_ns();
    if (valid && !slept) ++c.halt_poll_success;
    if (slept) ++c.halt_sleeps;
    hp.Update(now - start, valid);
  }

  void HandleExit(KvmVcpu& vcpu, kvm_run* run, RunCounters& c, bool window_requested) {
    const int v = vcpu.id();
    const unsigned reason = run->exit_reason;
    ++c.exits[std::min<unsigned>(reason, 63)];
    switch (reason) {
      case KVM_EXIT_IO:
        HandleIo(v, run);
        if (chip_) chip_->instruction_emulated(v);
        break;
      case KVM_EXIT_MMIO:
        HandleMmio(v, run);
        if (chip_) chip_->instruction_emulated(v);
        break;
      case KVM_EXIT_X86_RDMSR:
      case KVM_EXIT_X86_WRMSR:
        HandleMsr(v, run, c);
        if (chip_) chip_->instruction_emulated(v);
        break;
      case KVM_EXIT_IRQ_WINDOW_OPEN:
        if (chip_) {
          chip_->interrupt_window_exit(v);
          ++c.window_exits;
        }
        (void)window_requested;
        break;
      case KVM_EXIT_SET_TPR:
        // VMX/SVM report a CR8 write that lowered it (user-space LAPIC only). run->cr8 was already
        // handed to set_cr8() above; the next check_and_inject_events() delivers what it unmasked.
        break;
      case KVM_EXIT_HLT:
        // kvm mode halts in the kernel; only reachable with a user-space LAPIC.
        break;
      case KVM_EXIT_INTR:
        ++c.eintr;
        break;
      case KVM_EXIT_SHUTDOWN:
        // Triple fault: a PC resets (QEMU does the same).
        std::fprintf(stderr, "apicv: vCPU %d: triple fault (shutdown) at rip 0x%llx, resetting\n",
                     v, static_cast<unsigned long long>(vcpu.Rip()));
        RequestStop(StopKind::kReset, 0, "");
        break;
      case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
          RequestStop(StopKind::kReset, 0, "");
        } else {
          RequestStop(StopKind::kPoweroff, 0, "");
        }
        break;
      default: {
        char buf[160];
        std::snprintf(buf, sizeof buf, "vCPU %d: unhandled KVM exit %u (%s) at rip 0x%llx", v,
                      reason, ExitReasonName(reason), static_cast<unsigned long long>(vcpu.Rip()));
        if (reason == KVM_EXIT_INTERNAL_ERROR) {
          std::snprintf(buf + std::strlen(buf), sizeof buf - std::strlen(buf), " suberror %u",
                        run->internal.suberror);
        } else if (reason == KVM_EXIT_FAIL_ENTRY) {
          std::snprintf(
              buf + std::strlen(buf), sizeof buf - std::strlen(buf), " hw reason 0x%llx",
              static_cast<unsigned long long>(run->fail_entry.hardware_entry_failure_reason));
        }
        RequestStop(StopKind::kError, kExitVmmError, buf);
        break;
      }
    }
  }

  void HandleIo(int v, kvm_run* run) {
    uint8_t* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
    Stop(bus_.Pio(v, run->io.direction == KVM_EXIT_IO_OUT, run->io.port, data, run->io.size,
                  run->io.count));
  }

  void HandleMmio(int v, kvm_run* run) {
    if (run->mmio.is_write) {
      bus_.MmioWrite(v, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
    } else {
      bus_.MmioRead(v, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
    }
  }

  void HandleMsr(int v, kvm_run* run, RunCounters& c) {
    const bool inval = run->msr.reason == KVM_MSR_EXIT_REASON_INVAL;
    if (inval) {
      ++c.msr_exits_inval;
    } else {
      ++c.msr_exits_filter;
    }
    // INVAL: KVM does not know the MSR either, so #GP as without user-space MSRs. FILTER: routed
    // to apicv on purpose, so an MSR apicv does not serve reads 0.
    const platform::MsrMiss miss = inval ? platform::MsrMiss::kGp : platform::MsrMiss::kReadZero;
    bool ok;
    if (run->exit_reason == KVM_EXIT_X86_RDMSR) {
      uint64_t value = 0;
      ok = bus_.Rdmsr(v, run->msr.index, &value, miss);
      if (ok) run->msr.data = value;
    } else {
      ok = bus_.Wrmsr(v, run->msr.index, run->msr.data, miss);
    }
    run->msr.error = ok ? 0 : 1;
  }

  const RunOptions& opt_;
  KvmSystem& sys_;
  GuestMemory& mem_;
  const Clock& clock_;
  virt::IrqChip* chip_;
  KvmVm* vm_ = nullptr;  // set while Boot() runs vCPUs
  platform::Machine bus_;

  std::shared_mutex kick_mu_;  // shared: kickers; exclusive: a vCPU detaching its kvm_run
  std::vector<VcpuKick> kicks_;
  std::atomic<uint64_t> kick_count_{0};
  std::atomic<uint64_t> kick_signal_count_{0};

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<int> stop_{0};
  int exit_code_ = 0;
  std::string error_;
  RunCounters counters_;
  uint64_t tsc_khz_ = 0;
  bool cpuid_warned_ = false;
};

}  // namespace

RunResult RunGuest(const RunOptions& opt) {
  if (opt.smp < 1 || opt.smp > platform::kMaxKvmVcpus) {
    throw std::runtime_error("-smp must be 1.." + std::to_string(platform::kMaxKvmVcpus) +
                             " under -accel kvm");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(opt.timeout_s));
  GuestMemory mem(opt.mem_size);
  // The image is the user's input: loaded once before /dev/kvm is opened, so a bad -kernel is
  // reported as such rather than as a missing accelerator. Every boot below loads it again.
  try {
    (void)platform::LoadKernel(opt, mem);
  } catch (const std::runtime_error& e) {
    throw InvalidBootImage(e.what());
  }
  KvmSystem sys;
  VcpuKick::InstallSignalHandler();
  MonotonicClock clock;
  std::unique_ptr<virt::IrqChip> chip;
  if (opt.irqchip == IrqchipMode::kApicv) {
    virt::VmConfig cfg = opt.vm_config;
    cfg.nr_vcpus = opt.smp;
    if (opt.irqchip_factory) {
      chip = opt.irqchip_factory(cfg, clock, nullptr);
    } else {
      chip = virt::CreateApicvIrqChip(cfg, clock, opt.trace);
    }
  }
  KvmMachine m(opt, sys, mem, clock, chip.get());
  if (chip) chip->set_kick([&m](int v) { m.Kick(v); });

  RunResult res;
  for (;;) {
    // RAM survives a reset, as on a PC (and in QEMU); only the kernel image is reloaded.
    const BootImage boot = platform::LoadKernel(opt, mem);
    const StopKind kind = m.Boot(boot, deadline);
    if (!platform::EndOfBoot(kind, m.exit_code(), m.error(), opt, &res)) break;
    m.ResetDevices();
    if (chip) chip->reset();
  }
  if (chip) chip->set_kick([](int) {});
  res.samples = m.TakeSamples();
  res.tsc_khz = m.tsc_khz();
  res.counters = m.Counters();
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace apicv::kvm
