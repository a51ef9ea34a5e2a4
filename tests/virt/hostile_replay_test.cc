// CI runs the whole-VM (ApicvVm) fuzzer's decoder and invariants (fuzz/apicv_vm_ops.h) here on
// fixed inputs, since it builds with g++ and never runs libFuzzer; a failure names the seed and the
// op, and the libFuzzer target reproduces it (docs/fuzzing.md).
#include <gtest/gtest.h>

#include "../../fuzz/apicv_vm_ops.h"
#include "../../fuzz/replay.h"

namespace apicv::fuzz {
namespace {

TEST(ApicvVmHostileReplay, FixedSeedsKeepEveryInvariant) {
  EXPECT_EQ(ReplayFixedSeeds(RunApicvVmOps, 5000000, 1000, 1200), "");  // about 200 ops each
}

TEST(ApicvVmHostileReplay, ShortAndEmptyInputs) {
  EXPECT_EQ(ReplayTruncations(RunApicvVmOps, 7, 64), "");
}

TEST(ApicvVmHostileReplay, SeedCorpus) {
  int files = 0;
  EXPECT_EQ(ReplayCorpus(RunApicvVmOps, "apicv_vm", &files), "");
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
