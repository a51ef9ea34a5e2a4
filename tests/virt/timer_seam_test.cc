// The clock seam (virt/timer_service.h): an ApicvVm given a virtual Clock and its own
// TimerService starts no thread, reads time and the guest TSC only from that Clock, reports the
// VM-wide next deadline of every timer it owns, and fires them when service_timers() reaches it.
// Expected deadlines come from the architecture (8254 at 1.193182 MHz, APIC bus cycle 1 ns as
// KVM's, TSC at the FakeClock's 1 GHz), not from the code under test.
#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "devices/clock.h"
#include "virt/apicv_vm.h"
#include "virt/timer_service.h"

namespace apicv::virt {
namespace {

constexpr uint64_t kT0 = 1'000'000'000;  // the FakeClock's start
constexpr uint64_t kPitHz = 1'193'182;   // 8254 input clock
constexpr uint32_t kLvtTimer = 0x832;    // x2APIC MSRs
constexpr uint32_t kTmict = 0x838;
constexpr uint32_t kTdcr = 0x83E;
constexpr uint32_t kTscDeadline = 0x6E0;

int ThreadCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

class TimerSeamTest : public ::testing::Test {
 protected:
  void Make(int nr_vcpus, TimerService* timers) {
    VmConfig cfg;
    cfg.nr_vcpus = nr_vcpus;
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, nullptr, timers);
    kicks_ = std::make_shared<std::vector<std::atomic<int>>>(static_cast<size_t>(nr_vcpus));
    vm_->set_kick([k = kicks_](int v) { (*k)[static_cast<size_t>(v)].fetch_add(1); });
  }
  int Kicks(int v) const { return (*kicks_)[static_cast<size_t>(v)].load(); }
  void EnableX2Apic(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, 0x1FF), AccessResult::kHandled);  // SPIV: software enable
  }
  // One-shot LAPIC timer, divide by 1: fires after `count` bus cycles (1 ns each).
  void ArmLapicTimer(int v, uint8_t vector, uint32_t count) {
    ASSERT_EQ(vm_->wrmsr(v, kTdcr, 0xB), AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, kLvtTimer, vector), AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, kTmict, count), AccessResult::kHandled);
  }
  void Out(uint16_t port, uint8_t v) {
    ASSERT_EQ(vm_->pio_out(0, port, &v, 1), AccessResult::kHandled);
  }
  void IoApicWrite(uint32_t reg, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &reg, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &value, 4), AccessResult::kHandled);
  }
  // PIT channel 0, mode 2 (rate generator), binary, reload `count`.
  void ArmPit(uint16_t count) {
    Out(0x43, 0x34);
    Out(0x40, static_cast<uint8_t>(count));
    Out(0x40, static_cast<uint8_t>(count >> 8));
  }
  // Entry-time processing as a backend does it: fire the vCPU's timers, then ask what to inject.
  int Inject(int v) {
    vm_->run_timers(v);
    return vm_->check_and_inject_events(v, true, true).vector;
  }

  FakeClock clock_{kT0};
  ManualTimerService timers_;
  std::unique_ptr<ApicvVm> vm_;
  std::shared_ptr<std::vector<std::atomic<int>>> kicks_;
};

TEST_F(TimerSeamTest, CallerSuppliedServiceStartsNoThreadDefaultStartsOne) {
  // ThreadSanitizer starts its own background thread lazily, with the first thread the process
  // creates: let that happen before counting, or it shows up as the VM's.
  std::thread([] {}).join();
  const int before = ThreadCount();
  ASSERT_GT(before, 0);
  Make(2, &timers_);
  EXPECT_EQ(ThreadCount(), before);
  vm_.reset();
  // The default (host) service is a thread: the count above can see one.
  Make(2, nullptr);
  EXPECT_EQ(ThreadCount(), before + 1);
  vm_.reset();
  EXPECT_EQ(ThreadCount(), before);
}

TEST_F(TimerSeamTest, NextDeadlineCoversPitAndEveryVcpuLapicTimer) {
  Make(2, &timers_);
  EnableX2Apic(0);
  EnableX2Apic(1);
  EXPECT_EQ(vm_->next_deadline_ns(), UINT64_MAX);

  // PIT: 11932 clocks = 10.000 ms (+ at most one clock for the load).
  uint64_t changes = timers_.changes();
  ArmPit(11932);
  EXPECT_GT(timers_.changes(), changes);
  const uint64_t pit_ns = 11932ull * 1'000'000'000 / kPitHz;
  const uint64_t pit_deadline = vm_->next_deadline_ns();
  EXPECT_GE(pit_deadline, kT0 + pit_ns);
  EXPECT_LE(pit_deadline, kT0 + pit_ns + 2 * 1'000'000'000 / kPitHz);

  // vCPU 1's LAPIC timer in 3 ms, vCPU 0's in 1 ms: the earliest of all three wins.
  changes = timers_.changes();
  ArmLapicTimer(1, 0x41, 3'000'000);
  EXPECT_GT(timers_.changes(), changes);
  EXPECT_EQ(vm_->next_deadline_ns(), kT0 + 3'000'000);
  ArmLapicTimer(0, 0x40, 1'000'000);
  EXPECT_EQ(vm_->next_deadline_ns(), kT0 + 1'000'000);
  // The per-vCPU query sees only its own timer.
  EXPECT_EQ(vm_->next_deadline_ns(1), kT0 + 3'000'000);
}

TEST_F(TimerSeamTest, ServicingAtTheDeadlineFiresLapicTimerAndPitTick) {
  Make(2, &timers_);
  EnableX2Apic(0);
  EnableX2Apic(1);
  // The BSP's LVT0 resets to ExtINT: mask it, so the PIT reaches vCPU 0 through the IOAPIC only.
  ASSERT_EQ(vm_->wrmsr(0, 0x835, 1u << 16), AccessResult::kHandled);
  // IOAPIC pin 2 (ISA IRQ 0): vector 0x50, edge, fixed, physical destination 0.
  IoApicWrite(0x10 + 2 * 2, 0x50);
  IoApicWrite(0x10 + 2 * 2 + 1, 0);
  ArmPit(11932);
  const uint64_t pit_deadline = vm_->next_deadline_ns();
  ArmLapicTimer(0, 0x40, 1'000'000);
  // vCPU 0 runs in the guest (nothing pending), where a timer service's kick reaches it.
  ASSERT_EQ(Inject(0), -1);
  vm_->vcpu_enter(0);
  const int kicks0 = Kicks(0);

  // Before the LAPIC deadline nothing is due.
  clock_.set(kT0 + 999'999);
  EXPECT_EQ(vm_->service_timers(clock_.now_ns()), kT0 + 1'000'000);
  EXPECT_EQ(Kicks(0), kicks0);

  // At it: vCPU 0 is kicked once, fires its timer on entry, and the PIT is next.
  clock_.set(kT0 + 1'000'000);
  EXPECT_EQ(vm_->service_timers(clock_.now_ns()), pit_deadline);
  EXPECT_EQ(Kicks(0), kicks0 + 1);
  EXPECT_EQ(vm_->stats().pit_ticks, 0u);
  // Serviced but not yet run: not due again, and no second kick.
  EXPECT_EQ(vm_->next_deadline_ns(), pit_deadline);
  EXPECT_EQ(vm_->service_timers(clock_.now_ns()), pit_deadline);
  EXPECT_EQ(Kicks(0), kicks0 + 1);
  vm_->vcpu_exit(0);
  EXPECT_EQ(Inject(0), 0x40);

  // At the PIT deadline: one tick, through IOAPIC pin 2 to vCPU 0.
  clock_.set(pit_deadline);
  const uint64_t next = vm_->service_timers(clock_.now_ns());
  EXPECT_EQ(vm_->stats().pit_ticks, 1u);
  EXPECT_GT(next, pit_deadline);
  EXPECT_EQ(Inject(0), 0x50);
}

// IA32_TSC_DEADLINE is compared with the Clock's TSC (virtual here: 1 GHz from kT0), not the
// host's: a deadline 5000 ticks ahead is 5000 ns ahead on the VM's clock.
TEST_F(TimerSeamTest, TscDeadlineUsesTheClocksTsc) {
  Make(1, &timers_);
  EnableX2Apic(0);
  ASSERT_EQ(vm_->wrmsr(0, kLvtTimer, (2u << 17) | 0x42), AccessResult::kHandled);  // TSC-deadline
  EXPECT_EQ(clock_.tsc(), kT0);
  ASSERT_EQ(vm_->wrmsr(0, kTscDeadline, clock_.tsc() + 5000), AccessResult::kHandled);
  EXPECT_EQ(vm_->next_deadline_ns(), kT0 + 5000);
  clock_.advance(5000);
  vm_->service_timers(clock_.now_ns());
  EXPECT_EQ(Inject(0), 0x42);
  EXPECT_EQ(vm_->next_deadline_ns(), UINT64_MAX);
}

}  // namespace
}  // namespace apicv::virt
