// libFuzzer target: hostile guest against the 8259A pair (0x20/0x21/0xA0/0xA1/ELCR, set_irq, INTA).
// The op decoder and the invariants live in pic_ops.h, shared with the replay gtest; any
// violated invariant aborts so libFuzzer saves the input. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "pic_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunPicOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "pic invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
