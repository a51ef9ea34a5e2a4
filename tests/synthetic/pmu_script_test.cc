// The scripted pmu guest against ApicvVm. Expected values come from seed 002 and spec §8 (issue
// 5): with the 2023 immediate-delivery path (legacy) one overflow by an emulated instruction gives
// two PMIs and LVTPC stays unmasked; the fix (current) gives exactly one and masks LVTPC on
// delivery for Intel-compatible guests only (a16eb25b09c0, 49ff3b4aec51), never for AMD.
#include "backend/synthetic/pmu_script.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace apicv::synthetic {
namespace {

PmuScriptResult RunScript(virt::PmiDelivery d, virt::PmuVendor v, uint32_t period = 16) {
  PmuScriptConfig c;
  c.delivery = d;
  c.vendor = v;
  c.period = period;
  return RunPmuScript(c);
}

TEST(PmuScript, IntelLegacyDeliversTwoPmisForOneOverflowAndLeavesLvtpcUnmasked) {
  const PmuScriptResult r = RunScript(virt::PmiDelivery::kLegacy, virt::PmuVendor::kIntel);
  EXPECT_TRUE(r.passed()) << (r.failures.empty() ? "" : r.failures[0]);
  EXPECT_EQ(r.overflows, 1u);
  EXPECT_EQ(r.pmis, 2u);
  EXPECT_EQ(r.nmis_injected, 2u);
  EXPECT_EQ(r.lvtpc_deliveries, 2u);
  // The second handler run finds GLOBAL_STATUS already acknowledged by the first.
  EXPECT_EQ(r.guest_overflows, 1u);
  EXPECT_TRUE(r.global_status_seen);
  EXPECT_FALSE(r.lvtpc_masked_after_pmi);
}

TEST(PmuScript, IntelCurrentDeliversExactlyOnePmiAndMasksLvtpc) {
  const PmuScriptResult r = RunScript(virt::PmiDelivery::kCurrent, virt::PmuVendor::kIntel);
  EXPECT_TRUE(r.passed()) << (r.failures.empty() ? "" : r.failures[0]);
  EXPECT_EQ(r.overflows, 1u);
  EXPECT_EQ(r.pmis, 1u);
  EXPECT_EQ(r.nmis_injected, 1u);
  EXPECT_EQ(r.lvtpc_deliveries, 1u);
  EXPECT_EQ(r.guest_overflows, 1u);
  EXPECT_TRUE(r.global_status_seen);
  EXPECT_TRUE(r.lvtpc_masked_after_pmi);
}

TEST(PmuScript, AmdCurrentDeliversOnePmiWithoutMaskingLvtpc) {
  const PmuScriptResult r = RunScript(virt::PmiDelivery::kCurrent, virt::PmuVendor::kAmd);
  EXPECT_TRUE(r.passed()) << (r.failures.empty() ? "" : r.failures[0]);
  EXPECT_EQ(r.overflows, 1u);
  EXPECT_EQ(r.pmis, 1u);
  EXPECT_TRUE(r.global_status_seen);  // PerfCtr0 bit 47 clear in the handler
  EXPECT_FALSE(r.lvtpc_masked_after_pmi);
}

TEST(PmuScript, AmdLegacyAlsoDeliversTwoPmis) {
  // The double delivery is the overflow path's, not the vendor's.
  const PmuScriptResult r = RunScript(virt::PmiDelivery::kLegacy, virt::PmuVendor::kAmd);
  EXPECT_EQ(r.pmis, 2u);
  EXPECT_FALSE(r.lvtpc_masked_after_pmi);
}

// The counter is armed at -N and GLOBAL_CTRL := 1 is itself a counted emulated instruction (its
// exit retires after the write enabled the counter), so the N-th counted instruction is port
// write N-1: the first PMI arrives with N-1 port writes done.
TEST(PmuScript, FirstPmiArrivesAfterPeriodMinusOnePortWrites) {
  for (uint32_t n : {2u, 16u, 1000u}) {
    const PmuScriptResult r = RunScript(virt::PmiDelivery::kCurrent, virt::PmuVendor::kIntel, n);
    EXPECT_EQ(r.outs_at_first_pmi, n - 1) << "period " << n;
    EXPECT_EQ(r.pmis, 1u) << "period " << n;
  }
}

TEST(PmuScript, SameConfigurationGivesTheSameResult) {
  const PmuScriptResult a = RunScript(virt::PmiDelivery::kLegacy, virt::PmuVendor::kIntel, 100);
  const PmuScriptResult b = RunScript(virt::PmiDelivery::kLegacy, virt::PmuVendor::kIntel, 100);
  EXPECT_EQ(a.exits, b.exits);
  EXPECT_EQ(a.pmis, b.pmis);
  EXPECT_EQ(a.nmis_injected, b.nmis_injected);
  EXPECT_EQ(a.outs_at_first_pmi, b.outs_at_first_pmi);
  EXPECT_EQ(a.lvtpc_masked_after_pmi, b.lvtpc_masked_after_pmi);
}

TEST(PmuScript, RejectsPeriodOutsideTheGuestsBounds) {
  PmuScriptConfig c;
  c.period = 1;
  EXPECT_THROW(RunPmuScript(c), std::invalid_argument);
  c.period = 1000001;
  EXPECT_THROW(RunPmuScript(c), std::invalid_argument);
}

}  // namespace
}  // namespace apicv::synthetic
