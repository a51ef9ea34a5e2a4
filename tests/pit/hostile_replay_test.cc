// CI runs the 8254 PIT fuzzer's decoder and invariants (fuzz/pit_ops.h) here on fixed inputs, since
// it builds with g++ and never runs libFuzzer; a failure names the seed and the op, and the
// libFuzzer target reproduces it (docs/fuzzing.md).
#include <gtest/gtest.h>

#include "../../fuzz/pit_ops.h"
#include "../../fuzz/replay.h"

namespace apicv::fuzz {
namespace {

TEST(PitHostileReplay, FixedSeedsKeepEveryInvariant) {
  EXPECT_EQ(ReplayFixedSeeds(RunPitOps, 4000000, 2000, 800), "");  // about 200 ops each
}

TEST(PitHostileReplay, ShortAndEmptyInputs) {
  EXPECT_EQ(ReplayTruncations(RunPitOps, 7, 64), "");
}

TEST(PitHostileReplay, SeedCorpus) {
  int files = 0;
  EXPECT_EQ(ReplayCorpus(RunPitOps, "pit", &files), "");
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
