// CI replays the perf text reader's fuzz contract (fuzz/perf_text_ops.h) on fixed inputs and the
// seed corpus (perf script, perf trace, perf kvm stat lines), since CI builds with g++ and never
// runs libFuzzer: pasted perf output is untrusted user input.
#include "../../fuzz/perf_text_ops.h"
#include "../../fuzz/replay_gtest.h"

namespace apicv::fuzz {
namespace {

APICV_HOSTILE_REPLAY_TESTS(PerfText, RunPerfTextInput, "perf_text", 7000000, 2000, 300)

}  // namespace
}  // namespace apicv::fuzz
