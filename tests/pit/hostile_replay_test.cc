// CI runs the 8254 PIT fuzzer's decoder and invariants (fuzz/pit_ops.h) here on fixed inputs
// (about 200 ops each), since it builds with g++ and never runs libFuzzer; a failure names the seed
// and the op, and the libFuzzer target reproduces it (docs/fuzzing.md).
#include "../../fuzz/pit_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(Pit, RunPitOps, "pit", 4000000, 2000, 800)

}  // namespace
}  // namespace apicv::fuzz
