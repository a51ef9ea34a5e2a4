// CI runs the 8259A PIC fuzzer's decoder and invariants (fuzz/pic_ops.h) here on fixed inputs,
// since it builds with g++ and never runs libFuzzer; a failure names the seed and the op, and the
// libFuzzer target reproduces it (docs/fuzzing.md).
#include <gtest/gtest.h>

#include "../../fuzz/pic_ops.h"
#include "../../fuzz/replay.h"

namespace apicv::fuzz {
namespace {

TEST(PicHostileReplay, FixedSeedsKeepEveryInvariant) {
  EXPECT_EQ(ReplayFixedSeeds(RunPicOps, 3000000, 2000, 800), "");  // about 200 ops each
}

TEST(PicHostileReplay, ShortAndEmptyInputs) {
  EXPECT_EQ(ReplayTruncations(RunPicOps, 7, 64), "");
}

TEST(PicHostileReplay, SeedCorpus) {
  int files = 0;
  EXPECT_EQ(ReplayCorpus(RunPicOps, "pic", &files), "");
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
