// Summary and comparison of kvm_apicv_inhibit_changed traces (spec §1.1 reasons, §2.7 line format,
// §3.1 the seed-000 IRQWIN pathology), behind `apicv trace summary` and `apicv trace diff`.
//
// A trace is ftrace text: a host's /sys/kernel/tracing/trace, `trace-cmd report` output or apicv's
// own `--trace` file. Lines whose first non-blank character is '#' are comments; lines of other
// events (and stack traces, blank lines) are skipped and counted; every line holding the event
// name "kvm_apicv_inhibit_changed:" must parse (inhibit_trace_parser.h) or the whole trace is
// rejected with LINE:COLUMN. Input is untrusted: it is streamed line by line, a line longer than
// kMaxLineLength or holding a NUL byte (a binary file, e.g. trace.dat) is an error, and every
// per-key table is capped at kMaxDistinctKeys entries (the rest is counted as "other").
//
// Comparison works on transitions (set/cleared, reason, mask), ignoring comm, pid, cpu and time.
// Consecutive equal transitions are collapsed into one run: several vCPUs opening the same window
// at once, or KVM re-arming an open window, print the same line again without changing the state.
// `diff` says MATCH only when four checks agree, as a reader comparing a host trace with a run
// would check (a periodic set/cleared pattern alone matches any run that toggles the same bits):
// the transition sequence; the run lengths (equal, except the first run of an aligned overlap and
// the last run of the overlap, which a capture window can cut); the inhibit masks seen from the
// start of the comparison to the end of each trace; and the IRQ-window rate normalised to the
// workload, not to time (apicv's time is not the host's): IRQWIN set lines per PIT tick
// ("kvm_set_irq: gsi 0 level 1", the PIT raising GSI 0), else per injected interrupt
// (kvm_inj_virq) on the vCPU threads that print IRQWIN lines, equal within kRateTolerance. A
// trace without such workload lines leaves the rate NOT EVALUATED, and then the result too.
//
// perf's text is read too (perf_text.h): `perf script` and `perf trace` lines of kvm events are
// rewritten into ftrace lines first (perf trace's records have cpu -1, "unknown"), and a pasted
// `perf kvm stat` VM-EXIT table fills the exit-reason section. kvm_exit lines are counted per exit
// reason (the text KVM prints after "reason ", up to " rip ").
//
// Not supported: trace.dat (binary) in this reader (trace_dat.h converts it to ftrace text
// first), the historical reason numberings of spec §1.2 (reasons are
// named with the current numbering even in the pre-2024 format without names), per-thread ordering
// (lines are taken in file order, which is per-CPU-buffer merge order on a host).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "trace/inhibit_trace_parser.h"
#include "trace/perf_text.h"

namespace apicv::trace {

inline constexpr size_t kMaxDistinctKeys = 256;
// Relative tolerance of the IRQ-window rate check: |ra - rb| <= kRateTolerance * max(ra, rb).
inline constexpr double kRateTolerance = 0.2;

// Where a trace is bad: 1-based line and column, and what.
struct TraceError {
  uint64_t line = 0;
  size_t column = 0;
  std::string what;
};

struct InhibitEvent {
  uint64_t line = 0;  // 1-based line number in the trace
  InhibitChangedRecord record;
};

// Streams a trace and yields its kvm_apicv_inhibit_changed lines.
class InhibitTraceReader {
 public:
  explicit InhibitTraceReader(std::istream& in) : in_(in) {}

  // The next event; false at the end of the input or at the first bad line (then error() is set
  // and every later call returns false).
  bool Next(InhibitEvent* ev);
  // Called with every line of another event (not a comment), e.g. to count workload lines.
  void set_other_line_observer(std::function<void(std::string_view)> f) {
    other_observer_ = std::move(f);
  }
  // Called with each row of a `perf kvm stat` VM-EXIT table: exit reason, samples.
  void set_exit_table_observer(std::function<void(const std::string&, uint64_t)> f) {
    kvm_stat_.set_row_observer(std::move(f));
  }
  // Lines that were perf text (perf script / perf trace) and perf kvm stat table lines.
  uint64_t perf_lines() const { return perf_lines_; }
  bool kvm_stat_table_seen() const { return kvm_stat_.seen(); }
  const std::optional<TraceError>& error() const { return error_; }

  uint64_t lines() const { return lines_; }
  uint64_t comment_lines() const { return comment_lines_; }
  uint64_t other_lines() const { return other_lines_; }

 private:
  enum class Read { kLine, kEnd, kTooLong };
  Read ReadLine();

  std::istream& in_;
  std::string line_;
  std::function<void(std::string_view)> other_observer_;
  KvmStatTableReader kvm_stat_;
  std::optional<TraceError> error_;
  uint64_t lines_ = 0, comment_lines_ = 0, other_lines_ = 0, perf_lines_ = 0;
};

struct Transition {
  bool set = false;
  unsigned reason = 0;
  unsigned long inhibits = 0;

  friend bool operator==(const Transition&, const Transition&) = default;
  friend bool operator<(const Transition& a, const Transition& b) {
    return std::tie(a.reason, a.set, a.inhibits) < std::tie(b.reason, b.set, b.inhibits);
  }
};
Transition TransitionOf(const InhibitChangedRecord& r);
// The event body as KVM prints it: "set reason=8, inhibits=0x300 IRQWIN|PIT_REINJ".
std::string FormatTransition(const Transition& t);
// "IRQWIN" for a known reason, "reason 13" otherwise.
std::string ReasonName(unsigned reason);

struct ReasonCounts {
  uint64_t set = 0;
  uint64_t cleared = 0;
};

// Counted-with-cap table: the first kMaxDistinctKeys keys are kept, later new keys go to `other`.
template <typename K>
struct CappedCounts {
  std::map<K, uint64_t> counts;
  uint64_t other = 0;
  void Add(const K& k, uint64_t n = 1) {
    auto it = counts.find(k);
    if (it != counts.end()) {
      it->second += n;
    } else if (counts.size() < kMaxDistinctKeys) {
      counts.emplace(k, n);
    } else {
      other += n;
    }
  }
};

// The seed-000 signature (spec §3.1): IRQWIN (reason 8) set and cleared while PIT_REINJ (bit 9)
// stays set in both masks, i.e. AVIC is inhibited anyway and every IRQ window still takes
// apicv_update_lock for write.
struct Seed000Signature {
  uint64_t irqwin_set = 0;                   // "set reason=8" with bits 8 and 9 in the mask
  uint64_t irqwin_cleared = 0;               // "cleared reason=8" with bit 9 and without bit 8
  uint64_t pit_reinj_lines = 0;              // any line whose mask has PIT_REINJ
  uint64_t first_ts_ns = 0, last_ts_ns = 0;  // of those lines (min/max)

  bool present() const { return irqwin_set > 0 && irqwin_cleared > 0; }
  double span_s() const { return static_cast<double>(last_ts_ns - first_ts_ns) / 1e9; }
  // IRQ windows (set lines) per second over the signature's span; 0 when the span is 0.
  double windows_per_s() const;
};

struct TraceSummary {
  uint64_t lines = 0, comment_lines = 0, other_lines = 0;
  uint64_t inhibit_lines = 0;
  uint64_t named_lines = 0, unnamed_lines = 0;  // current format / pre-2024 format
  uint64_t first_ts_ns = 0, last_ts_ns = 0;     // min/max over inhibit lines
  std::array<ReasonCounts, 64> reasons{};       // indexed by reason (the parser caps it at 63)
  CappedCounts<unsigned long> masks;
  CappedCounts<std::string> threads;  // "comm-pid"
  CappedCounts<int> cpus;
  CappedCounts<Transition> transitions;
  uint64_t runs = 0;  // transitions after collapsing consecutive repeats (see TransitionRun)
  Seed000Signature seed000;
  // The workload the IRQ-window rate is normalised to (see the file comment).
  uint64_t pit_ticks = 0;                 // "kvm_set_irq: gsi 0 level 1" lines
  CappedCounts<std::string> injections;   // kvm_inj_virq lines per thread ("comm-pid")
  CappedCounts<std::string> irqwin_sets;  // "set reason=8" lines per thread
  // Exits per reason, from kvm_exit lines or a `perf kvm stat` table (not both: see AddExits).
  CappedCounts<std::string> exit_reasons;
  uint64_t exit_lines = 0;        // kvm_exit lines
  uint64_t kvm_stat_samples = 0;  // samples of perf kvm stat VM-EXIT table rows
  uint64_t perf_lines = 0;        // lines read as perf text

  void Add(const InhibitChangedRecord& r);
  // A line of another event: counts the workload lines above and kvm_exit reasons.
  void AddOther(std::string_view line);
  // A row of a perf kvm stat VM-EXIT table.
  void AddExitTableRow(const std::string& reason, uint64_t samples);
  double span_s() const { return static_cast<double>(last_ts_ns - first_ts_ns) / 1e9; }
  // Inhibit lines per second over the span; 0 when the span is 0.
  double lines_per_s() const;

 private:
  Transition last_;
};

// Reads the whole trace into `out`; on a bad line returns the error (out holds what came before).
std::optional<TraceError> SummarizeTrace(std::istream& in, TraceSummary* out);

// One line, starting "verdict: ", naming the seed-000 signature and its rate or saying it is
// absent.
std::string Seed000Verdict(const TraceSummary& s);
// The human-readable report of `apicv trace summary` (`name` is the file name shown).
std::string FormatSummary(const TraceSummary& s, std::string_view name);
// The same figures as a JSON object.
std::string SummaryJson(const TraceSummary& s, std::string_view name);

// Consecutive equal transitions, collapsed.
struct TransitionRun {
  Transition t;
  uint64_t first_line = 0;  // line of the run's first event
  uint64_t count = 0;       // events in the run
};

class TransitionRuns {
 public:
  explicit TransitionRuns(std::istream& in) : reader_(in) {}
  // The next run; false at the end or on a bad line (then error() is set).
  bool Next(TransitionRun* run);
  const std::optional<TraceError>& error() const { return reader_.error(); }

 private:
  InhibitTraceReader reader_;
  std::optional<InhibitEvent> pending_;
  bool started_ = false;
};

// Opens a trace (again): diff reads each trace more than once instead of keeping it in memory.
using TraceOpener = std::function<std::unique_ptr<std::istream>()>;

struct DiffOptions {
  // false: both run sequences are compared from their first transition and must be equal.
  // true: each starts at the first transition they share (the first run of one trace, searched
  // for in the other), e.g. a host trace captured mid-run against an apicv run from VM creation;
  // they match when the overlap is equal, and what follows the shorter one is reported.
  bool align = false;
};

// One of the checks behind the diff's result.
enum class CheckVerdict { kAgree, kDiffer, kNotEvaluated };
struct DiffCheck {
  CheckVerdict verdict = CheckVerdict::kNotEvaluated;
  std::string detail;  // the figures, or why it differs / was not evaluated
};

// IRQWIN set lines per unit of workload in one trace; nullopt when the trace has none of it.
struct IrqWindowRate {
  std::string per;  // "PIT tick" or "injected interrupt"
  uint64_t irqwin_sets = 0, workload = 0;
  double value() const { return static_cast<double>(irqwin_sets) / static_cast<double>(workload); }
};
std::optional<IrqWindowRate> IrqWindowsPerTick(const TraceSummary& s);
std::optional<IrqWindowRate> IrqWindowsPerInjection(const TraceSummary& s);

struct TraceDiff {
  TraceSummary a, b;
  // The transition sequence check (with DiffOptions::align's rule); `result` needs all four.
  bool match = false;
  DiffCheck run_lengths, masks, rate;
  CheckVerdict result = CheckVerdict::kDiffer;
  bool align = false;                               // DiffOptions::align
  bool aligned = false;                             // align requested and a shared transition found
  uint64_t a_start_line = 0, b_start_line = 0;      // where the comparison started
  uint64_t a_skipped_runs = 0, b_skipped_runs = 0;  // runs before the start
  uint64_t runs_compared = 0;  // equal runs compared before the divergence or the end
  // The first divergence: the run of each trace at that position; nullopt where that trace had
  // ended (with both set or one set and one ended, !match).
  std::optional<TransitionRun> a_at, b_at;
  // Runs left in each trace after the overlap (align mode: reported, not a difference).
  uint64_t a_runs_after = 0, b_runs_after = 0;
  // Inhibit masks seen from each trace's start line to its end (capped at kMaxDistinctKeys).
  std::set<unsigned long> a_masks, b_masks;
};

struct DiffError {
  int which = 0;  // 0: trace A, 1: trace B
  TraceError error;
};

// Compares traces A and B; an error if either has a bad line or no kvm_apicv_inhibit_changed line.
std::optional<DiffError> DiffTraces(const TraceOpener& open_a, const TraceOpener& open_b,
                                    const DiffOptions& opt, TraceDiff* out);

// The report of `apicv trace diff`.
std::string FormatDiff(const TraceDiff& d, std::string_view a_name, std::string_view b_name);

}  // namespace apicv::trace
