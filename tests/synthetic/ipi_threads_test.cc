// Scripted IPI guests on real threads (IpiScriptVm::run_threads): must finish within a bounded
// time (no deadlock, no lost wake-up) and conserve IPIs, and be clean under ThreadSanitizer
// (tsan preset). Expectations from the scripts alone: a stream with max_in_flight 1 cannot
// coalesce (SDM 11.8.4: the next IPI is sent only after the previous one left IRR), so every
// target takes exactly what was sent; without credit each (target, vector) takes between 1 and
// the number sent.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "backend/synthetic/ipi_script.h"
#include "devices/clock.h"

namespace apicv::synthetic {
namespace {

constexpr auto kDeadline = std::chrono::milliseconds(120000);

IpiStream Physical(int target, uint8_t vector, uint64_t count, uint32_t max_in_flight) {
  IpiStream s;
  s.targets = {target};
  s.vector = vector;
  s.count = count;
  s.max_in_flight = max_in_flight;
  return s;
}

std::string FirstProblem(const IpiRunResult& r) {
  return r.problems.empty() ? std::string() : r.problems[0];
}

// 16 vCPUs, each sends `count` IPIs to every other vCPU with its own vector (0x40 + sender) and
// credit 1, and halts when it has nothing to do.
void AllToAll(virt::VendorModel vendor, bool x2apic, uint64_t count) {
  constexpr int kN = 16;
  std::vector<IpiVcpuScript> s(kN);
  for (int v = 0; v < kN; ++v) {
    for (int t = 0; t < kN; ++t)
      if (t != v) s[v].streams.push_back(Physical(t, static_cast<uint8_t>(0x40 + v), count, 1));
    s[v].guest_spin = 50;
  }
  IpiScriptConfig c;
  c.nr_vcpus = kN;
  c.vendor = vendor;
  c.x2apic = x2apic;
  c.device_trace = false;
  MonotonicClock clock;
  IpiScriptVm vm(c, s, clock, nullptr);
  const IpiRunResult r = vm.run_threads(kDeadline);
  ASSERT_TRUE(r.completed);
  ASSERT_TRUE(r.conserved()) << FirstProblem(r);
  uint64_t sent = 0;
  for (int v = 0; v < kN; ++v) {
    EXPECT_EQ(r.vcpus[v].ipis_sent, count * (kN - 1)) << v;
    EXPECT_EQ(r.vcpus[v].received_total, count * (kN - 1)) << v;
    EXPECT_EQ(r.vcpus[v].eois, count * (kN - 1)) << v;
    EXPECT_EQ(r.vcpus[v].lost_wakeups, 0u) << v;
    for (int src = 0; src < kN; ++src)
      EXPECT_EQ(r.vcpus[v].received[0x40 + src], src == v ? 0u : count) << v << " from " << src;
    sent += r.vcpus[v].ipis_sent;
  }
  EXPECT_EQ(r.total_sent(), sent);
  EXPECT_EQ(r.total_received(), sent);
  EXPECT_EQ(r.total_coalesced(), 0u);
  EXPECT_EQ(r.vm.ipis, sent);
}

TEST(IpiThreads, AllToAll16SvmCredited) {
  AllToAll(virt::VendorModel::kSvm, true, 8);
}
TEST(IpiThreads, AllToAll16VmxCredited) {
  AllToAll(virt::VendorModel::kVmx, true, 8);
}
TEST(IpiThreads, AllToAll16XApicMmio) {
  AllToAll(virt::VendorModel::kSvm, false, 4);
}

// Without credit: bursts to all-but-self from every vCPU at once, with delayed EOIs so vectors
// sit in IRR and coalesce. Whatever the interleaving: each (target, vector) took 1..sent and the
// run drains (IRR and ISR empty, no lost wake-up).
TEST(IpiThreads, UncreditedBurstsCoalesceButNeverLoseTheLast) {
  for (auto vendor : {virt::VendorModel::kSvm, virt::VendorModel::kVmx}) {
    constexpr int kN = 8;
    std::vector<IpiVcpuScript> s(kN);
    for (int v = 0; v < kN; ++v) {
      IpiStream all;
      all.dest = IpiDest::kAllButSelf;
      all.vector = static_cast<uint8_t>(0x80 + 0x10 * (v % 4) + v);
      all.count = 200;
      s[v].streams = {all};
      s[v].eoi_delay = 2;
      s[v].cli_every = 5;
    }
    IpiScriptConfig c;
    c.nr_vcpus = kN;
    c.vendor = vendor;
    c.device_trace = false;
    MonotonicClock clock;
    IpiScriptVm vm(c, s, clock, nullptr);
    const IpiRunResult r = vm.run_threads(kDeadline);
    ASSERT_TRUE(r.conserved()) << FirstProblem(r);
    EXPECT_EQ(r.total_sent(), kN * 200u * (kN - 1));
    EXPECT_EQ(r.total_received() + r.total_coalesced(), r.total_sent());
    for (const auto& f : r.flows) {
      EXPECT_GE(f.received, 1u);
      EXPECT_LE(f.received, f.sent);
    }
  }
}

// AVIC inhibited by PIT reinjection, legacy windows, threads: interrupts go through KVM
// injection and IRQ windows, and IRQWIN is clear once every window was closed.
TEST(IpiThreads, InhibitedLegacyWindows) {
  constexpr int kN = 6;
  std::vector<IpiVcpuScript> s(kN);
  for (int v = 0; v < kN; ++v) {
    s[v].streams = {Physical((v + 1) % kN, static_cast<uint8_t>(0x40 + v), 100, 1)};
    s[v].cli_every = 2;
  }
  IpiScriptConfig c;
  c.nr_vcpus = kN;
  c.pit_policy = virt::PitPolicy::kDelay;
  c.irqwin = virt::IrqWindowMode::kLegacy;
  c.device_trace = false;
  MonotonicClock clock;
  IpiScriptVm vm(c, s, clock, nullptr);
  const IpiRunResult r = vm.run_threads(kDeadline);
  ASSERT_TRUE(r.conserved()) << FirstProblem(r);
  EXPECT_EQ(r.total_received(), kN * 100u);
  EXPECT_EQ(r.vm.injections, kN * 100u);
  EXPECT_EQ(vm.vm().inhibit_reasons(), 0x200u);
}

// A backend that drops the model's kicks: halts end only by their bounded waits, and the
// quiescent check reports the wake-ups that never came. The run still finishes.
TEST(IpiThreads, DroppedKicksAreReportedAsLostWakeups) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x40, 5, 1)};
  s[0].streams[0].every = 2;
  s[0].guest_spin = 200000;  // no kick ends it: the target has long blocked before each send
  IpiScriptConfig c;
  c.nr_vcpus = 2;
  c.device_trace = false;
  MonotonicClock clock;
  IpiScriptVm vm(c, s, clock, nullptr);
  vm.vm().set_kick([](int) {});
  const IpiRunResult r = vm.run_threads(kDeadline);
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.vcpus[1].received[0x40], 5u);
  EXPECT_GE(r.vcpus[1].lost_wakeups, 1u);
  EXPECT_FALSE(r.conserved());
}

}  // namespace
}  // namespace apicv::synthetic
