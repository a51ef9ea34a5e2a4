// The inhibit manager against spec §1/§2/§3.3: initial state, vendor filter, trace on every call,
// IRQWIN re-derived from the counter, broadcast before publish, per-vCPU activation.
#include "virt/apicv_inhibits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "devices/clock.h"
#include "trace/trace_sink.h"

namespace apicv::virt {
namespace {

constexpr std::string_view kEvent = "kvm_apicv_inhibit_changed: ";

// Trace bodies only (the prefix is tested in tests/trace).
std::vector<std::string> Bodies(const trace::TraceSink& sink) {
  std::vector<std::string> out;
  for (const auto& l : sink.ring_lines()) {
    const size_t p = l.find(kEvent);
    if (p != std::string::npos) out.push_back(l.substr(p + kEvent.size()));
  }
  return out;
}

struct Fixture {
  explicit Fixture(Vendor v = Vendor::kSvm, bool counted = true, int nr_vcpus = 2)
      : sink(clock), vcpus(nr_vcpus), inhibits({v, counted}, vcpus, &sink) {
    sink.set_ring_capacity(1000);
  }
  FakeClock clock;
  trace::TraceSink sink;
  VcpuRequestSet vcpus;
  ApicvInhibits inhibits;
};

TEST(InhibitReason, ValuesNamesAndMasks) {
  EXPECT_EQ(static_cast<int>(InhibitReason::kIrqWin), 8);
  EXPECT_EQ(static_cast<int>(InhibitReason::kPitReinj), 9);
  EXPECT_EQ(static_cast<int>(InhibitReason::kPhysicalIdTooBig), 12);
  EXPECT_EQ(InhibitReasonName(InhibitReason::kLogicalIdAliased), "LOGICAL_ID_ALIASED");
  EXPECT_EQ(InhibitReasonName(InhibitReason::kDisabled), "DISABLED");
  // VMX: bits 0-6. SVM: everything (0-12).
  EXPECT_EQ(kVmxRequiredApicvInhibits, 0x7Ful);
  EXPECT_EQ(kSvmRequiredApicvInhibits, 0x1FFFul);
}

TEST(ApicvInhibits, InitWithApicvSetsAbsent) {
  Fixture f;
  f.inhibits.init(true);
  EXPECT_EQ(f.inhibits.reasons(), 0x4ul);
  EXPECT_EQ(Bodies(f.sink), std::vector<std::string>{"set reason=2, inhibits=0x4 ABSENT"});
  // kvm_create_lapic(): optimistic apicv_active plus a pending APICV_UPDATE.
  EXPECT_TRUE(f.inhibits.vcpu_apicv_active(0));
  EXPECT_TRUE(f.vcpus.vcpu(1).test_request(kReqApicvUpdate));
}

TEST(ApicvInhibits, ApicvOffSetsDisabledAndIgnoresEverythingAfter) {
  Fixture f;
  f.inhibits.init(false);
  f.inhibits.clear(InhibitReason::kAbsent);
  f.inhibits.set(InhibitReason::kPitReinj);
  f.inhibits.inc_or_dec_irq_window_req(true);
  EXPECT_EQ(f.inhibits.reasons(), 0x1ul);
  EXPECT_EQ(f.inhibits.nr_irq_window_req(), 0);
  EXPECT_EQ(Bodies(f.sink), std::vector<std::string>{"set reason=0, inhibits=0x1 DISABLED"});
  EXPECT_EQ(f.inhibits.stats().write_locks, 0u);
}

TEST(ApicvInhibits, CountedEveryCallTracesIrqwinToo) {
  Fixture f;
  f.inhibits.init(true);
  f.inhibits.clear(InhibitReason::kAbsent);
  f.inhibits.set(InhibitReason::kPitReinj);
  f.inhibits.set(InhibitReason::kPitReinj);  // unchanged: still traced
  const std::vector<std::string> want = {
      "set reason=2, inhibits=0x4 ABSENT",
      "cleared reason=2, inhibits=0x0",
      "cleared reason=8, inhibits=0x0",
      "set reason=9, inhibits=0x200 PIT_REINJ",
      "cleared reason=8, inhibits=0x200 PIT_REINJ",
      "set reason=9, inhibits=0x200 PIT_REINJ",
      "cleared reason=8, inhibits=0x200 PIT_REINJ",
  };
  EXPECT_EQ(Bodies(f.sink), want);
  EXPECT_EQ(f.inhibits.reasons(), 0x200ul);
}

TEST(ApicvInhibits, LegacyTracesOnlyTheReason) {
  Fixture f(Vendor::kSvm, /*counted=*/false);
  f.inhibits.init(true);
  f.inhibits.clear(InhibitReason::kAbsent);
  f.inhibits.set(InhibitReason::kPitReinj);
  f.inhibits.set(InhibitReason::kIrqWin);
  f.inhibits.clear(InhibitReason::kIrqWin);
  const std::vector<std::string> want = {
      "set reason=2, inhibits=0x4 ABSENT",          "cleared reason=2, inhibits=0x0",
      "set reason=9, inhibits=0x200 PIT_REINJ",     "set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ",
      "cleared reason=8, inhibits=0x200 PIT_REINJ",
  };
  EXPECT_EQ(Bodies(f.sink), want);
}

TEST(ApicvInhibits, VmxFiltersSvmOnlyReasonsWithoutTrace) {
  Fixture f(Vendor::kVmx, /*counted=*/false);
  f.inhibits.init(true);
  f.sink.clear_ring();
  f.inhibits.set(InhibitReason::kIrqWin);
  f.inhibits.set(InhibitReason::kPitReinj);
  f.inhibits.set(InhibitReason::kLogicalIdAliased);
  f.inhibits.set(InhibitReason::kSev);
  EXPECT_TRUE(Bodies(f.sink).empty());
  EXPECT_EQ(f.inhibits.reasons(), 0x4ul);
  f.inhibits.set(InhibitReason::kApicIdModified);
  EXPECT_EQ(Bodies(f.sink),
            std::vector<std::string>{"set reason=5, inhibits=0x24 ABSENT|APIC_ID_MODIFIED"});
}

TEST(ApicvInhibits, VmxCountedStillPrintsClearedIrqwin) {
  // Spec §2.3 consequence (a): a VMX update prints the IRQWIN line, always "cleared".
  Fixture f(Vendor::kVmx, /*counted=*/true);
  f.inhibits.init(true);
  f.sink.clear_ring();
  f.inhibits.clear(InhibitReason::kAbsent);
  EXPECT_EQ(Bodies(f.sink), (std::vector<std::string>{"cleared reason=2, inhibits=0x0",
                                                      "cleared reason=8, inhibits=0x0"}));
}

TEST(ApicvInhibits, BroadcastOnlyWhenInhibitedAtAllFlips) {
  Fixture f;
  f.inhibits.init(true);
  const uint64_t b0 = f.vcpus.broadcasts();
  f.inhibits.set(InhibitReason::kPitReinj);  // 0x4 -> 0x204: no flip
  EXPECT_EQ(f.vcpus.broadcasts(), b0);
  f.inhibits.clear(InhibitReason::kAbsent);  // -> 0x200: no flip
  EXPECT_EQ(f.vcpus.broadcasts(), b0);
  f.inhibits.clear(InhibitReason::kPitReinj);  // -> 0: flip
  EXPECT_EQ(f.vcpus.broadcasts(), b0 + 1);
  f.inhibits.set(InhibitReason::kApicBaseModified);  // -> 0x40: flip
  EXPECT_EQ(f.vcpus.broadcasts(), b0 + 2);
  EXPECT_TRUE(f.vcpus.vcpu(0).test_request(kReqApicvUpdate));
}

TEST(ApicvInhibits, CountedIrqWindowSlowAndFastPaths) {
  Fixture f;
  f.inhibits.init(true);
  f.inhibits.clear(InhibitReason::kAbsent);
  f.sink.clear_ring();
  auto s0 = f.inhibits.stats();
  // No other inhibit: 0 -> 1 takes the write lock and sets IRQWIN (a flip: broadcast).
  f.inhibits.inc_or_dec_irq_window_req(true);
  // 1 -> 2: write lock, but no update and no trace.
  f.inhibits.inc_or_dec_irq_window_req(true);
  EXPECT_EQ(f.inhibits.reasons(), 0x100ul);
  f.inhibits.inc_or_dec_irq_window_req(false);  // 2 -> 1
  EXPECT_EQ(f.inhibits.reasons(), 0x100ul);
  f.inhibits.inc_or_dec_irq_window_req(false);  // 1 -> 0: clear
  EXPECT_EQ(f.inhibits.reasons(), 0ul);
  EXPECT_EQ(Bodies(f.sink), (std::vector<std::string>{"set reason=8, inhibits=0x100 IRQWIN",
                                                      "cleared reason=8, inhibits=0x0"}));
  auto s1 = f.inhibits.stats();
  EXPECT_EQ(s1.write_locks - s0.write_locks, 4u);
  EXPECT_EQ(s1.broadcasts - s0.broadcasts, 2u);

  // With PIT_REINJ set, counting is read-lock only and invisible in the trace.
  f.inhibits.set(InhibitReason::kPitReinj);
  f.sink.clear_ring();
  s0 = f.inhibits.stats();
  f.inhibits.inc_or_dec_irq_window_req(true);
  EXPECT_EQ(f.inhibits.nr_irq_window_req(), 1);
  EXPECT_EQ(f.inhibits.reasons(), 0x200ul);  // IRQWIN bit lazily stale
  s1 = f.inhibits.stats();
  EXPECT_EQ(s1.write_locks - s0.write_locks, 0u);
  EXPECT_EQ(s1.read_locks - s0.read_locks, 1u);
  EXPECT_TRUE(Bodies(f.sink).empty());
  // Clearing PIT_REINJ re-derives IRQWIN from the count: AVIC stays inhibited.
  f.inhibits.clear(InhibitReason::kPitReinj);
  EXPECT_EQ(f.inhibits.reasons(), 0x100ul);
  EXPECT_EQ(Bodies(f.sink), (std::vector<std::string>{"cleared reason=9, inhibits=0x0",
                                                      "set reason=8, inhibits=0x100 IRQWIN"}));
}

TEST(ApicvInhibits, PerVcpuNestedOnSvmOnly) {
  Fixture svm;
  svm.inhibits.init(true);
  svm.inhibits.clear(InhibitReason::kAbsent);
  EXPECT_TRUE(svm.inhibits.vcpu_apicv_activated(0));
  svm.inhibits.set_vcpu_guest_mode(0, true);
  EXPECT_FALSE(svm.inhibits.vcpu_apicv_activated(0));
  EXPECT_TRUE(svm.inhibits.vcpu_apicv_activated(1));
  EXPECT_TRUE(svm.inhibits.apicv_activated());  // VM-wide mask unaffected

  Fixture vmx(Vendor::kVmx);
  vmx.inhibits.init(true);
  vmx.inhibits.clear(InhibitReason::kAbsent);
  vmx.inhibits.set_vcpu_guest_mode(0, true);
  EXPECT_TRUE(vmx.inhibits.vcpu_apicv_activated(0));
  // Out-of-range vCPU ids are rejected, not UB.
  EXPECT_FALSE(vmx.inhibits.vcpu_apicv_activated(-1));
  EXPECT_FALSE(vmx.inhibits.vcpu_apicv_activated(2));
}

TEST(ApicvInhibits, UpdateVcpuApicvReportsChanges) {
  Fixture f;
  f.inhibits.init(true);                               // ABSENT set, apicv_active optimistic
  EXPECT_TRUE(f.inhibits.update_vcpu_apicv(0, true));  // becomes inactive
  EXPECT_FALSE(f.inhibits.vcpu_apicv_active(0));
  EXPECT_FALSE(f.inhibits.update_vcpu_apicv(0, true));  // no change
  f.inhibits.clear(InhibitReason::kAbsent);
  EXPECT_TRUE(f.inhibits.update_vcpu_apicv(0, true));
  EXPECT_TRUE(f.inhibits.vcpu_apicv_active(0));
  // A hardware-disabled LAPIC never runs with APICv active.
  EXPECT_TRUE(f.inhibits.update_vcpu_apicv(0, false));
  EXPECT_FALSE(f.inhibits.vcpu_apicv_active(0));
}

}  // namespace
}  // namespace apicv::virt

namespace apicv::virt {
namespace {

// lock_stat-style accounting: a reader that arrives while a writer holds apicv_update_lock (here
// the writer is stuck in the APICV_UPDATE kick-and-wait behind a vCPU still in guest mode) is
// counted as contended and its wait is timed; uncontended acquisitions are not.
TEST(ApicvInhibits, ContendedAcquisitionsAreCountedAndTimed) {
  Fixture f;
  f.inhibits.init(true);
  f.inhibits.clear(InhibitReason::kAbsent);
  const auto s0 = f.inhibits.stats();
  EXPECT_EQ(s0.write_contended + s0.read_contended, 0u);
  EXPECT_EQ(s0.lock_wait_ns, 0u);

  f.vcpus.vcpu(0).enter_guest_mode();
  std::thread writer([&] { f.inhibits.set(InhibitReason::kApicBaseModified); });
  // The writer has the lock once it has kicked vCPU 0; it now waits for vCPU 0 to exit.
  while (!f.vcpus.vcpu(0).exit_requested()) std::this_thread::yield();
  std::atomic<bool> reader_started{false};
  std::thread reader([&] {
    reader_started.store(true);
    f.inhibits.update_vcpu_apicv(1, true);
  });
  while (!reader_started.load()) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  f.vcpus.vcpu(0).exit_guest_mode();
  writer.join();
  reader.join();

  const auto s1 = f.inhibits.stats();
  EXPECT_EQ(s1.write_contended, 0u);
  EXPECT_EQ(s1.read_contended, 1u);
  // The reader waited at least as long as vCPU 0 stayed in the guest after it started.
  EXPECT_GE(s1.lock_wait_ns, 50'000'000u);
  EXPECT_EQ(s1.write_locks - s0.write_locks, 1u);
  EXPECT_EQ(s1.read_locks - s0.read_locks, 1u);
}

// Spec §2.3 ordering: when "inhibited at all" flips, kvm_make_all_cpus_request(APICV_UPDATE)
// kicks and waits *before* the new mask is stored. A vCPU that sees its exit request must still
// read the old mask; once it has exited, the writer publishes the new one, and the vCPU applying
// the request (under the read lock) computes its state from the new mask.
TEST(ApicvInhibits, NewMaskIsPublishedOnlyAfterTheKickAndWait) {
  Fixture f;
  f.inhibits.init(true);
  f.inhibits.clear(InhibitReason::kAbsent);
  ASSERT_EQ(f.inhibits.reasons(), 0u);
  ASSERT_TRUE(f.inhibits.update_vcpu_apicv(0, true) == false);  // already active
  (void)f.vcpus.vcpu(0).check_request(kReqApicvUpdate);

  f.vcpus.vcpu(0).enter_guest_mode();
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    f.inhibits.set(InhibitReason::kPitReinj);  // 0 -> 0x200: a flip, so a broadcast
    writer_done.store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool kicked = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f.vcpus.vcpu(0).exit_requested()) {
      kicked = true;
      break;
    }
    std::this_thread::yield();
  }
  EXPECT_TRUE(kicked);
  if (kicked) {
    // vCPU 0 is "still in the guest" and has just been asked to leave: old mask, request posted,
    // and the writer is waiting for the exit.
    EXPECT_EQ(f.inhibits.reasons(), 0u);
    EXPECT_TRUE(f.inhibits.apicv_activated());
    EXPECT_TRUE(f.vcpus.vcpu(0).test_request(kReqApicvUpdate));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(writer_done.load());
    EXPECT_EQ(f.inhibits.reasons(), 0u);
  }
  // vCPU 0 exits, then applies APICV_UPDATE; the read lock orders it after the publish.
  f.vcpus.vcpu(0).exit_guest_mode();
  ASSERT_TRUE(f.vcpus.vcpu(0).check_request(kReqApicvUpdate));
  EXPECT_TRUE(f.inhibits.update_vcpu_apicv(0, true));
  EXPECT_FALSE(f.inhibits.vcpu_apicv_active(0));
  writer.join();
  EXPECT_EQ(f.inhibits.reasons(), InhibitBit(InhibitReason::kPitReinj));
  EXPECT_EQ(f.inhibits.reasons(), 0x200u);
}

}  // namespace
}  // namespace apicv::virt
