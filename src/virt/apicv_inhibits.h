// The APICv/AVIC inhibit manager: KVM's x86.c state and functions kvm_apicv_init(),
// kvm_set_or_clear_apicv_inhibit(), __kvm_set_or_clear_apicv_inhibit(),
// kvm_inc_or_dec_irq_window_inhibit(), kvm_vcpu_apicv_activated() and __kvm_vcpu_update_apicv().
// Spec §2 and §3.3; AMD APM vol. 2 §15.29 (AVIC), Intel SDM vol. 3C ch. 30 (APICv).
//
// Concurrency: `apicv_update_lock` is a real reader-writer lock. Writers change the VM mask;
// readers are vCPUs applying APICV_UPDATE and the counted IRQ-window fast path. The VM mask is an
// atomic read without the lock on hot paths (READ_ONCE). When "inhibited at all" flips, every vCPU
// gets APICV_UPDATE with kick-and-wait *before* the new mask is published
// (kvm_make_all_cpus_request under the write lock), so no vCPU can apply a stale mask: it blocks on
// the read side until the writer is done. Lock order: docs/locking.md.
//
// Not supported: zapping the APIC-access SPTEs when becoming inhibited (apicv has no MMU; the
// AVIC/APICv model reads the mask instead), kvm_inhibit_apic_access_page() for x2APIC without
// x2AVIC, vendor refresh_apicv_exec_ctrl() (the caller applies activation to its model).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "virt/inhibit_reason.h"
#include "virt/vcpu_request.h"

namespace apicv::trace {
class TraceSink;
}

namespace apicv::virt {

// Event counts, sharded per thread so counting does not add a contended cache line.
struct ApicvInhibitStats {
  uint64_t write_locks = 0;      // apicv_update_lock taken for write
  uint64_t read_locks = 0;       // apicv_update_lock taken for read
  uint64_t broadcasts = 0;       // kvm_make_all_cpus_request(APICV_UPDATE)
  uint64_t kicks = 0;            // vCPUs kicked by those broadcasts (and any other kick)
  uint64_t trace_calls = 0;      // kvm_apicv_inhibit_changed events (whether or not traced)
  uint64_t write_contended = 0;  // write acquisitions that had to wait (lock_stat's contentions)
  uint64_t read_contended = 0;   // read acquisitions that had to wait
  uint64_t lock_wait_ns = 0;     // total time spent waiting for apicv_update_lock, both modes
};

class ApicvInhibits {
 public:
  struct Options {
    Vendor vendor = Vendor::kSvm;
    // true: the 2026 code (spec §3.3) where every update re-derives IRQWIN from
    // apicv_nr_irq_window_req; false: the 2025 code where IRQWIN is an ordinary reason.
    bool irqwin_counted = true;
  };

  // `vcpus` and `trace` (may be null) must outlive this object.
  ApicvInhibits(const Options& options, VcpuRequestSet& vcpus, trace::TraceSink* trace);
  ApicvInhibits(const ApicvInhibits&) = delete;
  ApicvInhibits& operator=(const ApicvInhibits&) = delete;

  // kvm_apicv_init(): mask = BIT(ABSENT) or BIT(DISABLED), one trace line. Also what
  // kvm_create_lapic() does per vCPU: apicv_active = enable_apicv plus an APICV_UPDATE request.
  // Call once, before vCPUs run.
  void init(bool enable_apicv);
  bool enable_apicv() const { return enable_apicv_; }
  Vendor vendor() const { return options_.vendor; }

  // kvm_set_or_clear_apicv_inhibit(). Reasons outside the vendor mask are ignored without a
  // trace. NESTED is per vCPU: use set_vcpu_guest_mode().
  void set_or_clear(InhibitReason reason, bool set);
  void set(InhibitReason reason) { set_or_clear(reason, true); }
  void clear(InhibitReason reason) { set_or_clear(reason, false); }

  // kvm_inc_or_dec_irq_window_inhibit() (spec §3.3).
  void inc_or_dec_irq_window_req(bool inc);
  int nr_irq_window_req() const {
    return lock_block_.nr_irq_window_req.load(std::memory_order_relaxed);
  }

  // READ_ONCE(kvm->arch.apicv_inhibit_reasons).
  unsigned long reasons() const { return reasons_.load(std::memory_order_acquire); }
  // kvm_apicv_activated().
  bool apicv_activated() const { return reasons() == 0; }
  // kvm_vcpu_apicv_activated(): VM mask plus the vendor's per-vCPU reasons (SVM: NESTED while the
  // vCPU runs L2).
  bool vcpu_apicv_activated(int vcpu) const;

  // is_guest_mode() for the per-vCPU NESTED reason; the vCPU's own thread sets it.
  void set_vcpu_guest_mode(int vcpu, bool l2);
  bool vcpu_guest_mode(int vcpu) const;

  // __kvm_vcpu_update_apicv() under the read lock: activate = vcpu_apicv_activated(vcpu) &&
  // apic_enabled. Returns true when apicv_active changed; the caller then does
  // kvm_apic_update_apicv() and, when it became inactive, KVM_REQ_EVENT.
  bool update_vcpu_apicv(int vcpu, bool apic_enabled);
  // apic->apicv_active.
  bool vcpu_apicv_active(int vcpu) const;

  ApicvInhibitStats stats() const;
  VcpuRequestSet& vcpus() { return vcpus_; }

 private:
  void set_or_clear_locked(InhibitReason reason, bool set);  // __kvm_set_or_clear_apicv_inhibit
  void set_or_clear_bit(unsigned long& mask, unsigned reason, bool set);  // + trace
  void count(int which, uint64_t n = 1);
  std::unique_lock<std::shared_mutex> write_lock();  // counted, contention timed
  std::shared_lock<std::shared_mutex> read_lock();

  struct PerVcpu {
    std::atomic<bool> apicv_active{false};
    std::atomic<bool> guest_mode{false};
  };

  const Options options_;
  VcpuRequestSet& vcpus_;
  trace::TraceSink* trace_;
  bool enable_apicv_ = true;
  std::unique_ptr<PerVcpu[]> per_vcpu_;

  // KVM 4/4: the lock and the counter share one cache line; the mask starts the next one, so
  // lock traffic does not invalidate the lockless readers of the mask.
  struct alignas(64) LockBlock {
    mutable std::shared_mutex apicv_update_lock;
    std::atomic<int> nr_irq_window_req{0};
  } lock_block_;
  alignas(64) std::atomic<unsigned long> reasons_{0};

  static constexpr int kStatShards = 64;
  struct alignas(64) StatShard {
    std::atomic<uint64_t> v[6] = {};  // see StatIndex in apicv_inhibits.cc
  };
  std::unique_ptr<StatShard[]> stats_;
};

}  // namespace apicv::virt
