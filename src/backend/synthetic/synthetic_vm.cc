// Scripted vCPUs over the virtualization layer; see synthetic_vm.h.
#include "backend/synthetic/synthetic_vm.h"

#include <chrono>
#include <ctime>
#include <stdexcept>
#include <string>
#include <thread>

#include "trace/trace_sink.h"

namespace apicv::synthetic {

namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

virt::ApicvInhibitStats Delta(const virt::ApicvInhibitStats& a, const virt::ApicvInhibitStats& b) {
  virt::ApicvInhibitStats d;
  d.write_locks = b.write_locks - a.write_locks;
  d.read_locks = b.read_locks - a.read_locks;
  d.broadcasts = b.broadcasts - a.broadcasts;
  d.kicks = b.kicks - a.kicks;
  d.trace_calls = b.trace_calls - a.trace_calls;
  d.write_contended = b.write_contended - a.write_contended;
  d.read_contended = b.read_contended - a.read_contended;
  d.lock_wait_ns = b.lock_wait_ns - a.lock_wait_ns;
  return d;
}

virt::ApicvInhibits::Options InhibitOptions(const SyntheticConfig& c) {
  virt::ApicvInhibits::Options o;
  o.vendor = c.vendor;
  o.irqwin_counted = c.irqwin == virt::IrqWinStrategy::kCounted;
  return o;
}

int CheckedVcpus(int n) {
  if (n < 1 || n > 1024) throw std::invalid_argument("synthetic: unsupported vCPU count (1..1024)");
  return n;
}

}  // namespace

SyntheticVm::SyntheticVm(const SyntheticConfig& config, trace::TraceSink* trace)
    : config_(config),
      trace_(trace),
      requests_(CheckedVcpus(config.nr_vcpus)),
      inhibits_(InhibitOptions(config), requests_, trace),
      irq_window_(config.irqwin, inhibits_, trace),
      state_(std::make_unique<VcpuState[]>(static_cast<size_t>(config.nr_vcpus))) {
  // VM creation and irqchip/PIT setup run on the VMM's main thread; ftrace shows it as "<...>"
  // in seed 000 (comm not recorded). Its pid precedes the vCPU threads'.
  trace::TaskContext vmm;
  vmm.pid = config.base_pid - 1;
  trace::set_current_task(vmm);
  inhibits_.init(config.enable_apicv);
  if (config.irqchip) inhibits_.clear(virt::InhibitReason::kAbsent);
  if (config.irqchip && config.pit_reinject) inhibits_.set(virt::InhibitReason::kPitReinj);
}

SyntheticVm::~SyntheticVm() = default;

void SyntheticVm::set_task(int vcpu) const {
  const int pid = config_.base_pid + vcpu;
  const int cpu =
      static_cast<size_t>(vcpu) < config_.host_cpus.size() ? config_.host_cpus[vcpu] : vcpu;
  // Building the comm string costs more than the window path being measured, so the identity is
  // only rebuilt when this thread last traced as someone else.
  const trace::TaskContext& cur = trace::current_task();
  if (cur.pid == pid && cur.cpu == cpu) return;
  trace::TaskContext t;
  t.comm = "CPU " + std::to_string(vcpu) + "/KVM";
  t.pid = pid;
  t.cpu = cpu;
  trace::set_current_task(t);
}

uint64_t SyntheticVm::pending_interrupts(int vcpu) const {
  if (vcpu < 0 || vcpu >= config_.nr_vcpus) return 0;
  return state_[vcpu].pending_shadow.load(std::memory_order_relaxed) ? 1 : 0;
}

// kvm_check_and_inject_events(), interrupt part: inject when the guest can take it; if the
// interrupt is still pending afterwards, open a window.
void SyntheticVm::check_and_inject_events(int vcpu, const VcpuScript& script) {
  VcpuState& s = state_[vcpu];
  if (s.irq_pending && s.ready) {
    s.irq_pending = false;
    s.ready = false;
    s.pending_shadow.store(false, std::memory_order_relaxed);
    const uint64_t t0 = script.time_window_path ? NowNs() : 0;
    irq_window_.inject_irq(vcpu, /*has_more=*/false, script.vector);
    if (script.time_window_path) s.window_path_ns += NowNs() - t0;
  }
  if (s.irq_pending) {
    const uint64_t t0 = script.time_window_path ? NowNs() : 0;
    irq_window_.enable_irq_window(vcpu);
    if (script.time_window_path) s.window_path_ns += NowNs() - t0;
  }
}

void SyntheticVm::step(int vcpu, const VcpuScript& script) {
  if (vcpu < 0 || vcpu >= config_.nr_vcpus) return;
  set_task(vcpu);
  VcpuState& s = state_[vcpu];
  virt::VcpuRequests& req = requests_.vcpu(vcpu);
  ++s.iteration;

  // A device raises an interrupt for this vCPU: KVM_REQ_EVENT (the vCPU is on this thread, so no
  // kick is needed).
  if (script.window_every && !s.irq_pending && s.iteration % script.window_every == 0) {
    s.irq_pending = true;
    s.pending_shadow.store(true, std::memory_order_relaxed);
    req.make_request(virt::kReqEvent);
  }

  // vcpu_enter_guest(): requests first.
  if (req.check_request(virt::kReqApicvUpdate)) {
    if (inhibits_.update_vcpu_apicv(vcpu, /*apic_enabled=*/true) &&
        !inhibits_.vcpu_apicv_active(vcpu)) {
      req.make_request(virt::kReqEvent);
    }
  }
  if (req.check_request(virt::kReqEvent)) check_and_inject_events(vcpu, script);

  req.enter_guest_mode();
  if (req.requests_pending()) {
    // A request arrived after processing: cancel the entry and go round again.
    req.exit_guest_mode();
    return;
  }
  // The guest runs until it is interruptible (window armed), kicked, or its time is up.
  for (uint32_t i = 0; i < script.guest_spin && !req.exit_requested(); ++i) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  const bool window_exit = irq_window_.window_requested(vcpu);
  req.exit_guest_mode();

  if (window_exit) {
    s.ready = true;
    const uint64_t t0 = script.time_window_path ? NowNs() : 0;
    irq_window_.interrupt_window_interception(vcpu);
    if (script.time_window_path) s.window_path_ns += NowNs() - t0;
  }
  if (script.halt_every && s.iteration % script.halt_every == 0 && !s.irq_pending) {
    // HLT with nothing pending: blocked vCPUs are not woken by NO_WAKEUP requests.
    req.set_blocked(true);
    std::this_thread::yield();
    req.set_blocked(false);
  }
}

uint64_t SyntheticVm::take_window_path_ns() {
  uint64_t sum = 0;
  for (int v = 0; v < config_.nr_vcpus; ++v) {
    sum += state_[v].window_path_ns;
    state_[v].window_path_ns = 0;
  }
  return sum;
}

SyntheticRunStats SyntheticVm::run_deterministic(uint64_t seed, uint64_t steps,
                                                 const VcpuScript& script, FakeClock* clock,
                                                 uint64_t step_ns) {
  const auto before = inhibits_.stats();
  const uint64_t win0 = irq_window_.irq_window_exits();
  const uint64_t inj0 = irq_window_.irq_injections();
  uint64_t rng = seed;
  for (uint64_t i = 0; i < steps; ++i) {
    if (clock) clock->advance(step_ns);
    step(static_cast<int>(SplitMix64(rng) % static_cast<uint64_t>(config_.nr_vcpus)), script);
  }
  SyntheticRunStats r;
  r.iterations = steps;
  r.window_path_ns = take_window_path_ns();
  r.windows = irq_window_.irq_window_exits() - win0;
  r.injections = irq_window_.irq_injections() - inj0;
  r.inhibit = Delta(before, inhibits_.stats());
  return r;
}

SyntheticRunStats SyntheticVm::run_threads(uint64_t iterations, const VcpuScript& script) {
  const auto before = inhibits_.stats();
  const uint64_t win0 = irq_window_.irq_window_exits();
  const uint64_t inj0 = irq_window_.irq_injections();
  const int n = config_.nr_vcpus;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<uint64_t> cpu_ns{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int v = 0; v < n; ++v) {
    threads.emplace_back([&, v] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const uint64_t c0 = ThreadCpuNs();
      for (uint64_t i = 0; i < iterations; ++i) step(v, script);
      cpu_ns.fetch_add(ThreadCpuNs() - c0, std::memory_order_relaxed);
    });
  }
  while (ready.load(std::memory_order_acquire) < n) std::this_thread::yield();
  const uint64_t t0 = NowNs();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  const uint64_t t1 = NowNs();

  SyntheticRunStats r;
  r.iterations = iterations * static_cast<uint64_t>(n);
  r.windows = irq_window_.irq_window_exits() - win0;
  r.injections = irq_window_.irq_injections() - inj0;
  r.wall_ns = t1 - t0;
  r.window_path_ns = take_window_path_ns();
  r.cpu_ns = cpu_ns.load(std::memory_order_relaxed);
  r.inhibit = Delta(before, inhibits_.stats());
  return r;
}

}  // namespace apicv::synthetic
