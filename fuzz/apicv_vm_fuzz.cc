// libFuzzer target: hostile guest against the whole ApicvVm (IrqChip entry points, several vCPUs).
// The op decoder and the invariants live in apicv_vm_ops.h, shared with the replay gtest; any
// violated invariant aborts so libFuzzer saves the input. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "apicv_vm_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunApicvVmOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "apicv_vm invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
