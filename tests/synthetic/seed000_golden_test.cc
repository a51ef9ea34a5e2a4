// Golden trace of seed 000 on the synthetic backend: the deterministic runs (fixed seed, FakeClock,
// seed 000's host CPUs) must reproduce the committed trace byte for byte, so a refactor of the
// virtualization layer (issue 11: ApicvVm split along KVM's files) cannot change behaviour
// unnoticed. The golden files are recordings of this code, not expectations from the spec: the
// spec-derived checks of the same runs are in seed000_test.cc. A deliberate behaviour change
// regenerates them with APICV_UPDATE_GOLDEN=1 and reviews the diff.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "backend/synthetic/synthetic_vm.h"
#include "devices/clock.h"
#include "trace/trace_sink.h"

#ifndef APICV_SOURCE_DIR
#error "APICV_SOURCE_DIR must name the source tree (set by CMake for the golden files)"
#endif

namespace apicv::synthetic {
namespace {

std::string RunSeed000(virt::IrqWinStrategy strategy) {
  FakeClock clock(42212649000000ull);
  trace::TraceSink sink(clock);
  sink.set_ring_capacity(100000);
  SyntheticConfig c;
  c.nr_vcpus = 4;
  c.irqwin = strategy;
  c.host_cpus = {245, 244, 263, 10};
  SyntheticVm vm(c, &sink);
  VcpuScript script;
  vm.run_deterministic(7, 400, script, &clock, 5000);
  std::string out;
  for (const auto& l : sink.ring_lines()) out += l + "\n";
  return out;
}

void CompareWithGolden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(APICV_SOURCE_DIR) + "/tests/data/" + name;
  if (const char* u = std::getenv("APICV_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(path, std::ios::binary) << actual;
    GTEST_SKIP() << "rewrote " << path;
  }
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(f) << "missing golden file " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string golden = ss.str();
  ASSERT_GT(golden.size(), 0u);
  if (golden == actual) return;
  // Point at the first differing line.
  std::istringstream g(golden), a(actual);
  std::string gl, al;
  for (int line = 1;; ++line) {
    const bool gok = static_cast<bool>(std::getline(g, gl));
    const bool aok = static_cast<bool>(std::getline(a, al));
    if (!gok && !aok) break;
    if (gl != al || gok != aok) {
      FAIL() << name << " line " << line << "\n  golden: " << (gok ? gl : "<end>")
             << "\n  actual: " << (aok ? al : "<end>");
    }
  }
  FAIL() << name << ": byte difference (line endings?)";
}

TEST(Seed000Golden, LegacyRunIsByteIdentical) {
  const std::string t = RunSeed000(virt::IrqWinStrategy::kLegacy);
  ASSERT_NE(t.find("kvm_apicv_inhibit_changed: set reason=8"), std::string::npos);
  CompareWithGolden("seed000_synthetic_legacy.golden", t);
}

TEST(Seed000Golden, CountedRunIsByteIdentical) {
  const std::string t = RunSeed000(virt::IrqWinStrategy::kCounted);
  ASSERT_NE(t.find("kvm_apicv_inhibit_changed: set reason=9"), std::string::npos);
  CompareWithGolden("seed000_synthetic_counted.golden", t);
}

TEST(Seed000Golden, TwoRunsAgree) {
  EXPECT_EQ(RunSeed000(virt::IrqWinStrategy::kLegacy), RunSeed000(virt::IrqWinStrategy::kLegacy));
}

}  // namespace
}  // namespace apicv::synthetic
