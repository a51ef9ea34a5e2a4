// CI runs the I/O APIC fuzzer's decoder and invariants (fuzz/ioapic_ops.h) here on fixed inputs,
// since it builds with g++ and never runs libFuzzer; a failure names the seed and the op, and the
// libFuzzer target reproduces it (docs/fuzzing.md).
#include <gtest/gtest.h>

#include "../../fuzz/ioapic_ops.h"
#include "../../fuzz/replay.h"

namespace apicv::fuzz {
namespace {

TEST(IoApicHostileReplay, FixedSeedsKeepEveryInvariant) {
  EXPECT_EQ(ReplayFixedSeeds(RunIoApicOps, 2000000, 2000, 1200), "");  // about 200 ops each
}

TEST(IoApicHostileReplay, ShortAndEmptyInputs) {
  EXPECT_EQ(ReplayTruncations(RunIoApicOps, 7, 64), "");
}

TEST(IoApicHostileReplay, SeedCorpus) {
  int files = 0;
  EXPECT_EQ(ReplayCorpus(RunIoApicOps, "ioapic", &files), "");
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace apicv::fuzz
