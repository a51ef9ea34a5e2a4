// Summary and diff of kvm_apicv_inhibit_changed traces (`apicv trace`). Expected figures are
// counted by hand from the seed-000 report's ftrace excerpt (seed 000) and from small traces
// written here; the seed-000 signature is spec §3.1: IRQWIN (reason 8) set/cleared while PIT_REINJ
// (bit 9) stays set in both masks.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "trace/inhibit_trace_compare.h"

namespace apicv::trace {
namespace {

// The seed-000 report's first excerpt, verbatim (AMD host, AVIC on, PIT reinjection).
const char* const kSeedExcerpt =
    "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 2/KVM-10404   [263] ..... 42212.649287: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42213.438282: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42213.438289: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42214.489284: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42214.489294: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42214.652281: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42214.652290: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42216.237284: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42216.237294: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42217.624284: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42217.624294: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42219.038284: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42219.038294: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42220.477744: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 0/KVM-10402   [245] ..... 42220.477769: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n"
    "       CPU 3/KVM-10405   [010] ..... 42220.477772: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 0/KVM-10402   [245] ..... 42220.477779: kvm_apicv_inhibit_changed: cleared "
    "reason=8, inhibits=0x200 PIT_REINJ\n"
    "       CPU 1/KVM-10403   [244] ..... 42220.478285: kvm_apicv_inhibit_changed: set reason=8, "
    "inhibits=0x300 IRQWIN|PIT_REINJ\n";

// A line of apicv's own trace format (TraceSink): same prefix, any body.
std::string Line(const std::string& body, const std::string& ts = "1.000000",
                 const std::string& task = "       CPU 0/KVM-100     [000] .....") {
  return task + " " + ts + ": kvm_apicv_inhibit_changed: " + body + "\n";
}

TraceSummary Summarize(const std::string& text) {
  std::istringstream in(text);
  TraceSummary s;
  auto err = SummarizeTrace(in, &s);
  EXPECT_FALSE(err.has_value()) << err->line << ":" << err->column << ": " << err->what;
  return s;
}

std::optional<TraceError> ErrorOf(const std::string& text) {
  std::istringstream in(text);
  TraceSummary s;
  return SummarizeTrace(in, &s);
}

TEST(TraceSummary, SeedExcerptFiguresCountedByHand) {
  const TraceSummary s = Summarize(kSeedExcerpt);
  EXPECT_EQ(s.lines, 19u);
  EXPECT_EQ(s.inhibit_lines, 19u);
  EXPECT_EQ(s.comment_lines, 0u);
  EXPECT_EQ(s.other_lines, 0u);
  EXPECT_EQ(s.named_lines, 19u);
  EXPECT_EQ(s.unnamed_lines, 0u);
  EXPECT_EQ(s.first_ts_ns, 42212649282000ull);
  EXPECT_EQ(s.last_ts_ns, 42220478285000ull);
  EXPECT_DOUBLE_EQ(s.span_s(), 7.829003);
  EXPECT_NEAR(s.lines_per_s(), 19 / 7.829003, 1e-9);
  // Ten windows opened (set), nine closed; no other reason appears.
  EXPECT_EQ(s.reasons[8].set, 10u);
  EXPECT_EQ(s.reasons[8].cleared, 9u);
  for (unsigned r = 0; r < 64; ++r) {
    if (r != 8) {
      EXPECT_EQ(s.reasons[r].set + s.reasons[r].cleared, 0u) << r;
    }
  }
  EXPECT_EQ(s.masks.counts, (std::map<unsigned long, uint64_t>{{0x200, 9}, {0x300, 10}}));
  EXPECT_EQ(s.threads.counts, (std::map<std::string, uint64_t>{{"CPU 0/KVM-10402", 2},
                                                               {"CPU 1/KVM-10403", 1},
                                                               {"CPU 2/KVM-10404", 2},
                                                               {"CPU 3/KVM-10405", 14}}));
  EXPECT_EQ(s.cpus.counts, (std::map<int, uint64_t>{{10, 14}, {244, 1}, {245, 2}, {263, 2}}));
  // Lines 15/16 (two sets) and 17/18 (two clears) collapse: 19 lines, 17 transitions.
  EXPECT_EQ(s.runs, 17u);
  EXPECT_TRUE(s.seed000.present());
  EXPECT_EQ(s.seed000.irqwin_set, 10u);
  EXPECT_EQ(s.seed000.irqwin_cleared, 9u);
  EXPECT_EQ(s.seed000.pit_reinj_lines, 19u);
  EXPECT_NEAR(s.seed000.windows_per_s(), 10 / 7.829003, 1e-9);
}

TEST(TraceSummary, VerdictNamesTheSignatureAndItsRate) {
  const std::string v = Seed000Verdict(Summarize(kSeedExcerpt));
  EXPECT_EQ(v.rfind("verdict: seed-000 signature PRESENT: IRQWIN (reason 8) set 10 and cleared 9 "
                    "times while PIT_REINJ (bit 9) stays set in both masks, 1.277 IRQ windows/s "
                    "over 7.829003 s",
                    0),
            0u)
      << v;
}

TEST(TraceSummary, SplitIrqchipAndAvicOffHaveNoSignature) {
  // Seed 000's counter-examples: kernel-irqchip=split (IRQWIN alone) and avic=N.
  const std::string split = Line("set reason=8, inhibits=0x100 IRQWIN", "42579.838570") +
                            Line("cleared reason=8, inhibits=0x0", "42579.838595") +
                            Line("set reason=0, inhibits=0x1 DISABLED", "42579.900000");
  const TraceSummary s = Summarize(split);
  EXPECT_FALSE(s.seed000.present());
  EXPECT_EQ(s.seed000.irqwin_set, 0u);
  EXPECT_EQ(s.seed000.irqwin_cleared, 0u);
  EXPECT_EQ(s.seed000.pit_reinj_lines, 0u);
  EXPECT_EQ(Seed000Verdict(s).rfind("verdict: seed-000 signature absent:", 0), 0u);
  EXPECT_EQ(s.reasons[0].set, 1u);
  EXPECT_EQ(s.reasons[8].set, 1u);
  EXPECT_EQ(s.reasons[8].cleared, 1u);
}

TEST(TraceSummary, CountedIrqWindowRunHasNoSignature) {
  // The 2026 fix: PIT_REINJ set, IRQWIN re-derived as cleared, no window ever sets it.
  const std::string t = Line("set reason=9, inhibits=0x200 PIT_REINJ") +
                        Line("cleared reason=8, inhibits=0x200 PIT_REINJ") +
                        Line("cleared reason=4, inhibits=0x200 PIT_REINJ");
  const TraceSummary s = Summarize(t);
  EXPECT_FALSE(s.seed000.present());
  EXPECT_EQ(s.seed000.irqwin_cleared, 1u);
  EXPECT_EQ(s.seed000.pit_reinj_lines, 3u);
}

TEST(TraceSummary, SetWithoutPitReinjOrClearLeavingIrqwinIsNotTheSignature) {
  // A 'set reason=8' whose mask lacks PIT_REINJ and a 'cleared reason=8' that still has IRQWIN
  // (another vCPU's window, counted KVM) do not count.
  const TraceSummary s = Summarize(Line("set reason=8, inhibits=0x100 IRQWIN") +
                                   Line("cleared reason=8, inhibits=0x300 IRQWIN|PIT_REINJ"));
  EXPECT_EQ(s.seed000.irqwin_set, 0u);
  EXPECT_EQ(s.seed000.irqwin_cleared, 0u);
  EXPECT_FALSE(s.seed000.present());
}

TEST(TraceSummary, SkipsCommentsOtherEventsAndStackTraces) {
  const std::string t =
      "# tracer: nop\n"
      "#\n"
      "   CPU 0/KVM-1 [000] ..... 5.000000: kvm_inj_virq: IRQ 0x20\n"
      " => trace_event_raw_event_kvm_apicv_inhibit_changed\n"
      "\n" +
      Line("set reason=2, inhibits=0x4 ABSENT", "5.000001");
  const TraceSummary s = Summarize(t);
  EXPECT_EQ(s.lines, 6u);
  EXPECT_EQ(s.comment_lines, 2u);
  EXPECT_EQ(s.other_lines, 3u);
  EXPECT_EQ(s.inhibit_lines, 1u);
  EXPECT_EQ(s.reasons[2].set, 1u);
  EXPECT_DOUBLE_EQ(s.span_s(), 0.0);
  EXPECT_EQ(s.lines_per_s(), 0.0);
}

TEST(TraceSummary, PreNamesFormatAndCrLfAndNoFinalNewline) {
  const std::string t =
      " qemu-system-x86-4242  [001] 123.000001: kvm_apicv_inhibit_changed: set "
      "reason=8, inhibits=0x300\r\n"
      " qemu-system-x86-4242  [001] 123.500001: kvm_apicv_inhibit_changed: "
      "cleared reason=8, inhibits=0x200";
  const TraceSummary s = Summarize(t);
  EXPECT_EQ(s.lines, 2u);
  EXPECT_EQ(s.unnamed_lines, 2u);
  EXPECT_EQ(s.named_lines, 0u);
  EXPECT_TRUE(s.seed000.present());
  EXPECT_NEAR(s.seed000.windows_per_s(), 1 / 0.5, 1e-9);
  EXPECT_EQ(s.threads.counts.at("qemu-system-x86-4242"), 2u);
}

TEST(TraceSummary, TimestampsOutOfOrderGiveMinToMaxSpan) {
  const TraceSummary s = Summarize(Line("cleared reason=2, inhibits=0x0", "10.000000") +
                                   Line("cleared reason=2, inhibits=0x0", "8.000000") +
                                   Line("cleared reason=2, inhibits=0x0", "9.000000"));
  EXPECT_EQ(s.first_ts_ns, 8000000000ull);
  EXPECT_EQ(s.last_ts_ns, 10000000000ull);
  EXPECT_DOUBLE_EQ(s.lines_per_s(), 1.5);
  EXPECT_EQ(s.runs, 1u);
}

TEST(TraceSummary, TablesAreCappedAt256Keys) {
  std::string t;
  for (int pid = 1; pid <= 300; ++pid) {
    t += Line("cleared reason=2, inhibits=0x0", "1.000000",
              "  t-" + std::to_string(pid) + " [" + std::to_string(pid) + "] .....");
  }
  const TraceSummary s = Summarize(t);
  EXPECT_EQ(s.threads.counts.size(), kMaxDistinctKeys);
  EXPECT_EQ(s.threads.other, 300u - 256u);
  EXPECT_EQ(s.cpus.counts.size(), kMaxDistinctKeys);
  EXPECT_EQ(s.cpus.other, 44u);
  EXPECT_EQ(s.inhibit_lines, 300u);
}

TEST(TraceSummary, UnknownReasonAndUnnamedMaskBitsAreCounted) {
  const TraceSummary s = Summarize(Line("set reason=13, inhibits=0x2200 PIT_REINJ|0x2000"));
  EXPECT_EQ(s.reasons[13].set, 1u);
  EXPECT_EQ(ReasonName(13), "reason 13");
  EXPECT_EQ(ReasonName(9), "PIT_REINJ");
  EXPECT_EQ(s.masks.counts.at(0x2200), 1u);
}

TEST(TraceReader, BadLinesGiveLineAndColumn) {
  // Line 2 is a kvm_apicv_inhibit_changed line with "maybe" where set/cleared belongs: index 49.
  const std::string bad =
      "# header\n  a-1 [000] 1.000000: kvm_apicv_inhibit_changed: maybe "
      "reason=8, inhibits=0x0\n";
  auto e = ErrorOf(bad);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->line, 2u);
  EXPECT_EQ(e->column, 50u);
  EXPECT_EQ(e->what, "expected \"set\" or \"cleared\"");

  // Names that disagree with the mask: the names start at column 50 + 30 ("set reason=8, " is 14,
  // "inhibits=0x300 " 15, plus the 49 before) = 79.
  e = ErrorOf(Line("set reason=0, inhibits=0x1 DISABLED") +
              "  a-1 [000] 1.000000: kvm_apicv_inhibit_changed: set reason=8, inhibits=0x300 "
              "IRQWIN\n");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->line, 2u);
  EXPECT_EQ(e->column, 79u);
  EXPECT_EQ(e->what, "reason names do not match the inhibits mask");
}

TEST(TraceReader, OverLongLineIsAnErrorAtTheLimit) {
  const std::string ok(kMaxLineLength, 'x');
  EXPECT_FALSE(ErrorOf(ok + "\r\n" + ok + "\n").has_value());
  auto e = ErrorOf(ok + "\n" + ok + "yz\n");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->line, 2u);
  EXPECT_EQ(e->column, kMaxLineLength + 1);
  EXPECT_NE(e->what.find("longer than 4096"), std::string::npos);
}

TEST(TraceReader, NulByteIsBinaryData) {
  std::string t = Line("set reason=2, inhibits=0x4 ABSENT");
  t += std::string("\x17\x08\x44tracing6", 11);
  t.push_back('\0');
  t += "more";
  auto e = ErrorOf(t);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->line, 2u);
  EXPECT_EQ(e->column, 12u);
  EXPECT_EQ(e->what.rfind("binary data (NUL byte)", 0), 0u);
}

TEST(TraceReader, StopsAtTheFirstError) {
  std::istringstream in("x\n" + std::string(5000, 'a') + "\n" +
                        Line("set reason=2, inhibits=0x4 ABSENT"));
  InhibitTraceReader r(in);
  InhibitEvent ev;
  EXPECT_FALSE(r.Next(&ev));
  ASSERT_TRUE(r.error().has_value());
  EXPECT_FALSE(r.Next(&ev));
  EXPECT_EQ(r.lines(), 2u);
}

TEST(TransitionRuns, ConsecutiveEqualTransitionsCollapse) {
  std::istringstream in("# c\n" + Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") +
                        Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") + "other\n" +
                        Line("cleared reason=8, inhibits=0x200 PIT_REINJ"));
  TransitionRuns runs(in);
  TransitionRun r;
  ASSERT_TRUE(runs.Next(&r));
  EXPECT_EQ(r.t, (Transition{true, 8, 0x300}));
  EXPECT_EQ(r.first_line, 2u);
  EXPECT_EQ(r.count, 2u);
  ASSERT_TRUE(runs.Next(&r));
  EXPECT_EQ(r.t, (Transition{false, 8, 0x200}));
  EXPECT_EQ(r.first_line, 5u);
  EXPECT_EQ(r.count, 1u);
  EXPECT_FALSE(runs.Next(&r));
  EXPECT_FALSE(runs.error().has_value());
}

TraceOpener Opener(const std::string& text) {
  return [text] { return std::make_unique<std::istringstream>(text); };
}

// An apicv run from VM creation with the legacy IRQ-window code (seed 000 reproduced): the VM's
// setup lines, then two windows toggling IRQWIN on top of PIT_REINJ.
const std::string kLegacyRun = Line("set reason=2, inhibits=0x4 ABSENT") +
                               Line("cleared reason=2, inhibits=0x0") +
                               Line("set reason=9, inhibits=0x200 PIT_REINJ") +
                               Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") +
                               Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") +
                               Line("cleared reason=8, inhibits=0x200 PIT_REINJ") +
                               Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") +
                               Line("cleared reason=8, inhibits=0x200 PIT_REINJ");
// The same VM with the 2026 counted code: no IRQWIN line of its own after PIT_REINJ.
const std::string kCountedRun =
    Line("set reason=2, inhibits=0x4 ABSENT") + Line("cleared reason=2, inhibits=0x0") +
    Line("cleared reason=8, inhibits=0x0") + Line("set reason=9, inhibits=0x200 PIT_REINJ") +
    Line("cleared reason=8, inhibits=0x200 PIT_REINJ");

TEST(TraceDiff, IdenticalBodiesMatchIgnoringTasksAndTimes) {
  const std::string a = Line("set reason=2, inhibits=0x4 ABSENT", "1.000000") +
                        Line("cleared reason=2, inhibits=0x0", "2.000000");
  const std::string b = Line("set reason=2, inhibits=0x4 ABSENT", "7.000000", "  x-9 [005]") +
                        Line("cleared reason=2, inhibits=0x0", "9.000000", "  y-8 [006] d.h1.");
  TraceDiff d;
  EXPECT_FALSE(DiffTraces(Opener(a), Opener(b), {}, &d).has_value());
  EXPECT_TRUE(d.match);
  EXPECT_EQ(d.runs_compared, 2u);
  EXPECT_FALSE(d.a_at.has_value());
  EXPECT_FALSE(d.b_at.has_value());
}

TEST(TraceDiff, FirstDivergenceWithLinesOfBothFiles) {
  TraceDiff d;
  EXPECT_FALSE(DiffTraces(Opener(kLegacyRun), Opener(kCountedRun), {}, &d).has_value());
  EXPECT_FALSE(d.match);
  // Both start ABSENT, then cleared ABSENT; legacy sets PIT_REINJ (line 3) where counted
  // re-derives IRQWIN (line 3).
  EXPECT_EQ(d.runs_compared, 2u);
  ASSERT_TRUE(d.a_at && d.b_at);
  EXPECT_EQ(d.a_at->first_line, 3u);
  EXPECT_EQ(d.a_at->t, (Transition{true, 9, 0x200}));
  EXPECT_EQ(d.b_at->first_line, 3u);
  EXPECT_EQ(d.b_at->t, (Transition{false, 8, 0x0}));
  const std::string text = FormatDiff(d, "legacy", "counted");
  EXPECT_NE(text.find("result: DIFFER at transition 3 (after 2 equal)"), std::string::npos);
  EXPECT_NE(text.find("a line 3: set reason=9, inhibits=0x200 PIT_REINJ"), std::string::npos);
  EXPECT_NE(text.find("b line 3: cleared reason=8, inhibits=0x0"), std::string::npos);
}

TEST(TraceDiff, ShorterTraceIsADifferenceWithoutAlign) {
  const std::string a = Line("set reason=2, inhibits=0x4 ABSENT");
  const std::string b = a + Line("cleared reason=2, inhibits=0x0");
  TraceDiff d;
  EXPECT_FALSE(DiffTraces(Opener(a), Opener(b), {}, &d).has_value());
  EXPECT_FALSE(d.match);
  EXPECT_EQ(d.runs_compared, 1u);
  EXPECT_FALSE(d.a_at.has_value());
  ASSERT_TRUE(d.b_at.has_value());
  EXPECT_EQ(d.b_at->first_line, 2u);
  EXPECT_EQ(d.b_runs_after, 1u);
}

TEST(TraceDiff, AlignedHostExcerptMatchesLegacyRun) {
  TraceDiff d;
  DiffOptions opt;
  opt.align = true;
  // Host (a) starts mid-run at 'set reason=8 0x300'; the run (b) reaches it at line 4.
  EXPECT_FALSE(DiffTraces(Opener(kSeedExcerpt), Opener(kLegacyRun), opt, &d).has_value());
  EXPECT_TRUE(d.aligned);
  EXPECT_TRUE(d.match);
  EXPECT_EQ(d.a_start_line, 1u);
  EXPECT_EQ(d.b_start_line, 4u);
  EXPECT_EQ(d.b_skipped_runs, 3u);
  EXPECT_EQ(d.a_skipped_runs, 0u);
  // The run has 4 transitions from there (set x2 collapsed, cleared, set, cleared); the host 17.
  EXPECT_EQ(d.runs_compared, 4u);
  EXPECT_EQ(d.a_runs_after, 13u);
  EXPECT_EQ(d.b_runs_after, 0u);
  // Same result with the files swapped (the other search direction).
  TraceDiff r;
  EXPECT_FALSE(DiffTraces(Opener(kLegacyRun), Opener(kSeedExcerpt), opt, &r).has_value());
  EXPECT_TRUE(r.match);
  EXPECT_EQ(r.a_start_line, 4u);
  EXPECT_EQ(r.b_start_line, 1u);
  EXPECT_EQ(r.b_runs_after, 13u);
}

TEST(TraceDiff, AlignedHostExcerptDoesNotMatchCountedRun) {
  TraceDiff d;
  DiffOptions opt;
  opt.align = true;
  EXPECT_FALSE(DiffTraces(Opener(kSeedExcerpt), Opener(kCountedRun), opt, &d).has_value());
  EXPECT_FALSE(d.aligned);
  EXPECT_FALSE(d.match);
  ASSERT_TRUE(d.a_at && d.b_at);
  EXPECT_EQ(d.a_at->first_line, 1u);
  EXPECT_EQ(d.b_at->first_line, 1u);
  EXPECT_NE(FormatDiff(d, "host", "counted").find("no transition in common"), std::string::npos);
}

TEST(TraceDiff, AlignedThenDivergingReportsTheLines) {
  // Host toggles IRQWIN on PIT_REINJ; this run clears PIT_REINJ after its first window.
  const std::string run = Line("set reason=2, inhibits=0x4 ABSENT") +
                          Line("set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ") +
                          Line("cleared reason=8, inhibits=0x200 PIT_REINJ") +
                          Line("cleared reason=9, inhibits=0x0");
  TraceDiff d;
  DiffOptions opt;
  opt.align = true;
  EXPECT_FALSE(DiffTraces(Opener(kSeedExcerpt), Opener(run), opt, &d).has_value());
  EXPECT_TRUE(d.aligned);
  EXPECT_FALSE(d.match);
  EXPECT_EQ(d.runs_compared, 2u);
  ASSERT_TRUE(d.a_at && d.b_at);
  EXPECT_EQ(d.a_at->first_line, 3u);
  EXPECT_EQ(d.b_at->first_line, 4u);
}

// --- What a reader of a host trace compares (issue 10 item 8) ---------------------------------

// Any other event's line, apicv's TraceSink format.
std::string Event(const std::string& event, const std::string& body,
                  const std::string& task = "       CPU 0/KVM-100     [000] .....") {
  return task + " 1.000000: " + event + ": " + body + "\n";
}
const char* const kWin = "set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ";
const char* const kNoWin = "cleared reason=8, inhibits=0x200 PIT_REINJ";
// `n` IRQ windows on PIT_REINJ, `ticks` PIT ticks (GSI 0 raised) before each.
std::string Windows(int n, int ticks) {
  std::string t;
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < ticks; ++k) t += Event("kvm_set_irq", "gsi 0 level 1 source 2");
    t += Line(kWin) + Line(kNoWin);
  }
  return t;
}

TraceDiff Diff(const std::string& a, const std::string& b, bool align) {
  TraceDiff d;
  DiffOptions opt;
  opt.align = align;
  EXPECT_FALSE(DiffTraces(Opener(a), Opener(b), opt, &d).has_value());
  return d;
}

// The seed-000 host excerpt against any run that alternates the same two lines 17 times: the
// sequence agrees, but without a workload count in the host excerpt the rate cannot be compared,
// so this is not a MATCH (it was, with the transition sequence alone).
TEST(TraceDiff, SamePeriodicSequenceWithoutWorkloadIsNotEvaluated) {
  // The host's 15th and 16th transitions are runs of two (CPU 3 and CPU 0 open a window at once);
  // this run has them too.
  const std::string run =
      Windows(7, 0) + Line(kWin) + Line(kWin) + Line(kNoWin) + Line(kNoWin) + Windows(2, 0);
  const TraceDiff d = Diff(kSeedExcerpt, run, /*align=*/true);
  EXPECT_EQ(d.run_lengths.verdict, CheckVerdict::kAgree) << d.run_lengths.detail;
  EXPECT_EQ(Diff(kSeedExcerpt, Windows(9, 0), true).run_lengths.verdict, CheckVerdict::kDiffer);
  EXPECT_TRUE(d.match);
  EXPECT_EQ(d.masks.verdict, CheckVerdict::kAgree);
  EXPECT_EQ(d.rate.verdict, CheckVerdict::kNotEvaluated);
  EXPECT_EQ(d.result, CheckVerdict::kNotEvaluated);
  const std::string text = FormatDiff(d, "host", "run");
  EXPECT_NE(text.find("IRQ-window rate: NOT EVALUATED: a has no PIT tick"), std::string::npos)
      << text;
  EXPECT_NE(text.find("b has no PIT tick"), std::string::npos) << text;
  EXPECT_NE(text.find("result: NOT EVALUATED: "), std::string::npos) << text;
  EXPECT_EQ(text.find("result: MATCH"), std::string::npos) << text;
}

// The same transitions at one IRQ window per PIT tick and at one per ten ticks differ; one per
// tick and one per tick (more windows) match.
TEST(TraceDiff, IrqWindowRateIsPerPitTickWithinTolerance) {
  const TraceDiff slow = Diff(Windows(5, 1), Windows(5, 10), false);
  EXPECT_TRUE(slow.match);
  EXPECT_EQ(slow.rate.verdict, CheckVerdict::kDiffer);
  EXPECT_EQ(slow.result, CheckVerdict::kDiffer);
  EXPECT_NE(FormatDiff(slow, "a", "b").find("a 5/5 = 1.000, b 5/50 = 0.100"), std::string::npos)
      << FormatDiff(slow, "a", "b");
  EXPECT_NE(FormatDiff(slow, "a", "b").find("result: DIFFER: IRQ-window rate"), std::string::npos);
  const TraceDiff same = Diff(Windows(5, 1), Windows(6, 1), true);
  EXPECT_EQ(same.rate.verdict, CheckVerdict::kAgree);
  EXPECT_EQ(same.result, CheckVerdict::kAgree);
  EXPECT_NE(FormatDiff(same, "a", "b").find("result: MATCH"), std::string::npos);
  // 5 windows in 6 ticks against 5 in 5: 0.833 vs 1.0 is within 20%; 5 in 7 (0.714) is not.
  std::string six = Event("kvm_set_irq", "gsi 0 level 1 source 2") + Windows(5, 1);
  EXPECT_EQ(Diff(Windows(5, 1), six, false).rate.verdict, CheckVerdict::kAgree);
  std::string seven = Event("kvm_set_irq", "gsi 0 level 1 source 2") + six;
  EXPECT_EQ(Diff(Windows(5, 1), seven, false).rate.verdict, CheckVerdict::kDiffer);
  // GSI 0 lowered, or another GSI, is not a tick.
  std::string lowered = Event("kvm_set_irq", "gsi 0 level 0 source 2") +
                        Event("kvm_set_irq", "gsi 10 level 1 source 0") + Windows(5, 1);
  EXPECT_EQ(Diff(Windows(5, 1), lowered, false).result, CheckVerdict::kAgree);
}

// Without PIT ticks, injected interrupts on the thread that opens the windows.
TEST(TraceDiff, IrqWindowRatePerInjectedInterruptOnTheWindowThread) {
  auto run = [](int injections_per_window, const std::string& inj_task) {
    std::string t;
    for (int i = 0; i < 4; ++i) {
      for (int k = 0; k < injections_per_window; ++k) {
        t += Event("kvm_inj_virq", "IRQ 0x20 [reinjected = 0]", inj_task);
      }
      t += Line(kWin) + Line(kNoWin);
    }
    return t;
  };
  const std::string self = "       CPU 0/KVM-100     [000] .....";
  const std::string other = "       CPU 1/KVM-101     [001] .....";
  EXPECT_EQ(Diff(run(2, self), run(2, self), false).result, CheckVerdict::kAgree);
  const TraceDiff d = Diff(run(2, self), run(8, self), false);
  EXPECT_EQ(d.rate.verdict, CheckVerdict::kDiffer);
  EXPECT_NE(d.rate.detail.find("per injected interrupt: a 4/8 = 0.500, b 4/32 = 0.125"),
            std::string::npos)
      << d.rate.detail;
  // Injections on another vCPU thread do not normalise this thread's windows.
  EXPECT_EQ(Diff(run(2, self), run(2, other), false).rate.verdict, CheckVerdict::kNotEvaluated);
}

// Inside the overlap a run of repeated lines (several vCPUs opening the same window) must have the
// same length on both sides; the overlap's last run may be cut by the end of a capture.
TEST(TraceDiff, InteriorRunLengthsMustAgree) {
  const std::string tick = Event("kvm_set_irq", "gsi 0 level 1 source 2");
  const std::string a = tick + Line(kWin) + Line(kNoWin) + tick + Line(kWin) + Line(kNoWin);
  const std::string b =
      tick + Line(kWin) + Line(kWin) + Line(kWin) + Line(kNoWin) + tick + Line(kWin) + Line(kNoWin);
  const TraceDiff d = Diff(a, b, false);
  EXPECT_TRUE(d.match);
  EXPECT_EQ(d.run_lengths.verdict, CheckVerdict::kDiffer);
  EXPECT_NE(d.run_lengths.detail.find("transition 1 (" + std::string(kWin) +
                                      "): a line 2 x1, b line 2 x3"),
            std::string::npos)
      << d.run_lengths.detail;
  EXPECT_EQ(d.result, CheckVerdict::kDiffer);
  // The same repeat in the last run: cut by the capture, not a difference.
  const std::string c =
      tick + Line(kWin) + Line(kNoWin) + tick + Line(kWin) + Line(kNoWin) + Line(kNoWin);
  EXPECT_EQ(Diff(a, c, false).run_lengths.verdict, CheckVerdict::kAgree);
}

// Aligned: the longer trace's rest still counts for the masks seen (here PIT_REINJ goes away and
// AVIC is inhibited for another reason after the host excerpt ends).
TEST(TraceDiff, MasksSeenAfterTheOverlapMustAgree) {
  const std::string host = Windows(2, 1);
  const std::string run = Windows(3, 1) + Line("cleared reason=9, inhibits=0x0") +
                          Line("set reason=2, inhibits=0x4 ABSENT");
  const TraceDiff d = Diff(host, run, true);
  EXPECT_TRUE(d.match);
  EXPECT_EQ(d.masks.verdict, CheckVerdict::kDiffer);
  EXPECT_EQ(d.masks.detail, "a: 0x200 0x300; b: 0x0 0x4 0x200 0x300");
  EXPECT_EQ(d.result, CheckVerdict::kDiffer);
}

TEST(TraceDiff, CountsSideBySide) {
  TraceDiff d;
  EXPECT_FALSE(DiffTraces(Opener(kSeedExcerpt), Opener(kCountedRun), {}, &d).has_value());
  EXPECT_EQ(d.a.transitions.counts.at(Transition{true, 8, 0x300}), 10u);
  EXPECT_EQ(d.a.transitions.counts.at(Transition{false, 8, 0x200}), 9u);
  EXPECT_EQ(d.b.transitions.counts.at(Transition{false, 8, 0x200}), 1u);
  EXPECT_EQ(d.b.transitions.counts.count(Transition{true, 8, 0x300}), 0u);
  const std::string text = FormatDiff(d, "host", "counted");
  // One row per transition of either trace: "cleared reason=8, inhibits=0x200 PIT_REINJ  9  1".
  const size_t row = text.find("  cleared reason=8, inhibits=0x200 PIT_REINJ ");
  ASSERT_NE(row, std::string::npos);
  std::istringstream cols(text.substr(row + 44, text.find('\n', row) - row - 44));
  uint64_t na = 0, nb = 0;
  cols >> na >> nb;
  EXPECT_EQ(na, 9u);
  EXPECT_EQ(nb, 1u);
}

TEST(TraceDiff, BadOrEmptyInputIsAnErrorNamingTheTrace) {
  TraceDiff d;
  auto e = DiffTraces(Opener(kSeedExcerpt), Opener("# only a header\nkvm_inj_virq\n"), {}, &d);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->which, 1);
  EXPECT_EQ(e->error.line, 0u);
  EXPECT_EQ(e->error.what, "no kvm_apicv_inhibit_changed lines (2 lines read)");

  e = DiffTraces(Opener("\n\n  a-1 [000] 1.000000: kvm_apicv_inhibit_changed: set reason=x"),
                 Opener(kSeedExcerpt), {}, &d);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->which, 0);
  EXPECT_EQ(e->error.line, 3u);

  e = DiffTraces([] { return std::unique_ptr<std::istream>(); }, Opener(kSeedExcerpt), {}, &d);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->which, 0);
}

TEST(TraceSummaryFormat, TextAndJsonCarryTheFigures) {
  const TraceSummary s = Summarize(kSeedExcerpt);
  const std::string text = FormatSummary(s, "host.txt");
  EXPECT_NE(text.find("lines: 19 read, 19 kvm_apicv_inhibit_changed, 0 comments, 0 other"),
            std::string::npos);
  EXPECT_NE(text.find("time span: 42212.649282 .. 42220.478285 (7.829003 s), 2.427 lines/s"),
            std::string::npos);
  // All 13 reasons are listed, with their names.
  for (const char* n : {"DISABLED", "HYPERV", "ABSENT", "BLOCKIRQ", "PHYSICAL_ID_ALIASED",
                        "APIC_ID_MODIFIED", "APIC_BASE_MODIFIED", "NESTED", "IRQWIN", "PIT_REINJ",
                        "SEV", "LOGICAL_ID_ALIASED", "PHYSICAL_ID_TOO_BIG"}) {
    EXPECT_NE(text.find(std::string(" ") + n + " "), std::string::npos) << n;
  }
  EXPECT_NE(text.find("0x300    IRQWIN|PIT_REINJ"), std::string::npos);
  EXPECT_NE(text.find("  [010]         14"), std::string::npos);

  const std::string json = SummaryJson(s, "host \"1\".txt");
  EXPECT_NE(json.find("\"trace\": \"host \\\"1\\\".txt\""), std::string::npos);
  EXPECT_NE(json.find("\"inhibit_lines\": 19,"), std::string::npos);
  EXPECT_NE(json.find("{\"reason\": 8, \"name\": \"IRQWIN\", \"set\": 10, \"cleared\": 9}"),
            std::string::npos);
  EXPECT_NE(json.find("{\"mask\": \"0x300\", \"names\": \"IRQWIN|PIT_REINJ\", \"count\": 10}"),
            std::string::npos);
  EXPECT_NE(json.find("{\"thread\": \"CPU 3/KVM-10405\", \"count\": 14}"), std::string::npos);
  EXPECT_NE(json.find("\"present\": true, \"irqwin_set_with_pit_reinj\": 10, "
                      "\"irqwin_cleared_with_pit_reinj\": 9"),
            std::string::npos);
  EXPECT_NE(json.find("\"irq_windows_per_s\": 1.277"), std::string::npos);
}

TEST(TraceSummaryFormat, JsonEscapesControlAndHighBytesInComm) {
  const TraceSummary s = Summarize(
      Line("cleared reason=2, inhibits=0x0", "1.000000", std::string("  q\x01\xe9\\-5 [000]")));
  const std::string json = SummaryJson(s, "t");
  EXPECT_NE(json.find("\"thread\": \"q\\u0001\\u00e9\\\\-5\""), std::string::npos) << json;
}

TEST(TraceHostile, UntrustedBytesAreEscapedForTheTerminal) {
  // An escape sequence in comm and a '\r' inside a reason name must not reach the terminal raw.
  const TraceSummary s = Summarize(
      Line("cleared reason=2, inhibits=0x0", "1.000000", std::string("  ev\x1b[2Jil-5 [000]")));
  const std::string text = FormatSummary(s, "t");
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(text.find("ev\\x1b[2Jil-5"), std::string::npos);
  auto e = ErrorOf(Line("set reason=8, inhibits=0x100 IRQ\rWIN"));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->what, "unknown inhibit reason name \"IRQ\\x0dWIN\"");
}

TEST(TraceHostile, MutatedTracesNeverCrashAndErrorsAreLocated) {
  // Deterministic byte mutations (xorshift) of the seed excerpt plus a legacy run: each result is
  // either a clean summary or an error whose line lies inside the input; diff agrees.
  const std::string base = std::string(kSeedExcerpt) + kLegacyRun;
  uint64_t x = 0x2545F4914F6CDD1Dull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const char alphabet[] = {'\0', '\n', '\r', ' ', '|', '#', '[', ']', ':',
                           '.',  '-',  '=',  ',', 'x', '0', '9', 'f', '\xff'};
  uint64_t errors = 0, clean = 0;
  for (int round = 0; round < 400; ++round) {
    std::string t = base;
    const int edits = 1 + static_cast<int>(next() % 8);
    for (int i = 0; i < edits; ++i) {
      const size_t pos = next() % t.size();
      switch (next() % 4) {
        case 0:
          t[pos] = alphabet[next() % sizeof(alphabet)];
          break;
        case 1:
          t.erase(pos, 1 + next() % 20);
          break;
        case 2:
          t.insert(pos, std::string(1 + next() % 3000, alphabet[next() % sizeof(alphabet)]));
          break;
        default:
          t.insert(pos, t.substr(next() % t.size(), 1 + next() % 200));
          break;
      }
      if (t.empty()) t = "x";
    }
    const uint64_t newlines = static_cast<uint64_t>(std::count(t.begin(), t.end(), '\n'));
    TraceSummary s;
    std::istringstream in(t);
    const auto e = SummarizeTrace(in, &s);
    if (e) {
      ++errors;
      EXPECT_GE(e->line, 1u);
      EXPECT_LE(e->line, newlines + 1);
      EXPECT_GE(e->column, 1u);
      EXPECT_LE(e->column, kMaxLineLength + 1);
      EXPECT_FALSE(e->what.empty());
    } else {
      ++clean;
      EXPECT_EQ(s.inhibit_lines, s.named_lines + s.unnamed_lines);
      EXPECT_EQ(s.lines, s.inhibit_lines + s.comment_lines + s.other_lines);
      EXPECT_LE(s.runs, s.inhibit_lines);
    }
    TraceDiff d;
    const auto de = DiffTraces(Opener(t), Opener(kSeedExcerpt), {}, &d);
    EXPECT_EQ(de.has_value(), e.has_value() || s.inhibit_lines == 0);
  }
  // Both outcomes occur, so the checks above ran on each.
  EXPECT_GT(errors, 0u);
  EXPECT_GT(clean, 0u);
}

}  // namespace
}  // namespace apicv::trace
