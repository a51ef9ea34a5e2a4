// CI runs the local APIC fuzzer's decoder and invariants (fuzz/lapic_ops.h) here on fixed inputs
// (about 200 ops each), since it builds with g++ and never runs libFuzzer; a failure names the seed
// and the op, and the libFuzzer target reproduces it (docs/fuzzing.md).
#include "../../fuzz/lapic_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(Lapic, RunLapicOps, "lapic", 1000000, 2000, 1600)

}  // namespace
}  // namespace apicv::fuzz
