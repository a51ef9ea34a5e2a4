// CI runs the I/O APIC fuzzer's decoder and invariants (fuzz/ioapic_ops.h) here on fixed inputs
// (about 200 ops each), since it builds with g++ and never runs libFuzzer; a failure names the seed
// and the op, and the libFuzzer target reproduces it (docs/fuzzing.md).
#include "../../fuzz/ioapic_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(IoApic, RunIoApicOps, "ioapic", 2000000, 2000, 1200)

}  // namespace
}  // namespace apicv::fuzz
