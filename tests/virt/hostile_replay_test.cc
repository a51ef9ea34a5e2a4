// CI runs the whole-VM (ApicvVm) fuzzer's decoder and invariants (fuzz/apicv_vm_ops.h) here on
// fixed inputs (about 200 ops each), since it builds with g++ and never runs libFuzzer; a failure
// names the seed and the op, and the libFuzzer target reproduces it (docs/fuzzing.md).
#include "../../fuzz/apicv_vm_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(ApicvVm, RunApicvVmOps, "apicv_vm", 5000000, 1000, 1200)

}  // namespace
}  // namespace apicv::fuzz
