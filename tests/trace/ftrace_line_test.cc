// ftrace prefix and kvm_apicv_inhibit_changed text, with host trace lines from seed 000 as the
// oracle: every line is parsed into its fields and re-printed by apicv; the bytes must match.
#include "trace/ftrace_line.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trace/inhibit_trace_parser.h"
#include "trace/kvm_events.h"

namespace apicv::trace {
namespace {

// Verbatim lines from the seed 000 report (AMD host, AVIC on).
const std::vector<std::string> kSeedLines = {
    "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ",
    "       CPU 2/KVM-10404   [263] ..... 42212.649287: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ",
    "       CPU 3/KVM-10405   [010] ..... 42213.438282: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ",
    "       CPU 0/KVM-10402   [245] ..... 42220.477769: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ",
    "           <...>-10520   [009] ..... 42525.094172: kvm_apicv_inhibit_changed: set reason=0, "
    "inhibits=0x1 DISABLED",
    "       CPU 0/KVM-10578   [075] ..... 42579.838570: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x100 IRQWIN",
    "       CPU 0/KVM-10578   [075] ..... 42579.838595: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x0",
    "       CPU 1/KVM-10579   [278] ..... 42579.905462: kvm_apicv_inhibit_changed: cleared "
    "reason=11, inhibits=0x0",
    "       CPU 0/KVM-10753   [016] ..... 44641.341224: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ",
};

TEST(FtraceLine, PrefixWidthsMatchSeedBytes) {
  TaskContext t{"CPU 2/KVM", 10404, 263};
  std::string s;
  AppendFtracePrefix(s, t, 42212649282000ull);
  // 7 spaces + 9-char comm = 16; pid left-aligned in 7; cpu in 3 digits.
  EXPECT_EQ(s, "       CPU 2/KVM-10404   [263] ..... 42212.649282: ");
}

TEST(FtraceLine, ShortCpuAndSecondsArePadded) {
  TaskContext t{"<...>", 7, 9};
  std::string s;
  AppendFtracePrefix(s, t, 1500000ull);  // 0.001500 s
  EXPECT_EQ(s, "           <...>-7       [009] .....     0.001500: ");
}

TEST(FtraceLine, LongCommIsTruncatedTo15) {
  TaskContext t{"abcdefghijklmnopqrstuvwxyz", 1, 0};
  std::string s;
  AppendFtracePrefix(s, t, 0);
  EXPECT_EQ(s.substr(0, 17), " abcdefghijklmno-");
}

// QEMU's main thread is "qemu-system-x86_64" (18 characters); the kernel keeps 15, which then
// fill "%16s" with one space of padding (the 2022 report in seed 004 shows
// "qemu-system-x86-10147").
TEST(FtraceLine, QemuMainThreadCommIsCutAtTaskCommLen) {
  TaskContext t{"qemu-system-x86_64", 10147, 222};
  std::string s;
  AppendFtracePrefix(s, t, 1116519052000ull);
  EXPECT_EQ(s, " qemu-system-x86-10147   [222] .....  1116.519052: ");
}

TEST(FtraceLine, TwoDigitVcpuCommAndBigPidCpu) {
  // "CPU 12/KVM" is 10 characters: 6 spaces. pid_max (4194304) fills "%-7d" exactly. A CPU
  // number of 1000 or more just widens "[%03d]".
  TaskContext t{"CPU 12/KVM", 4194304, 1023};
  std::string s;
  AppendFtracePrefix(s, t, 5000000ull);
  EXPECT_EQ(s, "      CPU 12/KVM-4194304 [1023] .....     0.005000: ");
}

TEST(FtraceLine, PidZeroIsIdleAndNegativePidIsXXX) {
  // trace_find_cmdline() ignores the comm for these.
  std::string s;
  AppendFtracePrefix(s, TaskContext{"CPU 0/KVM", 0, 0}, 0);
  EXPECT_EQ(s, "          <idle>-0       [000] .....     0.000000: ");
  s.clear();
  AppendFtracePrefix(s, TaskContext{"CPU 0/KVM", -1, 4}, 0);
  EXPECT_EQ(s, "           <XXX>--1      [004] .....     0.000000: ");
}

TEST(FtraceLine, TimestampRoundsToNearestMicrosecondLikeNs2usecs) {
  TaskContext t{"CPU 1/KVM", 10403, 244};
  std::string s;
  // 42220.478284499 s: 499 ns rounds down.
  AppendFtracePrefix(s, t, 42220478284499ull);
  EXPECT_EQ(s, "       CPU 1/KVM-10403   [244] ..... 42220.478284: ");
  s.clear();
  // 42220.478284500 s: 500 ns rounds up.
  AppendFtracePrefix(s, t, 42220478284500ull);
  EXPECT_EQ(s, "       CPU 1/KVM-10403   [244] ..... 42220.478285: ");
  s.clear();
  // 1.9999995 s carries into the seconds.
  AppendFtracePrefix(s, t, 1999999500ull);
  EXPECT_EQ(s, "       CPU 1/KVM-10403   [244] .....     2.000000: ");
}

TEST(FtraceLine, LargeSecondsWidenTheField) {
  TaskContext t{"CPU 3/KVM", 10405, 10};
  std::string s;
  // 11.6 days of uptime: 1000000 s needs 7 columns; "%5lu" is only a minimum.
  AppendFtracePrefix(s, t, 1000000000001000ull);
  EXPECT_EQ(s, "       CPU 3/KVM-10405   [010] ..... 1000000.000001: ");
  s.clear();
  // 99999 s is the widest value that still fits 5 columns.
  AppendFtracePrefix(s, t, 99999999999000ull);
  EXPECT_EQ(s, "       CPU 3/KVM-10405   [010] ..... 99999.999999: ");
}

TEST(FtraceLine, ExplicitFlagsAreCopiedVerbatim) {
  TaskContext t{"CPU 0/KVM", 10402, 245};
  std::string s;
  AppendFtracePrefix(s, t, 42220477769000ull, "d.h1.");
  EXPECT_EQ(s, "       CPU 0/KVM-10402   [245] d.h1. 42220.477769: ");
}

TEST(FtraceLine, WholeLineJoinsEventAndBody) {
  EXPECT_EQ(FormatFtraceLine({"CPU 3/KVM", 10405, 10}, 42214489294000ull, "kvm_eoi",
                             "apicid 3 vector 236"),
            "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_eoi: apicid 3 vector 236");
}

TEST(FtraceLine, SeedLinesRoundTripByteForByte) {
  for (const std::string& line : kSeedLines) {
    ParseResult r = ParseInhibitChangedLine(line);
    ASSERT_TRUE(r.ok) << r.error << " in: " << line;
    const auto& rec = r.record;
    TaskContext t{rec.comm, rec.pid, rec.cpu};
    const std::string again =
        FormatFtraceLine(t, rec.ts_ns, "kvm_apicv_inhibit_changed",
                         FormatApicvInhibitChanged(rec.reason, rec.set, rec.inhibits));
    EXPECT_EQ(again, line);
  }
}

TEST(FtraceLine, ParsedFieldsOfSeedLine) {
  ParseResult r = ParseInhibitChangedLine(kSeedLines[1]);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.record.comm, "CPU 2/KVM");
  EXPECT_EQ(r.record.pid, 10404);
  EXPECT_EQ(r.record.cpu, 263);
  EXPECT_EQ(r.record.flags, ".....");
  EXPECT_EQ(r.record.ts_ns, 42212649287000ull);
  EXPECT_FALSE(r.record.set);
  EXPECT_EQ(r.record.reason, 8u);
  EXPECT_EQ(r.record.inhibits, 0x200ul);
  EXPECT_TRUE(r.record.has_names);
}

TEST(InhibitChangedFormat, NamesInEnumOrder) {
  EXPECT_EQ(FormatApicvInhibitChanged(8, true, 0x300),
            "set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ");
  EXPECT_EQ(FormatApicvInhibitChanged(2, false, 0), "cleared reason=2, inhibits=0x0");
  EXPECT_EQ(FormatApicvInhibitChanged(12, true, 0x1FFF),
            "set reason=12, inhibits=0x1fff DISABLED|HYPERV|ABSENT|BLOCKIRQ|PHYSICAL_ID_ALIASED|"
            "APIC_ID_MODIFIED|APIC_BASE_MODIFIED|NESTED|IRQWIN|PIT_REINJ|SEV|LOGICAL_ID_ALIASED|"
            "PHYSICAL_ID_TOO_BIG");
  // 2022 reboot report shape: IRQWIN on top of APIC_ID_MODIFIED.
  EXPECT_EQ(FormatApicvInhibitChanged(8, true, 0x120),
            "set reason=8, inhibits=0x120 APIC_ID_MODIFIED|IRQWIN");
}

TEST(InhibitChangedParser, RejectsMalformedLines) {
  const char* bad[] = {
      "",
      "garbage",
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_inj_virq: IRQ 0x30",
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: maybe "
      "reason=8, "
      "inhibits=0x300 IRQWIN|PIT_REINJ",
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
      "inhibits=0x300 IRQWIN",  // names disagree with the mask
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
      "inhibits=0x300 IRQWIN|BOGUS",
      "       CPU 2/KVM-abc   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
      "inhibits=0x0",
      "       CPU 2/KVM-10404   [263] ..... 42212.6492: kvm_apicv_inhibit_changed: set reason=8, "
      "inhibits=0x0",
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
      "inhibits=0x0 ABSENT",
      "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set "
      "reason=99999999999999999999, inhibits=0x0",
      "       CPU 2/KVM-10404   [263] ..... 99999999999999999999.000000: "
      "kvm_apicv_inhibit_changed: "
      "set reason=8, inhibits=0x0",
  };
  for (const char* line : bad) {
    ParseResult r = ParseInhibitChangedLine(line);
    EXPECT_FALSE(r.ok) << line;
    EXPECT_NE(r.error.find("column"), std::string::npos) << r.error;
  }
  EXPECT_FALSE(ParseInhibitChangedLine(std::string(kMaxLineLength + 1, ' ')).ok);
}

TEST(InhibitChangedParser, AcceptsOldFormatWithoutNamesAndNoFlags) {
  ParseResult r = ParseInhibitChangedLine(
      " qemu-system-x86-4242  [001] 123.000001: kvm_apicv_inhibit_changed: cleared reason=7, "
      "inhibits=0x10");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.record.comm, "qemu-system-x86");
  EXPECT_EQ(r.record.pid, 4242);
  EXPECT_EQ(r.record.flags, "");
  EXPECT_EQ(r.record.inhibits, 0x10ul);
  EXPECT_FALSE(r.record.has_names);
}

TEST(InhibitChangedParser, MutatedLinesNeverCrashAndErrorsNameAColumn) {
  // Deterministic byte mutations (xorshift) of a valid line: every result is either a clean parse
  // whose names agree with the mask, or an error with a column.
  uint64_t x = 0x9E3779B97F4A7C15ull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string line = kSeedLines[i % kSeedLines.size()];
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = next() % line.size();
      switch (next() % 3) {
        case 0:
          line[pos] = static_cast<char>(next() & 0xFF);
          break;
        case 1:
          line.erase(pos, 1 + next() % 8);
          break;
        default:
          line.insert(pos, 1 + next() % 4, static_cast<char>(next() & 0xFF));
          break;
      }
      if (line.empty()) line = "x";
    }
    ParseResult r = ParseInhibitChangedLine(line);
    if (r.ok) {
      ++ok;
      if (r.record.has_names) {
        EXPECT_EQ(FormatApicvInhibitChanged(r.record.reason, r.record.set, r.record.inhibits),
                  line.substr(line.find("kvm_apicv_inhibit_changed: ") + 27))
            << line;
      }
    } else {
      EXPECT_EQ(r.error.rfind("column ", 0), 0u) << r.error;
    }
  }
  EXPECT_GT(ok, 0);  // some mutations (e.g. in comm or digits) still parse
}

}  // namespace
}  // namespace apicv::trace
