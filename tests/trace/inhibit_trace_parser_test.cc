// ParseResult::column (the 1-based error column `apicv trace` prints as FILE:LINE:COLUMN) and the
// line shapes `apicv trace` meets in host traces: trace-cmd report lines without a flags column,
// newer reason numbers, mask bits without a name. Columns are counted by hand.
#include "trace/inhibit_trace_parser.h"

#include <gtest/gtest.h>

#include <string>

namespace apicv::trace {
namespace {

// "  a-1 [000] 1.000000: kvm_apicv_inhibit_changed: " is 49 characters.
const std::string kPrefix = "  a-1 [000] 1.000000: kvm_apicv_inhibit_changed: ";

TEST(InhibitTraceParserColumn, ColumnMatchesTheErrorText) {
  struct Case {
    std::string line;
    size_t column;
  };
  const Case cases[] = {
      {kPrefix + "maybe reason=8, inhibits=0x0", 50},                   // at the body
      {kPrefix + "set reason=x, inhibits=0x0", 50 + 11},                // after "set reason="
      {kPrefix + "set reason=8, inhibits=0x300 IRQWIN", 50 + 29},       // the names
      {kPrefix + "set reason=8, inhibits=0x100 IRQWIN|NOPE", 50 + 36},  // "NOPE"
      {"no cpu column here", 1},
  };
  for (const Case& c : cases) {
    const ParseResult r = ParseInhibitChangedLine(c.line);
    ASSERT_FALSE(r.ok) << c.line;
    EXPECT_EQ(r.column, c.column) << c.line << " -> " << r.error;
    EXPECT_EQ(r.error.rfind("column " + std::to_string(c.column) + ": ", 0), 0u) << r.error;
  }
}

TEST(InhibitTraceParserColumn, SuccessHasNoColumn) {
  const ParseResult r = ParseInhibitChangedLine(kPrefix + "cleared reason=2, inhibits=0x0");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.column, 0u);
  EXPECT_EQ(r.record.ts_ns, 1000000000ull);
}

TEST(InhibitTraceParserShapes, TraceCmdReportLineWithoutFlags) {
  // trace-cmd report prints "comm-pid [cpu] secs.usecs: event: body" with no flags column.
  const ParseResult r = ParseInhibitChangedLine(
      "     CPU 1/KVM-3301  [012]  1500.250000: kvm_apicv_inhibit_changed: set reason=9, "
      "inhibits=0x200 PIT_REINJ");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.record.comm, "CPU 1/KVM");
  EXPECT_EQ(r.record.pid, 3301);
  EXPECT_EQ(r.record.cpu, 12);
  EXPECT_EQ(r.record.flags, "");
  EXPECT_EQ(r.record.ts_ns, 1500250000000ull);
  EXPECT_TRUE(r.record.set);
  EXPECT_EQ(r.record.reason, 9u);
}

TEST(InhibitTraceParserShapes, NewerReasonAndUnnamedBitsAreAccepted) {
  // A reason past PHYSICAL_ID_TOO_BIG, with its bit printed as hex by __print_flags().
  const ParseResult r =
      ParseInhibitChangedLine(kPrefix + "set reason=13, inhibits=0x2001 DISABLED|0x2000");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.record.reason, 13u);
  EXPECT_EQ(r.record.inhibits, 0x2001ul);
  EXPECT_TRUE(r.record.has_names);
  // Reason 64 cannot be a bit of an unsigned long mask.
  EXPECT_FALSE(ParseInhibitChangedLine(kPrefix + "set reason=64, inhibits=0x0").ok);
}

}  // namespace
}  // namespace apicv::trace
