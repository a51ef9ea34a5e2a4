// IRQ-window strategies against spec §3: the 2025 legacy hooks and the 2026 counted algorithm.
#include "virt/irq_window.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "devices/clock.h"
#include "trace/trace_sink.h"

namespace apicv::virt {
namespace {

constexpr std::string_view kEvent = "kvm_apicv_inhibit_changed: ";

struct Vm {
  Vm(IrqWinStrategy s, Vendor v, bool pit_reinj, int n = 2)
      : sink(clock),
        vcpus(n),
        inhibits({v, s == IrqWinStrategy::kCounted}, vcpus, &sink),
        win(s, inhibits, &sink) {
    sink.set_ring_capacity(1000);
    inhibits.init(true);
    inhibits.clear(InhibitReason::kAbsent);
    if (pit_reinj) inhibits.set(InhibitReason::kPitReinj);
    sink.clear_ring();
  }
  std::vector<std::string> inhibit_lines() const {
    std::vector<std::string> out;
    for (const auto& l : sink.ring_lines()) {
      const size_t p = l.find(kEvent);
      if (p != std::string::npos) out.push_back(l.substr(p + kEvent.size()));
    }
    return out;
  }
  FakeClock clock;
  trace::TraceSink sink;
  VcpuRequestSet vcpus;
  ApicvInhibits inhibits;
  IrqWindow win;
};

TEST(IrqWindowLegacy, EachWindowTakesTwoWriteLocksAndTraces) {
  Vm vm(IrqWinStrategy::kLegacy, Vendor::kSvm, true);
  const auto s0 = vm.inhibits.stats();
  vm.win.enable_irq_window(0);
  EXPECT_TRUE(vm.win.window_requested(0));
  vm.win.interrupt_window_interception(0);
  EXPECT_FALSE(vm.win.window_requested(0));
  EXPECT_TRUE(vm.vcpus.vcpu(0).test_request(kReqEvent));
  vm.win.inject_irq(0, false, 0x30);
  const auto s1 = vm.inhibits.stats();
  EXPECT_EQ(s1.write_locks - s0.write_locks, 2u);
  EXPECT_EQ(s1.broadcasts - s0.broadcasts, 0u);  // PIT_REINJ keeps it inhibited: no flip
  EXPECT_EQ(vm.inhibit_lines(),
            (std::vector<std::string>{"set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ",
                                      "cleared reason=8, inhibits=0x200 PIT_REINJ"}));
  EXPECT_EQ(vm.win.irq_window_exits(), 1u);
  EXPECT_EQ(vm.win.irq_injections(), 1u);
}

TEST(IrqWindowLegacy, FirstWindowExitClearsForEveryone) {
  // The 2025 flaw: vCPU 1 still waits for its window but IRQWIN is gone.
  Vm vm(IrqWinStrategy::kLegacy, Vendor::kSvm, false);
  vm.win.enable_irq_window(0);
  vm.win.enable_irq_window(1);
  vm.win.interrupt_window_interception(0);
  EXPECT_TRUE(vm.win.window_requested(1));
  EXPECT_EQ(vm.inhibits.reasons(), 0ul);
}

TEST(IrqWindowLegacy, L2DoesNotTouchTheVmInhibit) {
  Vm vm(IrqWinStrategy::kLegacy, Vendor::kSvm, false);
  vm.inhibits.set_vcpu_guest_mode(0, true);
  vm.win.enable_irq_window(0);
  EXPECT_EQ(vm.inhibits.reasons(), 0ul);
  EXPECT_TRUE(vm.win.window_requested(0));
}

TEST(IrqWindowCounted, WithPitReinjNoWriteLockNoTrace) {
  Vm vm(IrqWinStrategy::kCounted, Vendor::kSvm, true);
  const auto s0 = vm.inhibits.stats();
  for (int i = 0; i < 10; ++i) {
    vm.win.enable_irq_window(i % 2);
    vm.win.interrupt_window_interception(i % 2);
    vm.win.inject_irq(i % 2, false);
  }
  const auto s1 = vm.inhibits.stats();
  EXPECT_EQ(s1.write_locks - s0.write_locks, 0u);
  EXPECT_EQ(s1.broadcasts - s0.broadcasts, 0u);
  EXPECT_EQ(s1.read_locks - s0.read_locks, 20u);  // one inc + one dec per window
  EXPECT_TRUE(vm.inhibit_lines().empty());
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 0);
}

TEST(IrqWindowCounted, EachVcpuCountsOnceAndLastOneClears) {
  Vm vm(IrqWinStrategy::kCounted, Vendor::kSvm, false);
  vm.win.enable_irq_window(0);
  vm.win.enable_irq_window(0);  // same vCPU again: still one count
  vm.win.enable_irq_window(1);
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 2);
  vm.win.interrupt_window_interception(0);  // no inhibit change any more
  EXPECT_EQ(vm.inhibits.reasons(), 0x100ul);
  vm.win.inject_irq(0, /*has_more=*/true);  // still injectable: keep the count
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 2);
  vm.win.inject_irq(0, false);
  EXPECT_EQ(vm.inhibits.reasons(), 0x100ul);  // vCPU 1 still waits
  vm.win.interrupt_window_interception(1);
  vm.win.inject_irq(1, false);
  EXPECT_EQ(vm.inhibits.reasons(), 0ul);
  EXPECT_EQ(vm.inhibit_lines(), (std::vector<std::string>{"set reason=8, inhibits=0x100 IRQWIN",
                                                          "cleared reason=8, inhibits=0x0"}));
}

TEST(IrqWindowCounted, GifClearArmsNothing) {
  Vm vm(IrqWinStrategy::kCounted, Vendor::kSvm, false);
  vm.win.enable_irq_window(0, /*gif_set=*/false);
  EXPECT_FALSE(vm.win.window_requested(0));
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 0);
}

TEST(IrqWindowCounted, L2InjectionDropsTheCount) {
  Vm vm(IrqWinStrategy::kCounted, Vendor::kSvm, false);
  vm.win.enable_irq_window(0);
  EXPECT_TRUE(vm.win.avic_irq_window(0));
  vm.inhibits.set_vcpu_guest_mode(0, true);
  vm.win.inject_irq(0, /*has_more=*/true);
  EXPECT_FALSE(vm.win.avic_irq_window(0));
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 0);
}

TEST(IrqWindow, VmxNeedsNoInhibit) {
  for (auto s : {IrqWinStrategy::kLegacy, IrqWinStrategy::kCounted}) {
    Vm vm(s, Vendor::kVmx, false);
    const auto s0 = vm.inhibits.stats();
    vm.win.enable_irq_window(0);
    EXPECT_TRUE(vm.win.window_requested(0));
    vm.win.interrupt_window_interception(0);
    vm.win.inject_irq(0, false);
    EXPECT_EQ(vm.inhibits.stats().write_locks - s0.write_locks, 0u);
    EXPECT_TRUE(vm.inhibit_lines().empty());
  }
}

TEST(IrqWindow, HostileVcpuIdsAreIgnored) {
  Vm vm(IrqWinStrategy::kCounted, Vendor::kSvm, false);
  vm.win.enable_irq_window(-1);
  vm.win.enable_irq_window(2);
  vm.win.inject_irq(99, false);
  vm.win.interrupt_window_interception(1 << 30);
  EXPECT_EQ(vm.inhibits.nr_irq_window_req(), 0);
  EXPECT_FALSE(vm.win.window_requested(2));
}

}  // namespace
}  // namespace apicv::virt
