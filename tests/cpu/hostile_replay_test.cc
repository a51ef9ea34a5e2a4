// CI runs the software CPU's fuzzer harness (fuzz/cpu_ops.h) on fixed pseudo-random instruction
// streams, every truncation of one, and the committed corpus: hostile guest code never crashes the
// host, never runs past its budget and never leaves an impossible state (docs/fuzzing.md).
#include "../../fuzz/cpu_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(Cpu, RunCpuOps, "cpu", 9000000, 600, 512)

}  // namespace
}  // namespace apicv::fuzz
