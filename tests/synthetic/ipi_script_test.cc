// Scripted IPI guests on the synthetic backend, deterministic mode. Every expected figure is
// derived by hand from the round-robin schedule (one phase of one vCPU per turn: entry, guest
// run + exit, halt check), the AVIC rules of APM 15.29.3.1 / 15.29.5.1 (IRR set in every target,
// doorbell for IsRunning targets, AVIC_INCOMPLETE_IPI TARGET_NOT_RUNNING otherwise, vectors 0-15
// exit INVALID_IPI_VECTOR), SDM 11.8.4 (a vector pending in IRR absorbs a second one), SDM 11.5.3
// (ESR send/receive illegal vector) and SDM vol. 3C 30.6 (posted interrupts: ON set by the first
// post, notification only when ON was clear).
#include "backend/synthetic/ipi_script.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "devices/clock.h"
#include "trace/trace_sink.h"
#include "virt/avic.h"

namespace apicv::synthetic {
namespace {

constexpr size_t kTargetNotRunning =
    static_cast<size_t>(virt::AvicIpiFailureCause::kTargetNotRunning);
constexpr size_t kInvalidIpiVector =
    static_cast<size_t>(virt::AvicIpiFailureCause::kInvalidIpiVector);

IpiStream Physical(int target, uint8_t vector, uint64_t count, uint32_t every = 1,
                   uint32_t start = 0, uint32_t max_in_flight = 0) {
  IpiStream s;
  s.dest = IpiDest::kPhysical;
  s.targets = {target};
  s.vector = vector;
  s.count = count;
  s.every = every;
  s.start = start;
  s.max_in_flight = max_in_flight;
  return s;
}

IpiScriptConfig Config(int n, virt::VendorModel vendor = virt::VendorModel::kSvm) {
  IpiScriptConfig c;
  c.nr_vcpus = n;
  c.vendor = vendor;
  return c;
}

struct ScriptRun {
  ScriptRun(const IpiScriptConfig& c, std::vector<IpiVcpuScript> scripts)
      : clock(1000000000ull), sink(clock) {
    sink.set_ring_capacity(1u << 20);
    vm = std::make_unique<IpiScriptVm>(c, std::move(scripts), clock, &sink);
    result = vm->run_deterministic(&clock, 1000, 1000000);
  }
  FakeClock clock;
  trace::TraceSink sink;
  std::unique_ptr<IpiScriptVm> vm;
  IpiRunResult result;
};

const IpiFlow* FindFlow(const IpiRunResult& r, int target, uint8_t vector) {
  for (const auto& f : r.flows)
    if (f.target == target && f.vector == vector) return &f;
  return nullptr;
}

// vCPU 0 sends 100 IPIs (0x40) to vCPU 2, one every 8 guest actions starting at action 8. After
// each one vCPU 2 needs five turns of its own (wake, entry + injection, EOI, entry, HLT) and one
// more to block, interleaved with vCPU 0's turns (entry, then work): vCPU 0 reaches its next due
// action after 7 more actions, by which time vCPU 2 is blocked with IsRunning clear. So every
// ICR write finds the target not running: AVIC sets IRR, exits TARGET_NOT_RUNNING, and the fast
// kick wakes vCPU 2 once. The first one too: vCPUs 1-3 halt and block during vCPU 0's first
// eight actions. Nothing coalesces.
TEST(IpiScript, SvmHaltedTargetTakesEveryIpiAfterTargetNotRunning) {
  std::vector<IpiVcpuScript> s(4);
  s[0].streams = {Physical(2, 0x40, 100, /*every=*/8, /*start=*/8)};
  ScriptRun run(Config(4), s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);

  const IpiVcpuFigures& src = r.vcpus[0];
  EXPECT_EQ(src.ipis_sent, 100u);
  EXPECT_EQ(src.ipi_messages, 100u);
  EXPECT_EQ(src.incomplete_ipi, 100u);
  EXPECT_EQ(src.incomplete_ipi_by_cause[kTargetNotRunning], 100u);
  EXPECT_EQ(src.accelerated_icr_writes, 0u);
  EXPECT_EQ(src.halts, 1u);    // the final HLT
  EXPECT_EQ(src.exits, 101u);  // 100 ICR writes + HLT

  const IpiVcpuFigures& dst = r.vcpus[2];
  EXPECT_EQ(dst.received[0x40], 100u);
  EXPECT_EQ(dst.received_total, 100u);
  EXPECT_EQ(dst.eois, 100u);
  EXPECT_EQ(dst.accelerated_eois, 100u);  // edge EOIs complete in the AVIC backing page
  EXPECT_EQ(dst.halts, 101u);             // before the first IPI and after each
  EXPECT_EQ(dst.wakeups, 100u);
  EXPECT_EQ(dst.kicks, 100u);  // one avic_kick_vcpu wake-up per incomplete IPI
  EXPECT_EQ(dst.kick_exits, 0u);
  EXPECT_EQ(dst.window_exits, 0u);
  EXPECT_EQ(dst.lost_wakeups, 0u);
  EXPECT_EQ(dst.exits, 101u);  // HLTs only
  for (int v : {1, 3}) {
    EXPECT_EQ(r.vcpus[v].received_total, 0u);
    EXPECT_EQ(r.vcpus[v].halts, 1u);
    EXPECT_EQ(r.vcpus[v].kicks, 0u);
  }
  const IpiFlow* f = FindFlow(r, 2, 0x40);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->sent, 100u);
  EXPECT_EQ(f->received, 100u);
  EXPECT_EQ(r.total_coalesced(), 0u);
  EXPECT_EQ(r.vm.avic_incomplete_ipi, 100u);
  EXPECT_EQ(r.vm.avic_fast_hits, 100u);
  EXPECT_EQ(r.vm.avic_accelerated_ipis, 0u);
}

// Two vCPUs, vCPU 0 sends three 0x40 IPIs to vCPU 1 back to back (every = 1). Schedule:
//   v0 entry, v1 entry, v0 ICR#1 (v1 running: IRR + doorbell kick), v1 kick exit, v0 entry,
//   v1 entry takes 0x40 (IF=0, ISR 0x40), v0 ICR#2 (IRR 0x40 again, doorbell kick), v1 kick exit,
//   v0 entry, v1 entry (0x40 in IRR blocked by ISR: nothing), v0 ICR#3 (IRR 0x40 already set:
//   absorbed; doorbell kick), v1 kick exit, ... v1 EOIs, and with IF still 0 until its IRET the
//   model asks for a window; the window exit is followed by the second (and last) 0x40.
// So: 3 sent, 2 taken, 1 coalesced; three accelerated ICR writes, three doorbell kicks.
TEST(IpiScript, SvmBackToBackIpisCoalesceInIrr) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x40, 3)};
  ScriptRun run(Config(2), s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.vcpus[0].ipis_sent, 3u);
  EXPECT_EQ(r.vcpus[0].accelerated_icr_writes, 3u);
  EXPECT_EQ(r.vcpus[0].incomplete_ipi, 0u);
  EXPECT_EQ(r.vcpus[1].received[0x40], 2u);
  EXPECT_EQ(r.vcpus[1].eois, 2u);
  EXPECT_EQ(r.vcpus[1].kicks, 3u);
  EXPECT_EQ(r.vcpus[1].kick_exits, 3u);
  EXPECT_EQ(r.vcpus[1].window_requests, 1u);
  EXPECT_EQ(r.vcpus[1].window_exits, 1u);
  const IpiFlow* f = FindFlow(r, 1, 0x40);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->sent, 3u);
  EXPECT_EQ(f->received, 2u);
  EXPECT_EQ(f->coalesced(), 1u);
  EXPECT_EQ(r.vm.avic_accelerated_ipis, 3u);
  EXPECT_EQ(r.vm.avic_doorbells, 3u);
}

// The same burst with max_in_flight 1: each ICR write waits until the previous IPI was taken, so
// nothing can coalesce and the counts must match exactly.
TEST(IpiScript, CreditedStreamNeverCoalesces) {
  for (auto vendor : {virt::VendorModel::kSvm, virt::VendorModel::kVmx}) {
    std::vector<IpiVcpuScript> s(2);
    s[0].streams = {Physical(1, 0x40, 50, 1, 0, /*max_in_flight=*/1)};
    ScriptRun run(Config(2, vendor), s);
    const IpiRunResult& r = run.result;
    ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
    EXPECT_EQ(r.vcpus[1].received[0x40], 50u);
    EXPECT_EQ(r.vcpus[1].eois, 50u);
    EXPECT_EQ(r.total_coalesced(), 0u);
    EXPECT_GT(r.vcpus[0].credit_waits, 0u);
  }
}

// Vectors 0-15 (SDM 11.5.2 illegal). svm with AVIC active: the hardware exits with
// INVALID_IPI_VECTOR and KVM drops the IPI; the sender's LAPIC (SDM ESR mode) records "send
// illegal vector" (bit 5); the target never sees it (ESR 0). vmx: the IPI is emulated and
// posted, and the target's LAPIC refuses it on acceptance, "receive illegal vector" (bit 6).
TEST(IpiScript, IllegalVectorSvmExitsInvalidIpiVector) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x05, 1, 1, /*start=*/4)};
  IpiScriptConfig c = Config(2);
  c.esr_sdm_mode = true;
  ScriptRun run(c, s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.vcpus[0].incomplete_ipi, 1u);
  EXPECT_EQ(r.vcpus[0].incomplete_ipi_by_cause[kInvalidIpiVector], 1u);
  EXPECT_EQ(r.vcpus[0].esr, 0x20u);
  EXPECT_EQ(r.vcpus[1].esr, 0u);
  EXPECT_EQ(r.vcpus[1].received_total, 0u);
  EXPECT_EQ(r.vcpus[1].kicks, 0u);  // KVM ignores the exit: nobody is kicked
  const IpiFlow* f = FindFlow(r, 1, 0x05);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->sent, 1u);
  EXPECT_EQ(f->received, 0u);
}

TEST(IpiScript, IllegalVectorVmxSetsReceiveIllegalOnTarget) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x05, 1, 1, /*start=*/4)};
  IpiScriptConfig c = Config(2, virt::VendorModel::kVmx);
  c.esr_sdm_mode = true;
  ScriptRun run(c, s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.vcpus[0].esr, 0x20u);
  EXPECT_EQ(r.vcpus[1].esr, 0x40u);
  EXPECT_EQ(r.vcpus[1].received_total, 0u);
  EXPECT_EQ(r.vm.avic_incomplete_ipi, 0u);
}

TEST(IpiScript, IllegalVectorKvmParityLeavesEsrClear) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x05, 1, 1, /*start=*/4)};
  ScriptRun run(Config(2), s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved());
  EXPECT_EQ(r.vcpus[0].esr, 0u);
  EXPECT_EQ(r.vcpus[1].esr, 0u);
  EXPECT_EQ(r.vcpus[0].incomplete_ipi_by_cause[kInvalidIpiVector], 1u);
}

// vmx posted interrupts, three vCPUs all in guest mode: v0 posts 0x40 to v2 (ON was clear:
// notification, a kick), then v1 posts `second` to v2 before v2 runs again: ON is already set,
// so no notification. With second = 0x41 that is the ON suppression; with second = 0x40 the
// vector itself was still pending in PIR: coalesced, and v2 takes 0x40 once. One harvest.
TEST(IpiScript, VmxPostedInterruptOnSuppressesSecondNotification) {
  for (uint8_t second : {uint8_t{0x41}, uint8_t{0x40}}) {
    std::vector<IpiVcpuScript> s(3);
    s[0].streams = {Physical(2, 0x40, 1)};
    s[1].streams = {Physical(2, second, 1)};
    ScriptRun run(Config(3, virt::VendorModel::kVmx), s);
    const IpiRunResult& r = run.result;
    ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
    EXPECT_EQ(r.vm.pi_deliveries, 2u);
    EXPECT_EQ(r.vm.pi_notifications, 1u);
    EXPECT_EQ(r.vm.pi_wakeups, 0u);
    EXPECT_EQ(r.vm.pi_harvests, 1u);
    EXPECT_EQ(r.vcpus[2].kicks, 1u);
    EXPECT_EQ(r.vcpus[2].kick_exits, 1u);
    // x2APIC ICR writes trap on vmx (no IPI virtualization): never accelerated.
    EXPECT_EQ(r.vcpus[0].accelerated_icr_writes, 0u);
    // EOIs of vectors outside the EOI-exit bitmap are virtualized.
    EXPECT_EQ(r.vcpus[2].accelerated_eois, r.vcpus[2].eois);
    if (second == 0x41) {
      EXPECT_EQ(r.vm.pi_suppressed_on, 1u);
      EXPECT_EQ(r.vm.pi_coalesced, 0u);
      EXPECT_EQ(r.vcpus[2].received[0x40], 1u);
      EXPECT_EQ(r.vcpus[2].received[0x41], 1u);
      EXPECT_EQ(r.vcpus[2].eois, 2u);
      EXPECT_EQ(r.total_coalesced(), 0u);
    } else {
      EXPECT_EQ(r.vm.pi_suppressed_on, 0u);
      EXPECT_EQ(r.vm.pi_coalesced, 1u);
      EXPECT_EQ(r.vcpus[2].received[0x40], 1u);
      EXPECT_EQ(r.vcpus[2].eois, 1u);
      EXPECT_EQ(r.total_coalesced(), 1u);
    }
  }
}

// vmx, target halted: the posted interrupt finds it blocked and wakes it (no notification).
TEST(IpiScript, VmxBlockedTargetIsWokenNotNotified) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x40, 10, /*every=*/8, /*start=*/8)};
  ScriptRun run(Config(2, virt::VendorModel::kVmx), s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.vm.pi_deliveries, 10u);
  EXPECT_EQ(r.vm.pi_wakeups, 10u);
  EXPECT_EQ(r.vm.pi_notifications, 0u);
  EXPECT_EQ(r.vcpus[1].received[0x40], 10u);
  EXPECT_EQ(r.vcpus[1].wakeups, 10u);
  EXPECT_EQ(r.vcpus[1].kicks, 10u);
}

// Shorthand all-but-self and logical destinations, x2APIC (MSR) and xAPIC (MMIO): with credit 1
// every addressed vCPU takes exactly what was sent.
TEST(IpiScript, AllButSelfAndLogicalDestinations) {
  for (bool x2apic : {true, false}) {
    std::vector<IpiVcpuScript> s(4);
    IpiStream all;
    all.dest = IpiDest::kAllButSelf;
    all.vector = 0x50;
    all.count = 10;
    all.max_in_flight = 1;
    s[0].streams = {all};
    IpiStream logical;
    logical.dest = IpiDest::kLogical;
    logical.targets = {2, 3};
    logical.vector = 0x60;
    logical.count = 5;
    logical.max_in_flight = 1;
    s[1].streams = {logical};
    IpiScriptConfig c = Config(4);
    c.x2apic = x2apic;
    ScriptRun run(c, s);
    const IpiRunResult& r = run.result;
    ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
    EXPECT_EQ(r.vcpus[0].ipis_sent, 10u);
    EXPECT_EQ(r.vcpus[0].ipi_messages, 30u);
    EXPECT_EQ(r.vcpus[0].received_total, 0u);
    for (int t : {1, 2, 3}) EXPECT_EQ(r.vcpus[t].received[0x50], 10u) << t;
    EXPECT_EQ(r.vcpus[1].received[0x60], 0u);
    EXPECT_EQ(r.vcpus[2].received[0x60], 5u);
    EXPECT_EQ(r.vcpus[3].received[0x60], 5u);
    EXPECT_EQ(r.vcpus[1].ipi_messages, 10u);
  }
}

// A self-IPI (physical destination = sender) is taken right after its own ICR-write exit.
TEST(IpiScript, SelfIpi) {
  std::vector<IpiVcpuScript> s(1);
  s[0].streams = {Physical(0, 0x70, 5, 1, 0, 1)};
  ScriptRun run(Config(1), s);
  const IpiRunResult& r = run.result;
  ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
  EXPECT_EQ(r.vcpus[0].received[0x70], 5u);
  EXPECT_EQ(r.vcpus[0].eois, 5u);
}

// PIT reinjection inhibits AVIC (svm): interrupts are injected by "KVM" and an interrupt that
// arrives while the guest has IF=0 (its handler, or cli around an ICR write) needs an IRQ window.
// IRQWIN is clear at the end: every window opened was closed by a window exit.
TEST(IpiScript, InhibitedAvicUsesIrqWindows) {
  for (auto irqwin : {virt::IrqWindowMode::kLegacy, virt::IrqWindowMode::kCounted}) {
    std::vector<IpiVcpuScript> s(3);
    s[0].streams = {Physical(2, 0x40, 40)};
    s[1].streams = {Physical(2, 0x48, 40, 2)};
    s[2].streams = {Physical(0, 0x50, 20, 3)};
    s[2].cli_every = 2;
    IpiScriptConfig c = Config(3);
    c.pit_policy = virt::PitPolicy::kDelay;
    c.irqwin = irqwin;
    ScriptRun run(c, s);
    const IpiRunResult& r = run.result;
    ASSERT_TRUE(r.conserved()) << (r.problems.empty() ? "" : r.problems[0]);
    EXPECT_EQ(r.vm.avic_accelerated_ipis + r.vm.avic_incomplete_ipi, 0u);
    // A kick between the window request and the window exit re-runs enable_irq_window on the
    // open window (counted again), so requests >= exits; every window is closed in the end.
    EXPECT_GT(r.vm.window_exits, 0u);
    EXPECT_GE(r.vm.windows_requested, r.vm.window_exits);
    EXPECT_EQ(r.vm.injections, r.total_received());
    EXPECT_EQ(r.vm.eois_accelerated, 0u);
    EXPECT_EQ(r.vm.eois, r.vcpus[0].eois + r.vcpus[1].eois + r.vcpus[2].eois);
    EXPECT_EQ(run.vm->vm().inhibit_reasons(), 0x200u);  // PIT_REINJ only
  }
}

// Same scripts, two runs: identical figures and identical trace text.
TEST(IpiScript, DeterministicAcrossRuns) {
  auto scripts = [] {
    std::vector<IpiVcpuScript> s(4);
    IpiStream all;
    all.dest = IpiDest::kAllButSelf;
    all.vector = 0x50;
    all.count = 20;
    all.every = 3;
    s[0].streams = {all, Physical(3, 0x41, 30, 2)};
    s[1].streams = {Physical(2, 0x60, 25, 5)};
    s[1].eoi_delay = 3;
    s[2].cli_every = 3;
    s[2].streams = {Physical(1, 0x70, 10, 4)};
    return s;
  };
  for (auto vendor : {virt::VendorModel::kSvm, virt::VendorModel::kVmx}) {
    ScriptRun a(Config(4, vendor), scripts());
    ScriptRun b(Config(4, vendor), scripts());
    ASSERT_TRUE(a.result.conserved()) << (a.result.problems.empty() ? "" : a.result.problems[0]);
    EXPECT_EQ(a.result.vcpus, b.result.vcpus);
    EXPECT_EQ(a.result.flows, b.result.flows);
    EXPECT_EQ(a.result.steps, b.result.steps);
    const auto la = a.sink.ring_lines();
    EXPECT_GT(la.size(), 50u);
    EXPECT_EQ(la, b.sink.ring_lines());
  }
}

TEST(IpiScript, TraceShowsIncompleteIpiFromTheSendersTask) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x40, 1, 1, /*start=*/4)};
  ScriptRun run(Config(2), s);
  ASSERT_TRUE(run.result.conserved());
  int incomplete = 0;
  for (const auto& l : run.sink.ring_lines()) {
    if (l.find("kvm_avic_incomplete_ipi") == std::string::npos) continue;
    ++incomplete;
    EXPECT_NE(l.find("CPU 0/KVM-10402"), std::string::npos) << l;
  }
  EXPECT_EQ(incomplete, 1);
}

// With the model's kicks dropped (a backend whose kick does nothing), the halted target never
// hears about its IPIs. vCPU 0 keeps running (it never waits), so the scheduler never has to
// poll; the three IPIs pile up in vCPU 1's IRR (one vector: 2 coalesced) until vCPU 0 is done
// and the end-of-run notification makes vCPU 1 look: events with no kick since it blocked, one
// lost wake-up, one interrupt taken.
TEST(IpiScript, DroppedKicksAreReportedAsLostWakeups) {
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(1, 0x40, 3, /*every=*/8, /*start=*/8)};
  FakeClock clock;
  IpiScriptVm vm(Config(2), s, clock, nullptr);
  vm.vm().set_kick([](int) {});
  const IpiRunResult r = vm.run_deterministic(&clock, 1000, 100000);
  EXPECT_TRUE(r.completed);
  EXPECT_FALSE(r.conserved());
  EXPECT_EQ(r.vcpus[1].lost_wakeups, 1u);
  EXPECT_EQ(r.vcpus[1].received[0x40], 1u);
  EXPECT_EQ(r.total_coalesced(), 2u);
  EXPECT_EQ(r.vcpus[1].kicks, 0u);
}

TEST(IpiScript, RejectsBadScripts) {
  FakeClock clock;
  auto make = [&](IpiScriptConfig c, std::vector<IpiVcpuScript> s) {
    IpiScriptVm vm(c, std::move(s), clock, nullptr);
  };
  std::vector<IpiVcpuScript> s(2);
  s[0].streams = {Physical(5, 0x40, 1)};
  EXPECT_THROW(make(Config(2), s), std::invalid_argument);
  s[0].streams = {Physical(1, 0x05, 1, 1, 0, 1)};  // credited illegal vector would never drain
  EXPECT_THROW(make(Config(2), s), std::invalid_argument);
  s[0].streams = {Physical(1, 0x40, 1, 1, 0, 1)};
  s[1].streams = {Physical(1, 0x40, 1)};  // a credited pair shared with another stream
  EXPECT_THROW(make(Config(2), s), std::invalid_argument);
  s[1].streams.clear();
  s[0].streams[0].every = 0;
  EXPECT_THROW(make(Config(2), s), std::invalid_argument);
  IpiStream logical;
  logical.dest = IpiDest::kLogical;
  logical.targets = {8};
  std::vector<IpiVcpuScript> s9(9);
  s9[0].streams = {logical};
  IpiScriptConfig xapic = Config(9);
  xapic.x2apic = false;
  EXPECT_THROW(make(xapic, s9), std::invalid_argument);
  EXPECT_THROW(make(Config(2), std::vector<IpiVcpuScript>(3)), std::invalid_argument);
  EXPECT_THROW(make(Config(0), {}), std::invalid_argument);
}

}  // namespace
}  // namespace apicv::synthetic
