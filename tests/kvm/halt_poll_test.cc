// Adaptive halt polling as KVM's kvm_vcpu_halt(): grow x2 from 10 us up to the maximum on short
// halts, shrink to 0 (default shrink factor) on long or invalid wake-ups.
#include "backend/kvm/halt_poll.h"

#include <gtest/gtest.h>

namespace apicv::kvm {
namespace {

TEST(HaltPoll, GrowsFromStartValueAndCaps) {
  HaltPollController hp(200000);
  EXPECT_EQ(hp.poll_ns(), 0u);
  hp.Update(50000, true);  // blocked 50 us < max: grow
  EXPECT_EQ(hp.poll_ns(), 10000u);
  hp.Update(50000, true);
  EXPECT_EQ(hp.poll_ns(), 20000u);
  hp.Update(50000, true);
  EXPECT_EQ(hp.poll_ns(), 40000u);
  hp.Update(50000, true);
  EXPECT_EQ(hp.poll_ns(), 80000u);
  hp.Update(150000, true);
  EXPECT_EQ(hp.poll_ns(), 160000u);
  hp.Update(190000, true);
  EXPECT_EQ(hp.poll_ns(), 190000u <= 160000u ? 160000u : 200000u);  // capped at max
}

TEST(HaltPoll, WakeWithinWindowKeepsIt) {
  HaltPollController hp(200000);
  hp.Update(1000, true);
  ASSERT_EQ(hp.poll_ns(), 10000u);
  hp.Update(9000, true);  // woke while polling
  EXPECT_EQ(hp.poll_ns(), 10000u);
}

TEST(HaltPoll, LongOrInvalidWakeShrinksToZero) {
  HaltPollController hp(200000);
  hp.Update(1000, true);
  hp.Update(15000, true);
  ASSERT_EQ(hp.poll_ns(), 20000u);
  hp.Update(300000, true);  // longer than max
  EXPECT_EQ(hp.poll_ns(), 0u);
  hp.Update(300000, true);  // window already 0 and halt too long: no growth
  EXPECT_EQ(hp.poll_ns(), 0u);
  hp.Update(1000, true);
  ASSERT_EQ(hp.poll_ns(), 10000u);
  hp.Update(100, false);
  EXPECT_EQ(hp.poll_ns(), 0u);
}

TEST(HaltPoll, ZeroMaximumDisablesPolling) {
  HaltPollController hp(0);
  hp.Update(10, true);
  EXPECT_EQ(hp.poll_ns(), 0u);
}

}  // namespace
}  // namespace apicv::kvm
