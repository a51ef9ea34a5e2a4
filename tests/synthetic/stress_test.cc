// Threaded stress: vCPU threads open windows, halt and apply APICV_UPDATE while another thread
// toggles a VM-wide inhibit (forcing kick-and-wait broadcasts under the write lock). Must finish
// (no deadlock) and be clean under ThreadSanitizer (tsan preset); afterwards the counted
// algorithm's invariants must hold.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "backend/synthetic/synthetic_vm.h"
#include "devices/clock.h"
#include "trace/trace_sink.h"

namespace apicv::synthetic {
namespace {

void Stress(virt::IrqWinStrategy s, bool pit_reinject, bool tracing) {
  MonotonicClock clock;
  trace::TraceSink sink(clock);
  sink.set_ring_capacity(256);
  sink.set_enabled(tracing);
  SyntheticConfig c;
  c.nr_vcpus = 6;
  c.irqwin = s;
  c.pit_reinject = pit_reinject;
  SyntheticVm vm(c, &sink);

  std::atomic<bool> stop{false};
  std::thread toggler([&] {
    trace::set_current_task({"qemu-kvm", 1, 0});
    // With PIT_REINJ held, flip PIT_REINJ itself (KVM_REINJECT_CONTROL) so "inhibited at all"
    // still changes; otherwise flip BLOCKIRQ (KVM_GUESTDBG_BLOCKIRQ).
    const auto reason =
        pit_reinject ? virt::InhibitReason::kPitReinj : virt::InhibitReason::kBlockIrq;
    bool on = pit_reinject;
    while (!stop.load()) {
      on = !on;
      vm.inhibits().set_or_clear(reason, on);
      std::this_thread::yield();
    }
    vm.inhibits().set_or_clear(reason, pit_reinject);
  });
  VcpuScript script;
  script.window_every = 2;
  script.halt_every = 7;
  script.guest_spin = 20;
  const auto st = vm.run_threads(3000, script);
  stop.store(true);
  toggler.join();

  EXPECT_EQ(st.iterations, 6u * 3000u);
  EXPECT_GT(st.windows, 0u);
  if (!pit_reinject) {
    EXPECT_GT(st.inhibit.broadcasts, 0u);
  }
  if (s == virt::IrqWinStrategy::kCounted) {
    int holders = 0;
    for (int v = 0; v < c.nr_vcpus; ++v) holders += vm.irq_window().avic_irq_window(v);
    EXPECT_EQ(vm.inhibits().nr_irq_window_req(), holders);
    // The toggler's last update re-derived IRQWIN from the count.
    const unsigned long irqwin = virt::InhibitBit(virt::InhibitReason::kIrqWin);
    EXPECT_EQ((vm.inhibits().reasons() & irqwin) != 0, holders != 0);
  } else {
    // Legacy: the IRQWIN bit is whatever the last enable/exit left; PIT_REINJ is restored.
    EXPECT_EQ((vm.inhibits().reasons() & 0x200) != 0, pit_reinject);
  }
}

TEST(SyntheticStress, LegacyNoPit) {
  Stress(virt::IrqWinStrategy::kLegacy, false, false);
}
TEST(SyntheticStress, LegacyPitTraced) {
  Stress(virt::IrqWinStrategy::kLegacy, true, true);
}
TEST(SyntheticStress, CountedNoPitTraced) {
  Stress(virt::IrqWinStrategy::kCounted, false, true);
}
TEST(SyntheticStress, CountedPit) {
  Stress(virt::IrqWinStrategy::kCounted, true, false);
}

}  // namespace
}  // namespace apicv::synthetic
