// libFuzzer target: hostile guest against the I/O APIC (IOREGSEL/IOWIN, set_irq, EOI, storm guard).
// The op decoder and the invariants live in ioapic_ops.h, shared with the replay gtest; any
// violated invariant aborts so libFuzzer saves the input. See docs/fuzzing.md.
#include <cstdio>
#include <cstdlib>

#include "ioapic_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunIoApicOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "ioapic invariant violated: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
