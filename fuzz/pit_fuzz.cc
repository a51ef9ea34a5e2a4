// libFuzzer target: hostile guest against the 8254 PIT (0x40-0x43, 0x61, gates, reinjection, time).
// The op decoder and the invariants live in pit_ops.h, shared with the replay gtest; any
// violated invariant aborts so libFuzzer saves the input. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "pit_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunPitOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "pit invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
