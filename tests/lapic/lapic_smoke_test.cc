#include <gtest/gtest.h>

#include "devices/lapic.h"

namespace apicv {
namespace {
TEST(LapicSmoke, Constructs) {
  Lapic apic(0, true, LapicConfig{});
  EXPECT_EQ(apic.mode(), ApicMode::kXApic);
}
}  // namespace
}  // namespace apicv
