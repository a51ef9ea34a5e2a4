// libFuzzer target: hostile guest against the local APIC (xAPIC MMIO, x2APIC MSRs, APIC_BASE,
// timer, EOI, accept_irq). The op decoder and the invariants live in lapic_ops.h, shared with the
// replay gtest; any violated invariant aborts so libFuzzer saves the input. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "lapic_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunLapicOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "lapic invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
