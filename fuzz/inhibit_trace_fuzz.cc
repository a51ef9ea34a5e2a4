// libFuzzer target: arbitrary bytes into the kvm_apicv_inhibit_changed ftrace line parser
// (src/trace/inhibit_trace_parser). Besides the sanitizers it checks the parser's contract:
// over-long lines are refused, a refusal carries "column N: ...", an accepted line has a
// consistent record. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "inhibit_trace_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunInhibitTraceInput(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "inhibit_trace invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
