// libFuzzer target: hostile instruction streams on apicv's software CPU (fuzz/cpu_ops.h).
#include <cstdio>
#include <cstdlib>

#include "cpu_ops.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string failure = apicv::fuzz::RunCpuOps(data, size);
  if (!failure.empty()) {
    std::fprintf(stderr, "cpu invariant broken: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
