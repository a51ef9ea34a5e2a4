// CI runs the inhibit trace parser fuzzer's contract (fuzz/inhibit_trace_ops.h) here on fixed
// inputs, since it builds with g++ and never runs libFuzzer: trace files are untrusted user input.
#include "../../fuzz/inhibit_trace_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(InhibitTrace, RunInhibitTraceInput, "inhibit_trace", 6000000, 2000, 200)

}  // namespace
}  // namespace apicv::fuzz
