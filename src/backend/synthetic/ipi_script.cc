// Scripted IPI guests over ApicvVm; see ipi_script.h.
#include "backend/synthetic/ipi_script.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "trace/trace_sink.h"
#include "x86/apic_defs.h"

namespace apicv::synthetic {
namespace {

constexpr uint64_t kApicMmioBase = 0xFEE00000ull;
constexpr uint64_t kApicBaseExtd = 1ull << 10;  // IA32_APIC_BASE.EXTD (x2APIC mode)
constexpr uint32_t kSpivEnable = 0x1FF;         // software enable, spurious vector 0xFF
constexpr uint32_t kIcrDestLogical = 1u << 11;
constexpr uint32_t kIcrLevelAssert = 1u << 14;
constexpr uint32_t kIcrAllButSelf = 3u << 18;
constexpr uint64_t kTscKhz = 1000000;  // fixed: no timer is armed, and calibration costs 20 ms
// A blocked halt re-checks at least this often (bounded waits; a check that then finds events
// the kick never announced is a lost wake-up).
constexpr auto kHaltWait = std::chrono::milliseconds(2);

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

virt::VmConfig MakeVmConfig(const IpiScriptConfig& c) {
  virt::VmConfig v;
  v.nr_vcpus = c.nr_vcpus;
  v.vendor = c.vendor;
  v.enable_apicv = c.enable_apicv;
  v.irqwin = c.irqwin;
  v.placement = c.placement;
  v.pit_policy = c.pit_policy;
  v.avic_kick = c.avic_kick;
  v.esr_sdm_mode = c.esr_sdm_mode;
  v.tsc_khz = kTscKhz;
  return v;
}

const IpiScriptConfig& CheckedConfig(const IpiScriptConfig& c) {
  const int max = c.x2apic ? 1024 : 255;
  if (c.nr_vcpus < 1 || c.nr_vcpus > max)
    throw std::invalid_argument("ipi script: unsupported vCPU count " + std::to_string(c.nr_vcpus) +
                                " (1.." + std::to_string(max) + ")");
  return c;
}

std::vector<IpiVcpuScript> PaddedScripts(std::vector<IpiVcpuScript> s, int n) {
  if (s.size() > static_cast<size_t>(n))
    throw std::invalid_argument("ipi script: more scripts than vCPUs");
  s.resize(static_cast<size_t>(n));
  return s;
}

void Check(virt::AccessResult r, const char* what) {
  if (r != virt::AccessResult::kHandled)
    throw std::runtime_error(std::string("ipi script: the model refused ") + what);
}

}  // namespace

uint64_t IpiRunResult::total_sent() const {
  uint64_t n = 0;
  for (const auto& f : flows) n += f.sent;
  return n;
}
uint64_t IpiRunResult::total_received() const {
  uint64_t n = 0;
  for (const auto& f : flows) n += f.received;
  return n;
}
uint64_t IpiRunResult::total_coalesced() const {
  uint64_t n = 0;
  for (const auto& f : flows) n += f.vector >= 16 ? f.coalesced() : 0;
  return n;
}

IpiScriptVm::IpiScriptVm(const IpiScriptConfig& config, std::vector<IpiVcpuScript> scripts,
                         const Clock& clock, trace::TraceSink* trace)
    : config_(CheckedConfig(config)),
      scripts_(PaddedScripts(std::move(scripts), config.nr_vcpus)),
      trace_(trace),
      vcpus_(std::make_unique<Vcpu[]>(static_cast<size_t>(config.nr_vcpus))) {
  validate();
  const int n = config_.nr_vcpus;
  targets_.resize(static_cast<size_t>(n));
  int senders = 0;
  for (int v = 0; v < n; ++v) {
    const auto& script = scripts_[static_cast<size_t>(v)];
    Vcpu& c = vcpus_[v];
    c.streams.resize(script.streams.size());
    for (size_t i = 0; i < script.streams.size(); ++i)
      c.streams[i].next_due = script.streams[i].start;
    for (const auto& s : script.streams)
      targets_[static_cast<size_t>(v)].push_back(stream_targets(v, s));
    c.streams_done = true;
    for (const auto& s : script.streams) c.streams_done &= s.count == 0;
    if (!c.streams_done) ++senders;
  }
  senders_left_.store(senders);
  // VM creation runs on the VMM's main thread (its pid precedes the vCPU threads').
  trace::TaskContext vmm;
  vmm.comm = "qemu-system-x86";
  vmm.pid = config_.base_pid - 1;
  trace::set_current_task(vmm);
  vm_ = std::make_unique<virt::ApicvVm>(MakeVmConfig(config_), clock, trace);
  vm_->set_device_trace(config_.device_trace);
  vm_->set_kick([this](int v) {
    if (v >= 0 && v < config_.nr_vcpus) kick(v, /*from_model=*/true);
  });
  // The guests' APIC setup, before any of them sends: these are exits too, but not the
  // scripted part.
  for (int v = 0; v < n; ++v) setup_vcpu(v);
}

IpiScriptVm::~IpiScriptVm() {
  if (vm_) vm_->set_kick([](int) {});
}

void IpiScriptVm::validate() const {
  const int n = config_.nr_vcpus;
  std::set<std::pair<int, int>> exclusive;  // (target, vector) owned by a credited stream
  std::set<std::pair<int, int>> used;
  for (int v = 0; v < n; ++v) {
    for (const auto& s : scripts_[static_cast<size_t>(v)].streams) {
      const std::string who = "ipi script: vCPU " + std::to_string(v) + ": ";
      if (s.count > kMaxIpisPerStream) throw std::invalid_argument(who + "count too large");
      if (s.every == 0) throw std::invalid_argument(who + "every must be >= 1");
      if (s.max_in_flight > 0 && s.vector < 16)
        throw std::invalid_argument(who +
                                    "a credited stream needs a vector >= 16 (0-15 are "
                                    "never delivered)");
      for (int t : s.targets)
        if (t < 0 || t >= n) throw std::invalid_argument(who + "target out of range");
      if (std::set<int>(s.targets.begin(), s.targets.end()).size() != s.targets.size())
        throw std::invalid_argument(who + "duplicate target");
      switch (s.dest) {
        case IpiDest::kPhysical:
          if (s.targets.size() != 1)
            throw std::invalid_argument(who + "a physical stream has exactly one target");
          break;
        case IpiDest::kAllButSelf:
          if (!s.targets.empty())
            throw std::invalid_argument(who + "an all-but-self stream takes no targets");
          break;
        case IpiDest::kLogical:
          if (s.targets.empty())
            throw std::invalid_argument(who + "a logical stream needs targets");
          for (int t : s.targets) {
            if (!config_.x2apic && t >= 8)
              throw std::invalid_argument(who +
                                          "unsupported xAPIC logical target >= 8 (flat model)");
            if (config_.x2apic && (t >> 4) != (s.targets[0] >> 4))
              throw std::invalid_argument(who + "x2APIC logical targets must share a cluster");
          }
          break;
      }
      std::vector<int> ts = stream_targets(v, s);
      for (int t : ts) {
        const auto key = std::make_pair(t, static_cast<int>(s.vector));
        if (exclusive.count(key) || (s.max_in_flight > 0 && used.count(key)))
          throw std::invalid_argument(who +
                                      "a credited stream must own its (target, vector) pairs");
        used.insert(key);
        if (s.max_in_flight > 0) exclusive.insert(key);
      }
    }
  }
}

std::vector<int> IpiScriptVm::stream_targets(int v, const IpiStream& s) const {
  if (s.dest != IpiDest::kAllButSelf) return s.targets;
  std::vector<int> out;
  for (int t = 0; t < config_.nr_vcpus; ++t)
    if (t != v) out.push_back(t);
  return out;
}

void IpiScriptVm::set_task(int v) const {
  const trace::TaskContext& cur = trace::current_task();
  if (cur.pid == config_.base_pid + v && cur.cpu == v) return;
  trace::TaskContext t;
  t.comm = "CPU " + std::to_string(v) + "/KVM";
  t.pid = config_.base_pid + v;
  t.cpu = v;
  trace::set_current_task(t);
}

void IpiScriptVm::setup_vcpu(int v) {
  set_task(v);
  virt::ApicvVm& vm = *vm_;
  if (config_.x2apic) {
    uint64_t base = 0;
    Check(vm.rdmsr(v, x86::kMsrApicBase, &base), "RDMSR IA32_APIC_BASE");
    Check(vm.wrmsr(v, x86::kMsrApicBase, base | kApicBaseExtd), "x2APIC enable");
    Check(vm.wrmsr(v, x86::X2ApicMsrFromOffset(x86::kApicSpiv), kSpivEnable), "SPIV write");
  } else {
    const uint32_t spiv = kSpivEnable;
    Check(vm.mmio_write(v, kApicMmioBase + x86::kApicSpiv, &spiv, 4), "SPIV write");
    if (v < 8) {
      const uint32_t ldr = 1u << (24 + v);  // flat model (DFR keeps its reset value)
      Check(vm.mmio_write(v, kApicMmioBase + x86::kApicLdr, &ldr, 4), "LDR write");
    }
  }
}

void IpiScriptVm::kick(int v, bool from_model) {
  Vcpu& c = vcpus_[v];
  if (from_model) c.kicks.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> g(c.mu);
    c.kick_seq.fetch_add(1, std::memory_order_acq_rel);
  }
  c.cv.notify_one();
}

void IpiScriptVm::step(int v, bool threaded) {
  switch (vcpus_[v].phase) {
    case Phase::kEnter:
      phase_enter(v);
      return;
    case Phase::kRun:
      phase_run(v, threaded);
      return;
    case Phase::kHalt:
      phase_halt(v, threaded);
      return;
    case Phase::kDone:
      return;
  }
}

// The top of the backend's loop up to KVM_RUN: timers, kvm_check_and_inject_events(), entry.
void IpiScriptVm::phase_enter(int v) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  c.loop_seq = c.kick_seq.load(std::memory_order_acquire);
  vm.run_timers(v);
  // ready_for_interrupt_injection as KVM reported it at the last exit: an IRET / STI executed
  // after that exit has not happened yet.
  const bool ready = c.if_flag;
  c.inj = vm.check_and_inject_events(v, ready, c.if_flag);
  if (c.inj.nmi) ++c.fig.nmis;
  c.took_interrupt = false;
  if (c.inj.vector >= 0 && ready) {
    // KVM_INTERRUPT: the guest takes the vector through an interrupt gate (IF := 0).
    const auto vec = static_cast<uint8_t>(c.inj.vector);
    ++c.fig.received[vec];
    ++c.fig.received_total;
    c.received[vec].fetch_add(1, std::memory_order_acq_rel);
    const uint32_t delay = scripts_[static_cast<size_t>(v)].eoi_delay;
    c.isr.push_back(c.actions + delay);
    // A handler that does work before its EOI re-enables interrupts first.
    c.if_flag = delay > 0;
    c.took_interrupt = true;
  }
  if (c.inj.request_window) ++c.fig.window_requests;
  (void)vm.get_cr8(v);
  vm.vcpu_enter(v);
  ++c.fig.entries;
  c.phase = Phase::kRun;
}

// KVM_RUN returns: the guest ran until its next exiting instruction (or a kick), then the exit is
// handled as run_guest.cc does.
void IpiScriptVm::phase_run(int v, bool threaded) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  const IpiVcpuScript& script = scripts_[static_cast<size_t>(v)];
  if (threaded) {
    for (uint32_t i = 0;
         i < script.guest_spin && c.kick_seq.load(std::memory_order_acquire) == c.loop_seq; ++i)
      __builtin_ia32_pause();
  }
  if (c.kick_seq.load(std::memory_order_acquire) != c.loop_seq) {
    // Kicked since the top of the loop: immediate_exit / the signal, KVM_RUN returns EINTR.
    vm.vcpu_exit(v);
    ++c.fig.kick_exits;
    c.phase = Phase::kEnter;
    return;
  }
  if (c.sti_next) {
    c.if_flag = true;
    c.sti_next = false;
  }
  c.phase = Phase::kEnter;
  if (c.inj.request_window && c.if_flag) {
    // KVM_EXIT_IRQ_WINDOW_OPEN at the first interruptible instruction.
    vm.vcpu_exit(v);
    vm.set_cr8(v, 0);
    vm.interrupt_window_exit(v);
    ++c.fig.window_exits;
    if (attribute_) ++c.fig.exits;
    return;
  }
  size_t s = 0;
  bool starved = false;
  const Action a = choose_action(c, &s, &starved);
  if (a == Action::kWork) {
    // Guest work that does not exit: the vCPU stays in guest mode for this turn.
    ++c.fig.work;
    if (starved) ++c.fig.credit_waits;
    ++c.actions;
    c.phase = Phase::kRun;
    if (threaded) std::this_thread::yield();
    return;
  }
  vm.vcpu_exit(v);
  vm.set_cr8(v, 0);
  switch (a) {
    case Action::kEoi:
      write_eoi(v);
      c.isr.pop_back();
      if (script.eoi_delay == 0) c.sti_next = true;  // the handler's IRET
      break;
    case Action::kIcr: {
      const bool cli = script.cli_every != 0 && (c.icr_writes + 1) % script.cli_every == 0;
      if (cli) c.if_flag = false;
      write_icr(v, s);
      if (cli) c.sti_next = true;
      break;
    }
    case Action::kWork:
      break;
    case Action::kHlt:
      vm.instruction_emulated(v);
      ++c.fig.halts;
      if (attribute_) ++c.fig.exits;
      // `sti; hlt` with a window requested: the backend takes it as the window exit.
      if (c.inj.request_window && c.if_flag) {
        vm.interrupt_window_exit(v);
        ++c.fig.window_exits;
      }
      c.halt_blocked = false;
      c.phase = Phase::kHalt;
      return;
  }
  ++c.actions;
}

IpiScriptVm::Action IpiScriptVm::choose_action(Vcpu& c, size_t* stream, bool* starved) {
  const int v = static_cast<int>(&c - vcpus_.get());
  const auto& streams = scripts_[static_cast<size_t>(v)].streams;
  if (!c.isr.empty() && c.isr.back() <= c.actions) return Action::kEoi;
  bool remaining = !c.isr.empty();
  for (size_t s = 0; s < streams.size(); ++s) {
    const StreamState& st = c.streams[s];
    if (st.sent >= streams[s].count) continue;
    remaining = true;
    if (c.actions < st.next_due) continue;
    if (has_credit(c, v, s)) {
      *stream = s;
      return Action::kIcr;
    }
    *starved = true;
  }
  return remaining ? Action::kWork : Action::kHlt;
}

bool IpiScriptVm::has_credit(const Vcpu& c, int v, size_t s) const {
  const IpiStream& stream = scripts_[static_cast<size_t>(v)].streams[s];
  if (stream.max_in_flight == 0) return true;
  const uint64_t sent = c.streams[s].sent;
  for (int t : targets_[static_cast<size_t>(v)][s]) {
    const uint64_t got = vcpus_[t].received[stream.vector].load(std::memory_order_acquire);
    if (sent - std::min(sent, got) >= stream.max_in_flight) return false;
  }
  return true;
}

void IpiScriptVm::write_icr(int v, size_t s) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  const IpiStream& stream = scripts_[static_cast<size_t>(v)].streams[s];
  const std::vector<int>& targets = targets_[static_cast<size_t>(v)][s];
  // Counted before the write so no target ever shows more taken than sent.
  for (int t : targets) {
    vcpus_[t].sent_to[stream.vector].fetch_add(1, std::memory_order_acq_rel);
    if (stream.vector >= 16 && t != v)
      vcpus_[t].deliveries_started.fetch_add(1, std::memory_order_seq_cst);
  }
  ++c.fig.ipis_sent;
  c.fig.ipi_messages += targets.size();
  ++c.icr_writes;
  StreamState& st = c.streams[s];
  ++st.sent;
  st.next_due = c.actions + stream.every;

  uint32_t icrl = stream.vector | kIcrLevelAssert;
  uint32_t dest = 0;
  switch (stream.dest) {
    case IpiDest::kPhysical:
      dest = static_cast<uint32_t>(stream.targets[0]);
      break;
    case IpiDest::kAllButSelf:
      icrl |= kIcrAllButSelf;
      break;
    case IpiDest::kLogical:
      icrl |= kIcrDestLogical;
      for (int t : stream.targets) dest |= config_.x2apic ? 1u << (t & 15) : 1u << t;
      // x2APIC logical ID (SDM 11.12.10.2): cluster in 31:16, one bit per member in 15:0.
      if (config_.x2apic) dest |= static_cast<uint32_t>(stream.targets[0] >> 4) << 16;
      break;
  }
  virt::VmStats before;
  if (attribute_) before = vm.stats();
  if (config_.x2apic) {
    Check(vm.wrmsr(v, x86::X2ApicMsrFromOffset(x86::kApicIcr),
                   static_cast<uint64_t>(dest) << 32 | icrl),
          "ICR write");
  } else {
    const uint32_t hi = dest << 24;
    Check(vm.mmio_write(v, kApicMmioBase + x86::kApicIcr2, &hi, 4), "ICR2 write");
    Check(vm.mmio_write(v, kApicMmioBase + x86::kApicIcr, &icrl, 4), "ICR write");
  }
  if (stream.vector >= 16)
    for (int t : targets)
      if (t != v) vcpus_[t].deliveries_done.fetch_add(1, std::memory_order_seq_cst);
  vm.instruction_emulated(v);
  if (attribute_) {
    const virt::VmStats after = vm.stats();
    const uint64_t incomplete = after.avic_incomplete_ipi - before.avic_incomplete_ipi;
    for (size_t i = 0; i < c.fig.incomplete_ipi_by_cause.size(); ++i)
      c.fig.incomplete_ipi_by_cause[i] +=
          after.avic_incomplete_ipi_by_cause[i] - before.avic_incomplete_ipi_by_cause[i];
    c.fig.incomplete_ipi += incomplete;
    if (after.avic_accelerated_ipis != before.avic_accelerated_ipis && incomplete == 0) {
      ++c.fig.accelerated_icr_writes;
    } else {
      ++c.fig.exits;
    }
  }

  if (!c.streams_done) {
    bool done = true;
    const auto& streams = scripts_[static_cast<size_t>(v)].streams;
    for (size_t i = 0; i < streams.size(); ++i) done &= c.streams[i].sent >= streams[i].count;
    if (done) {
      c.streams_done = true;
      // The last sender done: halted vCPUs re-check whether they may finish.
      if (senders_left_.fetch_sub(1, std::memory_order_acq_rel) == 1)
        for (int t = 0; t < config_.nr_vcpus; ++t) kick(t, /*from_model=*/false);
    }
  }
}

void IpiScriptVm::write_eoi(int v) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  virt::VmStats before;
  if (attribute_) before = vm.stats();
  if (config_.x2apic) {
    Check(vm.wrmsr(v, x86::X2ApicMsrFromOffset(x86::kApicEoi), 0), "EOI write");
  } else {
    const uint32_t zero = 0;
    Check(vm.mmio_write(v, kApicMmioBase + x86::kApicEoi, &zero, 4), "EOI write");
  }
  vm.instruction_emulated(v);
  ++c.fig.eois;
  if (attribute_) {
    if (vm.stats().eois_accelerated != before.eois_accelerated) {
      ++c.fig.accelerated_eois;
    } else {
      ++c.fig.exits;
    }
  }
}

// The backend's Halt(): has_events() marks the vCPU blocked and clears IsRunning before its last
// look; a kick (any sequence change since the look) ends the wait.
void IpiScriptVm::phase_halt(int v, bool threaded) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  for (;;) {
    if (stop_.load(std::memory_order_acquire)) return;
    // Both snapshots before has_events(): a delivery started after them either posted before
    // the vCPU marked itself blocked (has_events() sees it: no wait) or finds it blocked, and
    // then it or an earlier in-flight delivery kicks it.
    const uint64_t started = c.deliveries_started.load(std::memory_order_seq_cst);
    const uint32_t seq = c.kick_seq.load(std::memory_order_seq_cst);
    if (vm.next_deadline_ns(v) != UINT64_MAX) vm.run_timers(v);
    const uint64_t kicks = c.kicks.load(std::memory_order_seq_cst);
    if (vm.has_events(v, /*if_set=*/true)) {
      if (c.halt_blocked) ++c.fig.wakeups;
      // Single-threaded, nothing is in flight: an event that arrived while blocked without any
      // kick from the model was never announced (the scheduler's poll or the end-of-run
      // notification found it).
      if (!threaded && c.halt_blocked && kicks == c.halt_kicks) ++c.fig.lost_wakeups;
      c.phase = Phase::kEnter;
      return;
    }
    if (c.streams_done && c.isr.empty() && senders_left_.load(std::memory_order_acquire) == 0) {
      finish_vcpu(v);
      return;
    }
    c.halt_blocked = true;
    c.halt_seq = seq;
    c.halt_kicks = kicks;
    if (!threaded) return;  // the scheduler skips this vCPU until its kick sequence moves
    {
      std::unique_lock<std::mutex> lk(c.mu);
      c.cv.wait_for(lk, kHaltWait, [&] {
        return c.kick_seq.load(std::memory_order_acquire) != seq ||
               stop_.load(std::memory_order_acquire);
      });
    }
    // Only when no delivery to this vCPU is in flight: a posted interrupt that finds ON set (or
    // a kick that finds the vCPU already exiting) relies on the earlier sender's notification,
    // which may still be on its way. done == started read in that order means quiescent at the
    // first read, so every kick of a completed delivery is visible to the kick_seq read below.
    const uint64_t done_now = c.deliveries_done.load(std::memory_order_seq_cst);
    if (done_now > started && done_now == c.deliveries_started.load(std::memory_order_seq_cst) &&
        c.kick_seq.load(std::memory_order_seq_cst) == seq)
      ++c.fig.lost_wakeups;
  }
}

void IpiScriptVm::finish_vcpu(int v) {
  Vcpu& c = vcpus_[v];
  virt::ApicvVm& vm = *vm_;
  // SDM 11.5.3: a write to ESR latches the errors seen since the last write; then read it.
  if (config_.x2apic) {
    const uint32_t esr = x86::X2ApicMsrFromOffset(x86::kApicEsr);
    uint64_t value = 0;
    Check(vm.wrmsr(v, esr, 0), "ESR write");
    Check(vm.rdmsr(v, esr, &value), "ESR read");
    c.fig.esr = static_cast<uint32_t>(value);
  } else {
    uint32_t value = 0;
    Check(vm.mmio_write(v, kApicMmioBase + x86::kApicEsr, &value, 4), "ESR write");
    Check(vm.mmio_read(v, kApicMmioBase + x86::kApicEsr, &value, 4), "ESR read");
    c.fig.esr = value;
  }
  c.phase = Phase::kDone;
}

IpiRunResult IpiScriptVm::run_deterministic(FakeClock* clock, uint64_t step_ns,
                                            uint64_t max_steps) {
  if (ran_) throw std::logic_error("ipi script: a VM runs once");
  ran_ = true;
  attribute_ = true;
  const int n = config_.nr_vcpus;
  uint64_t steps = 0;
  int cur = 0;
  bool completed = false;
  while (steps < max_steps) {
    int pick = -1;
    bool all_done = true;
    for (int k = 0; k < n; ++k) {
      const int v = (cur + k) % n;
      const Vcpu& c = vcpus_[v];
      if (c.phase == Phase::kDone) continue;
      all_done = false;
      const bool waiting = c.phase == Phase::kHalt && c.halt_blocked &&
                           c.kick_seq.load(std::memory_order_relaxed) == c.halt_seq;
      if (!waiting) {
        pick = v;
        break;
      }
    }
    if (all_done) {
      completed = true;
      break;
    }
    if (pick < 0) {
      // Every vCPU waits for a kick (a safety net: senders never halt, and the end-of-run
      // notification reaches the others). Only a lost wake-up can leave one with events now;
      // its next halt check counts it.
      for (int v = 0; v < n; ++v) {
        Vcpu& c = vcpus_[v];
        if (c.phase != Phase::kHalt) continue;
        set_task(v);
        if (vm_->has_events(v, true)) {
          c.halt_seq = c.kick_seq.load(std::memory_order_relaxed) - 1;
          pick = v;
        }
      }
      if (pick < 0) break;  // stuck: reported by collect()
      continue;
    }
    if (clock) clock->advance(step_ns);
    set_task(pick);
    step(pick, /*threaded=*/false);
    ++steps;
    cur = (pick + 1) % n;
  }
  IpiRunResult r = collect(completed);
  r.steps = steps;
  return r;
}

IpiRunResult IpiScriptVm::run_threads(std::chrono::milliseconds timeout) {
  if (ran_) throw std::logic_error("ipi script: a VM runs once");
  ran_ = true;
  const int n = config_.nr_vcpus;
  std::mutex done_mu;
  std::condition_variable done_cv;
  int done = 0;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int v = 0; v < n; ++v) {
    threads.emplace_back([&, v] {
      set_task(v);
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (vcpus_[v].phase != Phase::kDone && !stop_.load(std::memory_order_acquire))
        step(v, /*threaded=*/true);
      std::lock_guard<std::mutex> g(done_mu);
      ++done;
      done_cv.notify_all();
    });
  }
  while (ready.load(std::memory_order_acquire) < n) std::this_thread::yield();
  const uint64_t t0 = NowNs();
  go.store(true, std::memory_order_release);
  bool completed;
  {
    std::unique_lock<std::mutex> lk(done_mu);
    completed = done_cv.wait_for(lk, timeout, [&] { return done == n; });
  }
  if (!completed) {
    stop_.store(true, std::memory_order_release);
    for (int v = 0; v < n; ++v) kick(v, /*from_model=*/false);
  }
  for (auto& t : threads) t.join();
  const uint64_t t1 = NowNs();
  bool all_done = true;
  for (int v = 0; v < n; ++v) all_done &= vcpus_[v].phase == Phase::kDone;
  IpiRunResult r = collect(completed && all_done);
  r.wall_ns = t1 - t0;
  return r;
}

IpiRunResult IpiScriptVm::collect(bool completed) {
  const int n = config_.nr_vcpus;
  IpiRunResult r;
  r.completed = completed;
  r.vm = vm_->stats();
  for (int v = 0; v < n; ++v) {
    Vcpu& c = vcpus_[v];
    c.fig.kicks = c.kicks.load(std::memory_order_relaxed);
    r.vcpus.push_back(c.fig);
  }
  // Pairs whose stream waits for each IPI to be taken before the next: no coalescing possible.
  std::set<std::pair<int, int>> exact;
  for (int v = 0; v < n; ++v) {
    const auto& streams = scripts_[static_cast<size_t>(v)].streams;
    for (size_t s = 0; s < streams.size(); ++s)
      if (streams[s].max_in_flight == 1)
        for (int t : targets_[static_cast<size_t>(v)][s]) exact.insert({t, streams[s].vector});
  }
  auto problem = [&r](std::string what) { r.problems.push_back(std::move(what)); };
  for (int t = 0; t < n; ++t) {
    for (int vec = 0; vec < 256; ++vec) {
      IpiFlow f;
      f.target = t;
      f.vector = static_cast<uint8_t>(vec);
      f.sent = vcpus_[t].sent_to[static_cast<size_t>(vec)].load(std::memory_order_acquire);
      f.received = vcpus_[t].received[static_cast<size_t>(vec)].load(std::memory_order_acquire);
      if (f.sent == 0 && f.received == 0) continue;
      r.flows.push_back(f);
      const std::string name =
          "vCPU " + std::to_string(t) + " vector " + std::to_string(vec) + ": ";
      if (vec < 16) {
        if (f.received != 0) problem(name + "an illegal vector was delivered");
        continue;
      }
      if (f.received > f.sent) problem(name + "took more interrupts than were sent");
      if (f.sent > 0 && f.received == 0) problem(name + "sent but never taken");
      if (exact.count({t, vec}) && f.received != f.sent)
        problem(name + "a credited flow lost " + std::to_string(f.sent - f.received));
    }
  }
  for (int v = 0; v < n; ++v) {
    const std::string name = "vCPU " + std::to_string(v) + ": ";
    if (r.vcpus[static_cast<size_t>(v)].lost_wakeups != 0) problem(name + "lost wake-up");
    if (!completed) continue;
    Lapic& l = vm_->lapic(v);
    if (l.highest_irr() >= 16) problem(name + "IRR not drained");
    if (l.highest_isr() >= 0) problem(name + "ISR not empty");
  }
  if (!completed) problem("the run did not complete (step limit, deadline or stuck)");
  return r;
}

}  // namespace apicv::synthetic
