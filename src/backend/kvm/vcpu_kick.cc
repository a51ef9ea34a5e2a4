// vCPU kick protocol; see vcpu_kick.h and docs/kick-protocol.md.
#include "backend/kvm/vcpu_kick.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <mutex>

namespace apicv::kvm {

namespace {
void EmptyHandler(int) {}
std::once_flag g_installed;
}  // namespace

int VcpuKick::Signal() {
  return SIGUSR2;
}

void VcpuKick::InstallSignalHandler() {
  std::call_once(g_installed, [] {
    struct sigaction sa {};
    sa.sa_handler = EmptyHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(Signal(), &sa, nullptr);
  });
}

void VcpuKick::Attach(pthread_t thread, uint8_t* immediate_exit) {
  thread_ = thread;
  immediate_exit_.store(immediate_exit, std::memory_order_seq_cst);
  attached_.store(true, std::memory_order_seq_cst);
}

void VcpuKick::Detach() {
  attached_.store(false, std::memory_order_seq_cst);
  immediate_exit_.store(nullptr, std::memory_order_seq_cst);
  in_run_.store(0, std::memory_order_seq_cst);
}

uint32_t VcpuKick::BeginCheck() {
  const uint32_t seq = wake_seq_.load(std::memory_order_seq_cst);
  if (uint8_t* ie = immediate_exit_.load(std::memory_order_seq_cst)) {
    std::atomic_ref<uint8_t>(*ie).store(0, std::memory_order_seq_cst);
  }
  return seq;
}

void VcpuKick::Wait(uint32_t seq, uint64_t timeout_ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000ull);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000ull);
  // Returns at once (EAGAIN) if wake_seq already moved: that is the no-lost-wake-up guarantee.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wake_seq_), FUTEX_WAIT_PRIVATE, seq, &ts, nullptr,
          0);
}

bool VcpuKick::Kick() {
  wake_seq_.fetch_add(1, std::memory_order_seq_cst);
  bool signaled = false;
  if (uint8_t* ie = immediate_exit_.load(std::memory_order_seq_cst)) {
    std::atomic_ref<uint8_t>(*ie).store(1, std::memory_order_seq_cst);
    if (in_run_.load(std::memory_order_seq_cst) && attached_.load(std::memory_order_seq_cst)) {
      pthread_kill(thread_, Signal());
      signaled = true;
    }
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wake_seq_), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
  return signaled;
}

}  // namespace apicv::kvm
