// libFuzzer target: arbitrary bytes as a whole trace file into the text reader with perf's
// dialects (src/trace/perf_text, src/trace/inhibit_trace_compare). See fuzz/perf_text_ops.h for
// the contract and docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "perf_text_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunPerfTextInput(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "perf_text invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
