// Request bits, vCPU mode transitions and kvm_make_all_cpus_request() semantics (WAIT, NO_WAKEUP,
// kicks only for vCPUs in guest mode), single-threaded and with real vCPU threads.
#include "virt/vcpu_request.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace apicv::virt {
namespace {

TEST(VcpuRequests, MakeCheckClear) {
  VcpuRequests r;
  EXPECT_FALSE(r.requests_pending());
  r.make_request(kReqEvent);
  r.make_request(kReqPmi);
  EXPECT_TRUE(r.test_request(kReqPmi));
  EXPECT_TRUE(r.check_request(kReqPmi));
  EXPECT_FALSE(r.check_request(kReqPmi));  // consumed
  EXPECT_TRUE(r.requests_pending());
  EXPECT_EQ(r.pending_mask(), 1ull << kReqEvent);
  EXPECT_TRUE(r.check_request(kReqEvent));
  EXPECT_FALSE(r.requests_pending());
}

TEST(VcpuRequests, KickOnlyMovesInGuestToExiting) {
  VcpuRequests r;
  EXPECT_EQ(r.exiting_guest_mode(), VcpuMode::kOutsideGuestMode);
  EXPECT_EQ(r.mode(), VcpuMode::kOutsideGuestMode);
  r.enter_guest_mode();
  EXPECT_EQ(r.exiting_guest_mode(), VcpuMode::kInGuestMode);
  EXPECT_TRUE(r.exit_requested());
  EXPECT_EQ(r.exiting_guest_mode(), VcpuMode::kExitingGuestMode);  // idempotent
  const uint64_t e = r.exit_count();
  r.exit_guest_mode();
  EXPECT_EQ(r.mode(), VcpuMode::kOutsideGuestMode);
  EXPECT_EQ(r.exit_count(), e + 1);
}

TEST(VcpuRequestSet, FlagsOfApicvUpdate) {
  EXPECT_EQ(RequestFlagsOf(kReqApicvUpdate), kRequestWait | kRequestNoWakeup);
  EXPECT_EQ(RequestFlagsOf(kReqEvent), kRequestNone);
}

TEST(VcpuRequestSet, BroadcastSetsBitsAndKicksNobodyOutsideGuest) {
  std::vector<int> kicked;
  VcpuRequestSet set(3, [&](int v) { kicked.push_back(v); });
  EXPECT_EQ(set.make_all_cpus_request(kReqApicvUpdate), 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(set.vcpu(i).test_request(kReqApicvUpdate));
  EXPECT_TRUE(kicked.empty());
  EXPECT_EQ(set.broadcasts(), 1u);
  EXPECT_EQ(set.kicks(), 0u);
}

TEST(VcpuRequestSet, NoWakeupLeavesBlockedVcpusAlone) {
  std::vector<int> woken;
  VcpuRequestSet set(2, {}, [&](int v) { woken.push_back(v); });
  set.vcpu(1).set_blocked(true);
  set.make_all_cpus_request(kReqApicvUpdate);  // NO_WAKEUP
  EXPECT_TRUE(woken.empty());
  set.make_all_cpus_request(kReqEvent);  // wakes
  EXPECT_EQ(woken, std::vector<int>{1});
  set.make_request_and_kick(1, kReqPmi);
  EXPECT_EQ(woken, (std::vector<int>{1, 1}));
}

TEST(VcpuRequestSet, NonWaitRequestKicksInGuestVcpuWithoutWaiting) {
  std::vector<int> kicked;
  VcpuRequestSet set(2, [&](int v) { kicked.push_back(v); });
  set.vcpu(1).enter_guest_mode();
  EXPECT_EQ(set.make_all_cpus_request(kReqEvent), 1);  // returns although vCPU 1 stays in guest
  EXPECT_EQ(kicked, std::vector<int>{1});
  EXPECT_EQ(set.vcpu(1).mode(), VcpuMode::kExitingGuestMode);
  // A second non-WAIT request does not kick a vCPU already EXITING.
  EXPECT_EQ(set.make_all_cpus_request(kReqEvent), 0);
}

TEST(VcpuRequestSet, WaitBlocksUntilKickedVcpuExits) {
  VcpuRequestSet set(2);
  std::atomic<bool> in_guest{false};
  std::atomic<bool> saw_request{false};
  std::thread vcpu([&] {
    VcpuRequests& r = set.vcpu(1);
    r.enter_guest_mode();
    in_guest.store(true);
    while (!r.exit_requested()) std::this_thread::yield();
    r.exit_guest_mode();
    saw_request.store(r.check_request(kReqApicvUpdate));
  });
  while (!in_guest.load()) std::this_thread::yield();
  EXPECT_EQ(set.make_all_cpus_request(kReqApicvUpdate), 1);
  // Returned only after the exit: mode is OUTSIDE now.
  EXPECT_EQ(set.vcpu(1).mode(), VcpuMode::kOutsideGuestMode);
  vcpu.join();
  EXPECT_TRUE(saw_request.load());
  EXPECT_EQ(set.kicks(), 1u);
}

TEST(VcpuRequestSet, ConcurrentWaitBroadcastsTerminateAndAreConsumed) {
  // vCPU threads loop enter/exit with the entry-time re-check while a requester broadcasts with
  // WAIT: every broadcast returns (no lost wakeup of the waiter) and the requests get consumed.
  constexpr int kRounds = 2000;
  VcpuRequestSet set(2);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> handled{0};
  std::vector<std::thread> vcpus;
  for (int v = 0; v < 2; ++v) {
    vcpus.emplace_back([&, v] {
      VcpuRequests& r = set.vcpu(v);
      while (!stop.load()) {
        if (r.check_request(kReqApicvUpdate)) handled.fetch_add(1);
        r.enter_guest_mode();
        if (!r.requests_pending()) {
          for (int i = 0; i < 50 && !r.exit_requested(); ++i) std::this_thread::yield();
        }
        r.exit_guest_mode();
      }
      if (r.check_request(kReqApicvUpdate)) handled.fetch_add(1);
    });
  }
  for (int i = 0; i < kRounds; ++i) set.make_all_cpus_request(kReqApicvUpdate);
  stop.store(true);
  for (auto& t : vcpus) t.join();
  // Requests coalesce (one bit), so at most kRounds per vCPU, and every vCPU saw the last one.
  EXPECT_GE(handled.load(), 2u);
  EXPECT_LE(handled.load(), 2u * kRounds);
  EXPECT_FALSE(set.vcpu(0).requests_pending());
  EXPECT_FALSE(set.vcpu(1).requests_pending());
}

TEST(VcpuRequestSet, RejectsUnsupportedSizes) {
  EXPECT_THROW(VcpuRequestSet(0), std::invalid_argument);
  EXPECT_THROW(VcpuRequestSet(100000), std::invalid_argument);
}

}  // namespace
}  // namespace apicv::virt
