// Summary and comparison of kvm_apicv_inhibit_changed traces; see inhibit_trace_compare.h.
#include "trace/inhibit_trace_compare.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <set>
#include <streambuf>
#include <tuple>
#include <vector>

#include "trace/kvm_events.h"
#include "x86/inhibit_reason.h"

namespace apicv::trace {

namespace {

constexpr std::string_view kEventTag = "kvm_apicv_inhibit_changed:";
constexpr unsigned kIrqWinBit = static_cast<unsigned>(x86::InhibitReason::kIrqWin);
constexpr unsigned kPitReinjBit = static_cast<unsigned>(x86::InhibitReason::kPitReinj);

__attribute__((format(printf, 2, 3))) void Appendf(std::string& out, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n > 0)
    out.append(buf,
               static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1);
}

unsigned long long U(uint64_t v) {
  return static_cast<unsigned long long>(v);
}

// "42212.649282": the ftrace timestamp as printed (microsecond resolution).
std::string Timestamp(uint64_t ns) {
  std::string s;
  Appendf(s, "%llu.%06llu", U(ns / 1000000000ull), U(ns % 1000000000ull / 1000ull));
  return s;
}

// The names of a mask as __print_flags() prints them, "(none)" for 0.
std::string MaskNames(unsigned long mask) {
  if (mask == 0) return "(none)";
  std::string s;
  unsigned long rest = mask;
  for (int i = 0; i < x86::kNrApicvInhibitReasons; ++i) {
    if (mask & (1ul << i)) {
      if (!s.empty()) s += '|';
      s += x86::kInhibitReasonNames[static_cast<size_t>(i)];
      rest &= ~(1ul << i);
    }
  }
  if (rest != 0) Appendf(s, "%s0x%lx", s.empty() ? "" : "|", rest);
  return s;
}

// Untrusted bytes for a terminal: printable ASCII as is, anything else (escape sequences, '\r',
// bytes >= 0x7f) as \xNN.
std::string Printable(std::string_view s) {
  std::string o;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      o += ch;
    } else {
      Appendf(o, "\\x%02x", c);
    }
  }
  return o;
}

bool IsEventTagAt(const std::string& line, size_t pos) {
  return pos == 0 || line[pos - 1] == ' ';
}

// Bytes as JSON string content: quotes, backslashes and every byte outside printable ASCII are
// escaped (comm is untrusted and need not be UTF-8; bytes >= 0x80 are read as Latin-1).
std::string JsonString(std::string_view s) {
  std::string o = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      Appendf(o, "\\u%04x", c);
    } else {
      o += ch;
    }
  }
  return o + "\"";
}

}  // namespace

InhibitTraceReader::Read InhibitTraceReader::ReadLine() {
  line_.clear();
  std::streambuf* sb = in_.rdbuf();
  if (sb == nullptr) return Read::kEnd;
  bool any = false;
  // One byte more than the limit for a trailing '\r', one more to see that the limit was passed.
  while (true) {
    const int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) return any ? Read::kLine : Read::kEnd;
    any = true;
    if (c == '\n') return Read::kLine;
    line_.push_back(static_cast<char>(c));
    // A NUL byte stops the read at once, so a binary file is reported as such.
    if (c == '\0') return Read::kLine;
    if (line_.size() > kMaxLineLength + 1) return Read::kTooLong;
  }
}

bool InhibitTraceReader::Next(InhibitEvent* ev) {
  while (!error_) {
    const Read r = ReadLine();
    if (r == Read::kEnd) return false;
    ++lines_;
    if (const size_t nul = line_.find('\0'); nul != std::string::npos) {
      error_ = TraceError{lines_, nul + 1,
                          "binary data (NUL byte): expected ftrace or perf text, e.g. "
                          "/sys/kernel/tracing/trace; a trace.dat is read from a file, not stdin"};
      return false;
    }
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (r == Read::kTooLong || line_.size() > kMaxLineLength) {
      error_ = TraceError{lines_, kMaxLineLength + 1,
                          "line longer than " + std::to_string(kMaxLineLength) + " bytes"};
      return false;
    }
    const size_t first = line_.find_first_not_of(" \t");
    if (first != std::string::npos && line_[first] == '#') {
      ++comment_lines_;
      continue;
    }
    // A pasted perf kvm stat report: its VM-EXIT table feeds the exit-reason section.
    switch (kvm_stat_.feed(line_)) {
      case KvmStatTableReader::Feed::kConsumed:
        ++other_lines_;
        ++perf_lines_;
        continue;
      case KvmStatTableReader::Feed::kBad:
        error_ = TraceError{lines_, kvm_stat_.error_column(), Printable(kvm_stat_.error())};
        return false;
      case KvmStatTableReader::Feed::kNotTable:
        break;
    }
    // perf script / perf trace lines become the ftrace line of the same event; an error in the
    // rewritten body is reported at the same place in the perf line.
    bool cpu_known = true;
    size_t body_in_ftrace = 0, body_in_source = 0;
    bool from_perf = false;
    {
      PerfLine p = PerfLineToFtrace(line_);
      if (p.status == PerfLine::Status::kBad) {
        error_ = TraceError{lines_, p.column, Printable(p.error)};
        return false;
      }
      if (p.status == PerfLine::Status::kOk) {
        from_perf = true;
        ++perf_lines_;
        cpu_known = p.cpu_known;
        body_in_ftrace = p.body_offset;
        body_in_source = p.source_offset;
        line_ = std::move(p.ftrace);
        if (line_.size() > kMaxLineLength) {
          error_ = TraceError{lines_, 1, "perf line too long once rewritten as ftrace text"};
          return false;
        }
      }
    }
    size_t tag = line_.find(kEventTag);
    while (tag != std::string::npos && !IsEventTagAt(line_, tag)) {
      tag = line_.find(kEventTag, tag + 1);
    }
    if (tag == std::string::npos) {
      ++other_lines_;
      if (other_observer_) other_observer_(line_);
      continue;
    }
    ParseResult p = ParseInhibitChangedLine(line_);
    if (!p.ok) {
      // The parser says "column N: what"; the column is kept separately.
      const size_t sep = p.error.find(": ");
      size_t column = p.column;
      if (from_perf) {
        // Columns of a rewritten line: inside a body copied from the perf line, the same byte
        // there; elsewhere (prefix, or a body rebuilt from fields) the body's start.
        const size_t at = column - 1;
        column = at >= body_in_ftrace && body_in_source != 0
                     ? body_in_source + (at - body_in_ftrace) + 1
                     : (body_in_source != 0 ? body_in_source + 1 : 1);
      }
      error_ = TraceError{lines_, column,
                          Printable(sep == std::string::npos ? p.error : p.error.substr(sep + 2))};
      return false;
    }
    ev->line = lines_;
    ev->record = std::move(p.record);
    if (!cpu_known) ev->record.cpu = -1;
    return true;
  }
  return false;
}

Transition TransitionOf(const InhibitChangedRecord& r) {
  return Transition{r.set, r.reason, r.inhibits};
}

std::string FormatTransition(const Transition& t) {
  return FormatApicvInhibitChanged(t.reason, t.set, t.inhibits);
}

std::string ReasonName(unsigned reason) {
  if (reason < static_cast<unsigned>(x86::kNrApicvInhibitReasons)) {
    return std::string(x86::kInhibitReasonNames[reason]);
  }
  return "reason " + std::to_string(reason);
}

double Seed000Signature::windows_per_s() const {
  const double span = span_s();
  return span > 0 ? static_cast<double>(irqwin_set) / span : 0;
}

double TraceSummary::lines_per_s() const {
  const double span = span_s();
  return span > 0 ? static_cast<double>(inhibit_lines) / span : 0;
}

void TraceSummary::Add(const InhibitChangedRecord& r) {
  if (inhibit_lines == 0 || r.ts_ns < first_ts_ns) first_ts_ns = r.ts_ns;
  if (inhibit_lines == 0 || r.ts_ns > last_ts_ns) last_ts_ns = r.ts_ns;
  const Transition t = TransitionOf(r);
  if (inhibit_lines == 0 || !(t == last_)) ++runs;
  last_ = t;
  ++inhibit_lines;
  ++(r.has_names ? named_lines : unnamed_lines);
  if (r.reason < reasons.size()) ++(r.set ? reasons[r.reason].set : reasons[r.reason].cleared);
  masks.Add(r.inhibits);
  threads.Add(r.comm + "-" + std::to_string(r.pid));
  if (r.reason == kIrqWinBit && r.set) irqwin_sets.Add(r.comm + "-" + std::to_string(r.pid));
  cpus.Add(r.cpu);
  transitions.Add(t);

  const bool pit = (r.inhibits >> kPitReinjBit) & 1;
  const bool irqwin = (r.inhibits >> kIrqWinBit) & 1;
  if (pit) ++seed000.pit_reinj_lines;
  if (r.reason == kIrqWinBit && pit && r.set == irqwin) {
    Seed000Signature& g = seed000;
    if (g.irqwin_set + g.irqwin_cleared == 0 || r.ts_ns < g.first_ts_ns) g.first_ts_ns = r.ts_ns;
    if (g.irqwin_set + g.irqwin_cleared == 0 || r.ts_ns > g.last_ts_ns) g.last_ts_ns = r.ts_ns;
    ++(r.set ? g.irqwin_set : g.irqwin_cleared);
  }
}

namespace {

// Position of event tag `tag` ("kvm_inj_virq: ") in `line` as an event name, or npos.
size_t FindEventTag(std::string_view line, std::string_view tag) {
  for (size_t at = line.find(tag); at != std::string_view::npos; at = line.find(tag, at + 1)) {
    if (at == 0 || line[at - 1] == ' ') return at;
  }
  return std::string_view::npos;
}

// "comm-pid" of an ftrace line whose event name starts at `tag`: the text before the last
// "[digits]" CPU column, trimmed. Empty when the prefix has no such column.
std::string ThreadOf(std::string_view line, size_t tag) {
  std::string_view prefix = line.substr(0, tag);
  for (size_t open = prefix.rfind('['); open != std::string_view::npos && open > 0;
       open = prefix.rfind('[', open - 1)) {
    const size_t close = prefix.find(']', open);
    if (close == std::string_view::npos || close == open + 1) continue;
    bool digits = true;
    for (size_t i = open + 1; i < close; ++i)
      digits = digits && prefix[i] >= '0' && prefix[i] <= '9';
    if (!digits) continue;
    std::string_view task = prefix.substr(0, open);
    const size_t b = task.find_first_not_of(' ');
    const size_t e = task.find_last_not_of(' ');
    if (b == std::string_view::npos) return {};
    return std::string(task.substr(b, e - b + 1));
  }
  return {};
}

}  // namespace

void TraceSummary::AddOther(std::string_view line) {
  static constexpr std::string_view kSetIrq = "kvm_set_irq: ";
  static constexpr std::string_view kInjVirq = "kvm_inj_virq: ";
  static constexpr std::string_view kExit = "kvm_exit: ";
  if (const size_t at = FindEventTag(line, kSetIrq); at != std::string_view::npos) {
    // The PIT raising GSI 0 (pit_do_work: level 1, then 0); any source, as hosts print it.
    if (line.substr(at + kSetIrq.size()).starts_with("gsi 0 level 1 ")) ++pit_ticks;
  } else if (const size_t inj = FindEventTag(line, kInjVirq); inj != std::string_view::npos) {
    injections.Add(ThreadOf(line, inj));
  } else if (const size_t ex = FindEventTag(line, kExit); ex != std::string_view::npos) {
    // "reason %s rip" (before 5.x) or "vcpu %u reason %s%s%s rip": the name may hold spaces
    // (SVM "DE excp") and VMX flags, so it ends at " rip ".
    std::string_view body = line.substr(ex + kExit.size());
    size_t r = body.starts_with("reason ") ? 0 : body.find(" reason ");
    if (r == std::string_view::npos) return;
    body.remove_prefix(r == 0 ? 7 : r + 8);
    const size_t rip = body.find(" rip ");
    const std::string_view name = body.substr(0, rip);
    if (name.empty()) return;
    ++exit_lines;
    if (kvm_stat_samples == 0) exit_reasons.Add(std::string(name.substr(0, 64)));
  }
}

void TraceSummary::AddExitTableRow(const std::string& reason, uint64_t samples) {
  // A trace holds either kvm_exit lines or a perf kvm stat table; when both appear the table
  // (which perf computed from complete exit/entry pairs) wins.
  if (kvm_stat_samples == 0) exit_reasons = {};
  kvm_stat_samples += samples;
  exit_reasons.Add(reason.substr(0, 64), samples);
}

std::optional<IrqWindowRate> IrqWindowsPerTick(const TraceSummary& s) {
  if (s.pit_ticks == 0) return std::nullopt;
  return IrqWindowRate{"PIT tick", s.reasons[kIrqWinBit].set, s.pit_ticks};
}

std::optional<IrqWindowRate> IrqWindowsPerInjection(const TraceSummary& s) {
  IrqWindowRate r{"injected interrupt", 0, 0};
  for (const auto& [thread, sets] : s.irqwin_sets.counts) {
    const auto it = s.injections.counts.find(thread);
    if (it == s.injections.counts.end()) continue;
    r.irqwin_sets += sets;
    r.workload += it->second;
  }
  if (r.workload == 0) return std::nullopt;
  return r;
}

std::optional<TraceError> SummarizeTrace(std::istream& in, TraceSummary* out) {
  InhibitTraceReader reader(in);
  reader.set_other_line_observer([out](std::string_view line) { out->AddOther(line); });
  reader.set_exit_table_observer(
      [out](const std::string& reason, uint64_t n) { out->AddExitTableRow(reason, n); });
  InhibitEvent ev;
  while (reader.Next(&ev)) out->Add(ev.record);
  out->perf_lines = reader.perf_lines();
  out->lines = reader.lines();
  out->comment_lines = reader.comment_lines();
  out->other_lines = reader.other_lines();
  return reader.error();
}

std::string Seed000Verdict(const TraceSummary& s) {
  const Seed000Signature& g = s.seed000;
  std::string v = "verdict: seed-000 signature ";
  if (!g.present()) {
    Appendf(v,
            "absent: no IRQWIN (reason 8) set/cleared pair with PIT_REINJ (bit 9) set in both "
            "masks (IRQWIN set with PIT_REINJ: %llu, cleared with PIT_REINJ: %llu; lines with "
            "PIT_REINJ: %llu)",
            U(g.irqwin_set), U(g.irqwin_cleared), U(g.pit_reinj_lines));
    return v;
  }
  Appendf(v,
          "PRESENT: IRQWIN (reason 8) set %llu and cleared %llu times while PIT_REINJ (bit 9) "
          "stays set in both masks, ",
          U(g.irqwin_set), U(g.irqwin_cleared));
  if (g.span_s() > 0) {
    Appendf(v, "%.3f IRQ windows/s over %.6f s", g.windows_per_s(), g.span_s());
  } else {
    v += "rate n/a (one timestamp)";
  }
  v += "; AVIC stays inhibited by PIT_REINJ, yet every window takes apicv_update_lock for write "
       "(spec §3.1)";
  return v;
}

namespace {

std::vector<std::pair<std::string, uint64_t>> SortedExitReasons(const TraceSummary& s) {
  std::vector<std::pair<std::string, uint64_t>> rows(s.exit_reasons.counts.begin(),
                                                     s.exit_reasons.counts.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return rows;
}

std::string FormatExitReasons(const TraceSummary& s) {
  if (s.exit_reasons.counts.empty()) return {};
  std::string o;
  if (s.kvm_stat_samples != 0) {
    Appendf(o, "exits: %llu samples in a perf kvm stat VM-EXIT table\n", U(s.kvm_stat_samples));
  } else {
    Appendf(o, "exits: %llu kvm_exit lines\n", U(s.exit_lines));
  }
  o += "exit reasons (as KVM names them, most frequent first):\n";
  for (const auto& [reason, n] : SortedExitReasons(s)) {
    Appendf(o, "  %-32s %10llu\n", Printable(reason).c_str(), U(n));
  }
  if (s.exit_reasons.other) {
    Appendf(o, "  %-32s %10llu\n", "(other reasons)", U(s.exit_reasons.other));
  }
  return o;
}

}  // namespace

std::string FormatSummary(const TraceSummary& s, std::string_view name) {
  std::string o;
  Appendf(o, "trace: %.*s\n", static_cast<int>(name.size()), name.data());
  Appendf(o,
          "lines: %llu read, %llu kvm_apicv_inhibit_changed, %llu comments, %llu other "
          "(skipped)\n",
          U(s.lines), U(s.inhibit_lines), U(s.comment_lines), U(s.other_lines));
  Appendf(o,
          "format: %llu lines with reason names (2024+), %llu without (pre-2024: reasons read "
          "with the current KVM numbering, spec §1.2)\n",
          U(s.named_lines), U(s.unnamed_lines));
  if (s.inhibit_lines == 0) {
    o += "time span: n/a\n";
  } else {
    o += "time span: " + Timestamp(s.first_ts_ns) + " .. " + Timestamp(s.last_ts_ns);
    Appendf(o, " (%.6f s)", s.span_s());
    if (s.span_s() > 0) {
      Appendf(o, ", %.3f lines/s\n", s.lines_per_s());
    } else {
      o += ", lines/s n/a\n";
    }
  }
  Appendf(o, "transitions: %llu after collapsing consecutive repeats\n", U(s.runs));
  o += "reasons (KVM numbering, spec §1.1):\n";
  Appendf(o, "  %6s  %-20s %10s %10s\n", "reason", "name", "set", "cleared");
  for (unsigned i = 0; i < s.reasons.size(); ++i) {
    const ReasonCounts& c = s.reasons[i];
    if (i >= static_cast<unsigned>(x86::kNrApicvInhibitReasons) && c.set + c.cleared == 0) {
      continue;
    }
    Appendf(o, "  %6u  %-20s %10llu %10llu\n", i, ReasonName(i).c_str(), U(c.set), U(c.cleared));
  }
  o += "inhibit masks:\n";
  for (const auto& [mask, n] : s.masks.counts) {
    Appendf(o, "  0x%-6lx %-40s %10llu\n", mask, MaskNames(mask).c_str(), U(n));
  }
  if (s.masks.other) Appendf(o, "  %-49s %10llu\n", "(other masks)", U(s.masks.other));
  o += "threads (comm-pid):\n";
  for (const auto& [t, n] : s.threads.counts) {
    Appendf(o, "  %-40s %10llu\n", Printable(t.substr(0, 200)).c_str(), U(n));
  }
  if (s.threads.other) Appendf(o, "  %-40s %10llu\n", "(other threads)", U(s.threads.other));
  o += "cpus:\n";
  for (const auto& [c, n] : s.cpus.counts) {
    if (c < 0) {
      Appendf(o, "  [???] %10llu (perf trace prints no CPU)\n", U(n));
    } else {
      Appendf(o, "  [%03d] %10llu\n", c, U(n));
    }
  }
  if (s.cpus.other) Appendf(o, "  (other cpus) %10llu\n", U(s.cpus.other));
  o += FormatExitReasons(s);
  o += Seed000Verdict(s) + "\n";
  return o;
}

std::string SummaryJson(const TraceSummary& s, std::string_view name) {
  std::string o = "{\n  \"trace\": " + JsonString(name) + ",\n";
  Appendf(o,
          "  \"lines\": %llu,\n  \"inhibit_lines\": %llu,\n  \"comment_lines\": %llu,\n"
          "  \"other_lines\": %llu,\n  \"named_lines\": %llu,\n  \"unnamed_lines\": %llu,\n",
          U(s.lines), U(s.inhibit_lines), U(s.comment_lines), U(s.other_lines), U(s.named_lines),
          U(s.unnamed_lines));
  o += "  \"first_ts\": \"" + Timestamp(s.first_ts_ns) + "\",\n  \"last_ts\": \"" +
       Timestamp(s.last_ts_ns) + "\",\n";
  Appendf(o, "  \"span_s\": %.6f,\n  \"lines_per_s\": %.3f,\n  \"transitions\": %llu,\n",
          s.span_s(), s.lines_per_s(), U(s.runs));
  o += "  \"reasons\": [";
  bool first = true;
  for (unsigned i = 0; i < s.reasons.size(); ++i) {
    const ReasonCounts& c = s.reasons[i];
    if (i >= static_cast<unsigned>(x86::kNrApicvInhibitReasons) && c.set + c.cleared == 0) {
      continue;
    }
    Appendf(o, "%s\n    {\"reason\": %u, \"name\": %s, \"set\": %llu, \"cleared\": %llu}",
            first ? "" : ",", i, JsonString(ReasonName(i)).c_str(), U(c.set), U(c.cleared));
    first = false;
  }
  o += "\n  ],\n  \"masks\": [";
  first = true;
  for (const auto& [mask, n] : s.masks.counts) {
    Appendf(o, "%s\n    {\"mask\": \"0x%lx\", \"names\": %s, \"count\": %llu}", first ? "" : ",",
            mask, JsonString(MaskNames(mask)).c_str(), U(n));
    first = false;
  }
  Appendf(o, "\n  ],\n  \"other_masks\": %llu,\n  \"threads\": [", U(s.masks.other));
  first = true;
  for (const auto& [t, n] : s.threads.counts) {
    o += first ? "\n    {\"thread\": " : ",\n    {\"thread\": ";
    o += JsonString(t);
    Appendf(o, ", \"count\": %llu}", U(n));
    first = false;
  }
  Appendf(o, "\n  ],\n  \"other_threads\": %llu,\n  \"cpus\": [", U(s.threads.other));
  first = true;
  for (const auto& [c, n] : s.cpus.counts) {
    Appendf(o, "%s\n    {\"cpu\": %d, \"count\": %llu}", first ? "" : ",", c, U(n));
    first = false;
  }
  Appendf(o, "\n  ],\n  \"other_cpus\": %llu,\n", U(s.cpus.other));
  Appendf(o, "  \"exit_lines\": %llu,\n  \"kvm_stat_samples\": %llu,\n  \"exit_reasons\": [",
          U(s.exit_lines), U(s.kvm_stat_samples));
  first = true;
  for (const auto& [reason, n] : SortedExitReasons(s)) {
    o += first ? "\n    {\"reason\": " : ",\n    {\"reason\": ";
    o += JsonString(reason);
    Appendf(o, ", \"count\": %llu}", U(n));
    first = false;
  }
  Appendf(o, "\n  ],\n  \"other_exit_reasons\": %llu,\n", U(s.exit_reasons.other));
  const Seed000Signature& g = s.seed000;
  Appendf(o,
          "  \"seed000\": {\"present\": %s, \"irqwin_set_with_pit_reinj\": %llu, "
          "\"irqwin_cleared_with_pit_reinj\": %llu, \"pit_reinj_lines\": %llu, \"span_s\": %.6f, "
          "\"irq_windows_per_s\": %.3f},\n",
          g.present() ? "true" : "false", U(g.irqwin_set), U(g.irqwin_cleared),
          U(g.pit_reinj_lines), g.span_s(), g.windows_per_s());
  o += "  \"verdict\": " + JsonString(Seed000Verdict(s)) + "\n}\n";
  return o;
}

bool TransitionRuns::Next(TransitionRun* run) {
  if (!started_) {
    started_ = true;
    InhibitEvent e;
    if (reader_.Next(&e)) pending_ = std::move(e);
  }
  if (!pending_) return false;
  run->t = TransitionOf(pending_->record);
  run->first_line = pending_->line;
  run->count = 1;
  pending_.reset();
  InhibitEvent e;
  while (reader_.Next(&e)) {
    if (TransitionOf(e.record) == run->t) {
      ++run->count;
    } else {
      pending_ = std::move(e);
      break;
    }
  }
  return true;
}

namespace {

// One pass over a trace as runs, reopened on demand.
struct RunStream {
  const TraceOpener& open;
  std::unique_ptr<std::istream> in;
  std::unique_ptr<TransitionRuns> runs;

  explicit RunStream(const TraceOpener& o) : open(o) {}
  bool Restart() {
    runs.reset();
    in = open();
    if (!in) return false;
    runs = std::make_unique<TransitionRuns>(*in);
    return true;
  }
  bool Next(TransitionRun* r) { return runs && runs->Next(r); }
};

std::optional<TraceError> StreamError(const RunStream& s) {
  if (!s.runs) return TraceError{0, 0, "cannot reopen the trace"};
  return s.runs->error();
}

}  // namespace

std::optional<DiffError> DiffTraces(const TraceOpener& open_a, const TraceOpener& open_b,
                                    const DiffOptions& opt, TraceDiff* out) {
  *out = TraceDiff{};
  out->align = opt.align;
  // Pass 1: validate and count both traces before comparing anything.
  for (int which = 0; which < 2; ++which) {
    TraceSummary& s = which == 0 ? out->a : out->b;
    std::unique_ptr<std::istream> in = (which == 0 ? open_a : open_b)();
    if (!in) return DiffError{which, TraceError{0, 0, "cannot open the trace"}};
    if (auto e = SummarizeTrace(*in, &s)) return DiffError{which, *e};
    if (s.inhibit_lines == 0) {
      return DiffError{which, TraceError{0, 0,
                                         "no kvm_apicv_inhibit_changed lines (" +
                                             std::to_string(s.lines) + " lines read)"}};
    }
  }

  RunStream a(open_a), b(open_b);
  TransitionRun a0, b0;
  if (!a.Restart() || !a.Next(&a0)) return DiffError{0, StreamError(a).value_or(TraceError{})};
  if (!b.Restart() || !b.Next(&b0)) return DiffError{1, StreamError(b).value_or(TraceError{})};
  TransitionRun ca = a0, cb = b0;

  if (opt.align && !(a0.t == b0.t)) {
    // B's first transition in A, else A's first transition in B.
    TransitionRun x;
    uint64_t skipped = 0;
    while (a.Next(&x)) {
      ++skipped;
      if (x.t == b0.t) {
        out->aligned = true;
        ca = x;
        out->a_skipped_runs = skipped;
        break;
      }
    }
    if (!out->aligned) {
      if (auto e = StreamError(a)) return DiffError{0, *e};
      if (!a.Restart() || !a.Next(&ca)) return DiffError{0, StreamError(a).value_or(TraceError{})};
      skipped = 0;
      while (b.Next(&x)) {
        ++skipped;
        if (x.t == a0.t) {
          out->aligned = true;
          cb = x;
          out->b_skipped_runs = skipped;
          break;
        }
      }
      if (!out->aligned) {
        if (auto e = StreamError(b)) return DiffError{1, *e};
        if (!b.Restart() || !b.Next(&cb)) {
          return DiffError{1, StreamError(b).value_or(TraceError{})};
        }
      }
    }
  } else if (opt.align) {
    out->aligned = true;
  }
  out->a_start_line = ca.first_line;
  out->b_start_line = cb.first_line;

  // The first run-length difference inside the overlap: index, and each side's run.
  std::optional<std::tuple<uint64_t, TransitionRun, TransitionRun>> length_diff;
  auto add_mask = [](std::set<unsigned long>& masks, unsigned long m) {
    if (masks.size() < kMaxDistinctKeys) masks.insert(m);
  };
  if (opt.align && !out->aligned) {
    // Nothing in common: they differ at their first transitions.
    out->a_at = ca;
    out->b_at = cb;
  } else {
    while (true) {
      if (!(ca.t == cb.t)) {
        out->a_at = ca;
        out->b_at = cb;
        break;
      }
      add_mask(out->a_masks, ca.t.inhibits);
      add_mask(out->b_masks, cb.t.inhibits);
      // An aligned overlap's first run may have started before a capture began.
      if (ca.count != cb.count && !length_diff && !(opt.align && out->runs_compared == 0)) {
        length_diff = std::make_tuple(out->runs_compared, ca, cb);
      }
      ++out->runs_compared;
      const bool ha = a.Next(&ca);
      const bool hb = b.Next(&cb);
      if (!ha && !hb) {
        out->match = true;
        break;
      }
      if (!ha || !hb) {
        if (ha) out->a_at = ca;
        if (hb) out->b_at = cb;
        // With --align the overlap is what is compared; the longer trace's rest is reported, and
        // its masks still count.
        out->match = opt.align;
        TransitionRun rest = ha ? ca : cb;
        uint64_t& after = ha ? out->a_runs_after : out->b_runs_after;
        std::set<unsigned long>& masks = ha ? out->a_masks : out->b_masks;
        RunStream& longer = ha ? a : b;
        after = 1;
        add_mask(masks, rest.t.inhibits);
        while (longer.Next(&rest)) {
          ++after;
          add_mask(masks, rest.t.inhibits);
        }
        break;
      }
    }
  }
  if (auto e = StreamError(a)) return DiffError{0, *e};
  if (auto e = StreamError(b)) return DiffError{1, *e};

  // Run lengths: equal inside the overlap; its last run may end where a capture ended.
  if (!out->match) {
    out->run_lengths = {CheckVerdict::kNotEvaluated, "the transition sequences differ"};
  } else if (length_diff && std::get<0>(*length_diff) + 1 < out->runs_compared) {
    const auto& [k, ra, rb] = *length_diff;
    out->run_lengths = {CheckVerdict::kDiffer,
                        "transition " + std::to_string(k + 1) + " (" + FormatTransition(ra.t) +
                            "): a line " + std::to_string(ra.first_line) + " x" +
                            std::to_string(ra.count) + ", b line " + std::to_string(rb.first_line) +
                            " x" + std::to_string(rb.count)};
  } else {
    out->run_lengths = {CheckVerdict::kAgree,
                        std::to_string(out->runs_compared) + " runs, equal lengths" +
                            (opt.align ? " (the overlap's first and last runs may be cut)"
                                       : " (the last run may be cut)")};
  }

  // Masks seen from the start of the comparison to the end of each trace.
  auto mask_list = [](const std::set<unsigned long>& masks) {
    std::string o;
    for (unsigned long m : masks) Appendf(o, "%s0x%lx", o.empty() ? "" : " ", m);
    return o;
  };
  if (!out->match) {
    out->masks = {CheckVerdict::kNotEvaluated, "the transition sequences differ"};
  } else if (out->a_masks != out->b_masks) {
    out->masks = {CheckVerdict::kDiffer,
                  "a: " + mask_list(out->a_masks) + "; b: " + mask_list(out->b_masks)};
  } else {
    out->masks = {CheckVerdict::kAgree, mask_list(out->a_masks)};
  }

  // The IRQ-window rate per unit of workload: per PIT tick when both traces show the ticks, else
  // per injected interrupt on the threads that open IRQ windows.
  auto pt_a = IrqWindowsPerTick(out->a), pt_b = IrqWindowsPerTick(out->b);
  auto pi_a = IrqWindowsPerInjection(out->a), pi_b = IrqWindowsPerInjection(out->b);
  std::optional<IrqWindowRate> ra, rb;
  if (pt_a && pt_b) {
    ra = pt_a;
    rb = pt_b;
  } else if (pi_a && pi_b) {
    ra = pi_a;
    rb = pi_b;
  }
  if (!ra) {
    std::string why;
    for (int which = 0; which < 2; ++which) {
      const bool tick = which == 0 ? pt_a.has_value() : pt_b.has_value();
      const bool inj = which == 0 ? pi_a.has_value() : pi_b.has_value();
      if (!tick && !inj) {
        Appendf(why,
                "%s%c has no PIT tick (kvm_set_irq: gsi 0 level 1) and no kvm_inj_virq line "
                "on a thread that opens IRQ windows",
                why.empty() ? "" : "; ", "ab"[which]);
      }
    }
    if (why.empty()) why = "one trace shows PIT ticks, the other only injected interrupts";
    out->rate = {CheckVerdict::kNotEvaluated, why};
  } else {
    const double va = ra->value(), vb = rb->value();
    const bool ok = std::fabs(va - vb) <= kRateTolerance * std::max(va, vb);
    std::string d;
    Appendf(d, "IRQWIN set lines per %s: a %llu/%llu = %.3f, b %llu/%llu = %.3f (tolerance %.0f%%)",
            ra->per.c_str(), U(ra->irqwin_sets), U(ra->workload), va, U(rb->irqwin_sets),
            U(rb->workload), vb, 100 * kRateTolerance);
    out->rate = {ok ? CheckVerdict::kAgree : CheckVerdict::kDiffer, d};
  }

  if (!out->match || out->run_lengths.verdict == CheckVerdict::kDiffer ||
      out->masks.verdict == CheckVerdict::kDiffer || out->rate.verdict == CheckVerdict::kDiffer) {
    out->result = CheckVerdict::kDiffer;
  } else if (out->rate.verdict == CheckVerdict::kNotEvaluated) {
    out->result = CheckVerdict::kNotEvaluated;
  } else {
    out->result = CheckVerdict::kAgree;
  }
  return std::nullopt;
}

std::string FormatDiff(const TraceDiff& d, std::string_view a_name, std::string_view b_name) {
  std::string o;
  auto describe = [&o](char tag, std::string_view name, const TraceSummary& s) {
    Appendf(o,
            "%c: %.*s: %llu kvm_apicv_inhibit_changed lines, %llu transitions after collapsing "
            "repeats; seed-000 signature %s\n",
            tag, static_cast<int>(name.size()), name.data(), U(s.inhibit_lines), U(s.runs),
            s.seed000.present() ? "present" : "absent");
  };
  describe('a', a_name, d.a);
  describe('b', b_name, d.b);
  if (!d.align) {
    o += "compared from the first transition of each\n";
  } else if (d.aligned) {
    Appendf(o,
            "aligned: a from line %llu (%llu transitions skipped), b from line %llu (%llu "
            "transitions skipped)\n",
            U(d.a_start_line), U(d.a_skipped_runs), U(d.b_start_line), U(d.b_skipped_runs));
  } else {
    o += "aligned: no transition in common to align on\n";
  }
  auto at = [&o](char tag, const std::optional<TransitionRun>& r) {
    if (r) {
      Appendf(o, "  %c line %llu: %s", tag, U(r->first_line), FormatTransition(r->t).c_str());
      if (r->count > 1) Appendf(o, " (x%llu)", U(r->count));
      o += "\n";
    } else {
      Appendf(o, "  %c: (end of trace)\n", tag);
    }
  };
  if (d.match) {
    auto check = [&o](const char* what, const DiffCheck& c) {
      const char* v = c.verdict == CheckVerdict::kAgree    ? "agree"
                      : c.verdict == CheckVerdict::kDiffer ? "DIFFER"
                                                           : "NOT EVALUATED";
      Appendf(o, "  %s: %s: %s\n", what, v, c.detail.c_str());
    };
    Appendf(o, "  transitions: agree: %llu equal", U(d.runs_compared));
    if (d.a_runs_after) Appendf(o, "; a continues for %llu more", U(d.a_runs_after));
    if (d.b_runs_after) Appendf(o, "; b continues for %llu more", U(d.b_runs_after));
    o += "\n";
    check("run lengths", d.run_lengths);
    check("masks seen", d.masks);
    check("IRQ-window rate", d.rate);
    if (d.result == CheckVerdict::kAgree) {
      Appendf(o, "result: MATCH: %llu transitions equal, run lengths, masks and rate agree\n",
              U(d.runs_compared));
    } else if (d.result == CheckVerdict::kNotEvaluated) {
      Appendf(o,
              "result: NOT EVALUATED: %llu transitions, run lengths and masks agree; the rate "
              "cannot be compared (above)\n",
              U(d.runs_compared));
    } else {
      Appendf(o, "result: DIFFER: %s\n",
              d.run_lengths.verdict == CheckVerdict::kDiffer ? "run lengths"
              : d.masks.verdict == CheckVerdict::kDiffer     ? "masks seen"
                                                             : "IRQ-window rate");
    }
  } else {
    Appendf(o, "result: DIFFER at transition %llu (after %llu equal)\n", U(d.runs_compared + 1),
            U(d.runs_compared));
    at('a', d.a_at);
    at('b', d.b_at);
  }
  // Counts side by side, over the union of transitions seen.
  std::set<Transition> keys;
  for (const auto& [t, n] : d.a.transitions.counts) keys.insert(t);
  for (const auto& [t, n] : d.b.transitions.counts) keys.insert(t);
  Appendf(o, "counts (lines per transition): %-44s %10s %10s\n", "", "a", "b");
  for (const Transition& t : keys) {
    auto ia = d.a.transitions.counts.find(t);
    auto ib = d.b.transitions.counts.find(t);
    Appendf(o, "  %-73s %10llu %10llu\n", FormatTransition(t).c_str(),
            U(ia == d.a.transitions.counts.end() ? 0 : ia->second),
            U(ib == d.b.transitions.counts.end() ? 0 : ib->second));
  }
  if (d.a.transitions.other + d.b.transitions.other) {
    Appendf(o, "  %-73s %10llu %10llu\n", "(other transitions)", U(d.a.transitions.other),
            U(d.b.transitions.other));
  }
  Appendf(o, "  %-73s %10llu %10llu\n", "total", U(d.a.inhibit_lines), U(d.b.inhibit_lines));
  return o;
}

}  // namespace apicv::trace
