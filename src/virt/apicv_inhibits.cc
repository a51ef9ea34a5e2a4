// The inhibit manager; see apicv_inhibits.h and spec §2/§3.3.
#include "virt/apicv_inhibits.h"

#include <chrono>
#include <mutex>

#include "trace/kvm_events.h"

namespace apicv::virt {

namespace {

enum StatIndex {
  kWriteLocks = 0,
  kReadLocks,
  kTraceCalls,
  kWriteContended,
  kReadContended,
  kLockWaitNs,
};

uint64_t SteadyNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Each thread counts into its own shard (assigned round-robin on first use).
int ThreadShard() {
  static std::atomic<int> next{0};
  thread_local int shard = next.fetch_add(1, std::memory_order_relaxed);
  return shard;
}

}  // namespace

ApicvInhibits::ApicvInhibits(const Options& options, VcpuRequestSet& vcpus, trace::TraceSink* trace)
    : options_(options),
      vcpus_(vcpus),
      trace_(trace),
      per_vcpu_(std::make_unique<PerVcpu[]>(static_cast<size_t>(vcpus.nr_vcpus()))),
      stats_(std::make_unique<StatShard[]>(kStatShards)) {}

void ApicvInhibits::count(int which, uint64_t n) {
  stats_[ThreadShard() % kStatShards].v[which].fetch_add(n, std::memory_order_relaxed);
}

// Like lock_stat: an uncontended acquisition costs one try_lock and no clock read; only a
// contended one is timed, so the accounting does not change the cost of the fast path.
std::unique_lock<std::shared_mutex> ApicvInhibits::write_lock() {
  std::unique_lock<std::shared_mutex> l(lock_block_.apicv_update_lock, std::try_to_lock);
  if (!l.owns_lock()) {
    const uint64_t t0 = SteadyNs();
    l.lock();
    count(kWriteContended);
    count(kLockWaitNs, SteadyNs() - t0);
  }
  count(kWriteLocks);
  return l;
}

std::shared_lock<std::shared_mutex> ApicvInhibits::read_lock() {
  std::shared_lock<std::shared_mutex> l(lock_block_.apicv_update_lock, std::try_to_lock);
  if (!l.owns_lock()) {
    const uint64_t t0 = SteadyNs();
    l.lock();
    count(kReadContended);
    count(kLockWaitNs, SteadyNs() - t0);
  }
  count(kReadLocks);
  return l;
}

ApicvInhibitStats ApicvInhibits::stats() const {
  ApicvInhibitStats s;
  for (int i = 0; i < kStatShards; ++i) {
    s.write_locks += stats_[i].v[kWriteLocks].load(std::memory_order_relaxed);
    s.read_locks += stats_[i].v[kReadLocks].load(std::memory_order_relaxed);
    s.trace_calls += stats_[i].v[kTraceCalls].load(std::memory_order_relaxed);
    s.write_contended += stats_[i].v[kWriteContended].load(std::memory_order_relaxed);
    s.read_contended += stats_[i].v[kReadContended].load(std::memory_order_relaxed);
    s.lock_wait_ns += stats_[i].v[kLockWaitNs].load(std::memory_order_relaxed);
  }
  s.broadcasts = vcpus_.broadcasts();
  s.kicks = vcpus_.kicks();
  return s;
}

void ApicvInhibits::set_or_clear_bit(unsigned long& mask, unsigned reason, bool set) {
  if (set) {
    mask |= 1ul << reason;
  } else {
    mask &= ~(1ul << reason);
  }
  // KVM traces every call, changed or not.
  count(kTraceCalls);
  trace::trace_kvm_apicv_inhibit_changed(trace_, reason, set, mask);
}

void ApicvInhibits::init(bool enable_apicv) {
  enable_apicv_ = enable_apicv;
  unsigned long mask = 0;
  set_or_clear_bit(
      mask, static_cast<unsigned>(enable_apicv ? InhibitReason::kAbsent : InhibitReason::kDisabled),
      true);
  reasons_.store(mask, std::memory_order_release);
  lock_block_.nr_irq_window_req.store(0, std::memory_order_relaxed);
  for (int i = 0; i < vcpus_.nr_vcpus(); ++i) {
    per_vcpu_[i].apicv_active.store(enable_apicv, std::memory_order_relaxed);
    if (enable_apicv) vcpus_.vcpu(i).make_request(kReqApicvUpdate);
  }
}

void ApicvInhibits::set_or_clear_locked(InhibitReason reason, bool set) {
  if (!(RequiredApicvInhibits(options_.vendor) & InhibitBit(reason))) return;
  // NESTED is a per-vCPU reason; it never enters the VM-wide mask.
  if (reason == InhibitReason::kNested) return;

  const unsigned long old_mask = reasons_.load(std::memory_order_relaxed);
  unsigned long new_mask = old_mask;
  if (options_.irqwin_counted) {
    if (reason != InhibitReason::kIrqWin) {
      set_or_clear_bit(new_mask, static_cast<unsigned>(reason), set);
    }
    // The IRQWIN bit always follows the counter, whatever reason changed.
    set_or_clear_bit(new_mask, static_cast<unsigned>(InhibitReason::kIrqWin),
                     lock_block_.nr_irq_window_req.load(std::memory_order_relaxed) != 0);
  } else {
    set_or_clear_bit(new_mask, static_cast<unsigned>(reason), set);
  }

  if ((old_mask == 0) != (new_mask == 0)) {
    // Kick and wait before publishing: vCPUs then block on the read side until we release the
    // write lock, and see the new mask when they apply APICV_UPDATE.
    vcpus_.make_all_cpus_request(kReqApicvUpdate);
  }
  reasons_.store(new_mask, std::memory_order_release);
}

void ApicvInhibits::set_or_clear(InhibitReason reason, bool set) {
  if (!enable_apicv_) return;
  if (static_cast<unsigned>(reason) >= kNrApicvInhibitReasons) return;
  auto lock = write_lock();
  set_or_clear_locked(reason, set);
}

void ApicvInhibits::inc_or_dec_irq_window_req(bool inc) {
  if (!enable_apicv_) return;
  const int add = inc ? 1 : -1;
  auto& block = lock_block_;
  constexpr unsigned long kOthers = ~InhibitBit(InhibitReason::kIrqWin);
  // Fast path: APICv is inhibited for another reason, so the count cannot change APICv state; the
  // read lock orders us against a writer that re-derives IRQWIN from the count.
  if (reasons() & kOthers) {
    auto rlock = read_lock();
    if (reasons() & kOthers) {
      block.nr_irq_window_req.fetch_add(add, std::memory_order_relaxed);
      return;
    }
  }
  auto wlock = write_lock();
  // 0 -> 1 on inc, 1 -> 0 on dec: only then can the IRQWIN bit change.
  if (block.nr_irq_window_req.fetch_add(add, std::memory_order_relaxed) + add ==
      static_cast<int>(inc)) {
    set_or_clear_locked(InhibitReason::kIrqWin, inc);
  }
}

bool ApicvInhibits::vcpu_apicv_activated(int vcpu) const {
  if (vcpu < 0 || vcpu >= vcpus_.nr_vcpus()) return false;
  unsigned long vcpu_reasons = 0;
  if (options_.vendor == Vendor::kSvm && per_vcpu_[vcpu].guest_mode.load(std::memory_order_relaxed))
    vcpu_reasons = InhibitBit(InhibitReason::kNested);
  return (reasons() | vcpu_reasons) == 0;
}

void ApicvInhibits::set_vcpu_guest_mode(int vcpu, bool l2) {
  if (vcpu < 0 || vcpu >= vcpus_.nr_vcpus()) return;
  per_vcpu_[vcpu].guest_mode.store(l2, std::memory_order_relaxed);
}

bool ApicvInhibits::vcpu_guest_mode(int vcpu) const {
  if (vcpu < 0 || vcpu >= vcpus_.nr_vcpus()) return false;
  return per_vcpu_[vcpu].guest_mode.load(std::memory_order_relaxed);
}

bool ApicvInhibits::update_vcpu_apicv(int vcpu, bool apic_enabled) {
  if (vcpu < 0 || vcpu >= vcpus_.nr_vcpus()) return false;
  auto rlock = read_lock();
  const bool activate = vcpu_apicv_activated(vcpu) && apic_enabled;
  auto& active = per_vcpu_[vcpu].apicv_active;
  if (active.load(std::memory_order_relaxed) == activate) return false;
  active.store(activate, std::memory_order_relaxed);
  return true;
}

bool ApicvInhibits::vcpu_apicv_active(int vcpu) const {
  if (vcpu < 0 || vcpu >= vcpus_.nr_vcpus()) return false;
  return per_vcpu_[vcpu].apicv_active.load(std::memory_order_relaxed);
}

}  // namespace apicv::virt
