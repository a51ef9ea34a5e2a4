// CI runs the local APIC fuzzer's decoder and invariants (fuzz/lapic_ops.h) here on fixed inputs,
// since it builds with g++ and never runs libFuzzer; a failure names the seed and the op, and the
// libFuzzer target reproduces it (docs/fuzzing.md).
#include <gtest/gtest.h>

#include "../../fuzz/lapic_ops.h"
#include "../../fuzz/replay.h"

namespace apicv::fuzz {
namespace {

TEST(LapicHostileReplay, FixedSeedsKeepEveryInvariant) {
  EXPECT_EQ(ReplayFixedSeeds(RunLapicOps, 1000000, 2000, 1600), "");  // about 200 ops each
}

TEST(LapicHostileReplay, ShortAndEmptyInputs) {
  EXPECT_EQ(ReplayTruncations(RunLapicOps, 7, 64), "");
}

TEST(LapicHostileReplay, SeedCorpus) {
  int files = 0;
  EXPECT_EQ(ReplayCorpus(RunLapicOps, "lapic", &files), "");
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
