// Kicking a vCPU thread out of KVM_RUN or out of a halt wait without lost wake-ups
// (docs/kick-protocol.md has the protocol and its proof sketch). The kicker: (1) bumps wake_seq,
// (2) stores immediate_exit = 1, (3) if the thread is inside KVM_RUN (in_run), sends it the kick
// signal, whose empty handler is installed without SA_RESTART so KVM_RUN returns EINTR, (4) wakes
// the futex on wake_seq. The vCPU thread reads wake_seq and clears immediate_exit *before* it looks
// for events, so any event posted before a kick is either seen by that look or makes the next
// KVM_RUN / futex wait return at once. All orderings are sequentially consistent.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace apicv::kvm {

class VcpuKick {
 public:
  // Installs the process-wide empty signal handler (idempotent).
  static void InstallSignalHandler();
  static int Signal();

  // vCPU thread side.
  void Attach(pthread_t thread, uint8_t* immediate_exit);
  void Detach();
  uint32_t BeginCheck();  // returns the wake_seq to wait on; clears immediate_exit
  void EnterRun() { in_run_.store(1, std::memory_order_seq_cst); }
  void LeaveRun() { in_run_.store(0, std::memory_order_seq_cst); }
  // Waits until wake_seq != seq or timeout_ns elapses (spurious returns allowed).
  void Wait(uint32_t seq, uint64_t timeout_ns);

  // Any thread. Returns true when a signal was sent.
  bool Kick();

 private:
  std::atomic<uint32_t> wake_seq_{0};
  std::atomic<int> in_run_{0};
  std::atomic<uint8_t*> immediate_exit_{nullptr};
  std::atomic<bool> attached_{false};
  pthread_t thread_{};
};

}  // namespace apicv::kvm
