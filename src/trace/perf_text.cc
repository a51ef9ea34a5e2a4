// perf text dialects as ftrace text; see perf_text.h.
#include "trace/perf_text.h"

#include <charconv>
#include <cstdio>
#include <map>

#include "trace/exit_reasons.h"
#include "trace/kvm_events.h"

namespace apicv::trace {

namespace {

bool IsIdent(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}
std::string_view RTrim(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
std::string_view LTrim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}
// The last space-separated token of `s` (already right-trimmed) and what precedes it.
std::string_view LastToken(std::string_view s, std::string_view* before) {
  const size_t sp = s.find_last_of(" \t");
  if (sp == std::string_view::npos) {
    *before = {};
    return s;
  }
  *before = RTrim(s.substr(0, sp));
  return s.substr(sp + 1);
}

PerfLine Bad(size_t column0, std::string what) {
  PerfLine p;
  p.status = PerfLine::Status::kBad;
  p.column = column0 + 1;
  p.error = std::move(what);
  return p;
}

// "secs.frac" with 6 (usecs) or 9 (--ns) fraction digits.
bool IsPerfTimestamp(std::string_view t) {
  const size_t dot = t.find('.');
  if (dot == std::string_view::npos || !IsDigits(t.substr(0, dot))) return false;
  const std::string_view frac = t.substr(dot + 1);
  return (frac.size() == 6 || frac.size() == 9) && IsDigits(frac) && dot <= 12;
}

// Where "kvm:<name>" starts as a token, the end of the name, and the character after it.
struct EventToken {
  size_t start = std::string_view::npos, name_begin = 0, name_end = 0;
  char after = '\0';
};
EventToken FindKvmEvent(std::string_view line) {
  for (size_t at = line.find("kvm:"); at != std::string_view::npos;
       at = line.find("kvm:", at + 1)) {
    if (at != 0 && line[at - 1] != ' ' && line[at - 1] != '\t') continue;
    size_t e = at + 4;
    while (e < line.size() && IsIdent(line[e])) ++e;
    if (e == at + 4 || e >= line.size() || (line[e] != ':' && line[e] != '(')) continue;
    return EventToken{at, at + 4, e, line[e]};
  }
  return {};
}

std::string FtracePrefix(std::string_view comm, std::string_view tid, std::string_view cpu,
                         std::string_view ts) {
  std::string o;
  o.reserve(64);
  o.append(comm);
  o += '-';
  o.append(tid);
  o += " [";
  o.append(cpu);
  o += "] ..... ";
  o.append(ts);
  o += ": ";
  return o;
}

PerfLine PerfScriptLine(std::string_view line, const EventToken& ev) {
  const std::string_view name = line.substr(ev.name_begin, ev.name_end - ev.name_begin);
  if (line.substr(ev.name_end, 2) != ": ") return Bad(ev.name_end, "missing event body");
  const size_t body_at = ev.name_end + 2;
  std::string_view rest = RTrim(line.substr(0, ev.start));
  if (rest.empty() || rest.back() != ':') return Bad(ev.start, "expected \"<secs>.<usecs>: \"");
  rest.remove_suffix(1);
  std::string_view before;
  const std::string_view ts = LastToken(rest, &before);
  if (!IsPerfTimestamp(ts)) {
    return Bad(static_cast<size_t>(ts.data() - line.data()),
               "bad timestamp (want <secs>.<6 or 9 digits>:)");
  }
  rest = before;
  const std::string_view cpu = LastToken(rest, &before);
  if (cpu.size() < 3 || cpu.front() != '[' || cpu.back() != ']' ||
      !IsDigits(cpu.substr(1, cpu.size() - 2)) || cpu.size() > 12) {
    return Bad(static_cast<size_t>(cpu.data() - line.data()),
               "missing the \"[cpu]\" column (perf script -F comm,tid,cpu,time,event,trace)");
  }
  rest = before;
  std::string_view tid = LastToken(rest, &before);
  const size_t slash = tid.find('/');
  if (slash != std::string_view::npos) tid = tid.substr(slash + 1);  // "-F pid,tid": pid/tid
  if (!IsDigits(tid) || tid.size() > 9) {
    return Bad(static_cast<size_t>(tid.data() - line.data()), "bad tid");
  }
  const std::string_view comm = LTrim(before);
  if (comm.empty()) return Bad(0, "missing comm");
  PerfLine p;
  p.status = PerfLine::Status::kOk;
  p.ftrace = FtracePrefix(comm, tid, cpu.substr(1, cpu.size() - 2), ts);
  p.ftrace.append(name);
  p.ftrace += ": ";
  p.body_offset = p.ftrace.size();
  p.source_offset = body_at;
  p.ftrace.append(line.substr(body_at));
  return p;
}

// perf trace's "name: value, name: value" (values "%ld", or 0x.. for pointers); false when the
// args are not such a list (then they are the TP_printk text, --libtraceevent_print).
bool ParseFields(std::string_view args, std::map<std::string, uint64_t>* out) {
  while (!args.empty()) {
    const size_t colon = args.find(": ");
    if (colon == 0 || colon == std::string_view::npos) return false;
    for (size_t i = 0; i < colon; ++i) {
      if (!IsIdent(args[i])) return false;
    }
    const std::string key(args.substr(0, colon));
    args.remove_prefix(colon + 2);
    const size_t comma = args.find(", ");
    std::string_view v = args.substr(0, comma);
    args = comma == std::string_view::npos ? std::string_view{} : args.substr(comma + 2);
    bool neg = false;
    if (!v.empty() && v.front() == '-') {
      neg = true;
      v.remove_prefix(1);
    }
    int base = 10;
    if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
      base = 16;
      v.remove_prefix(2);
    }
    uint64_t x = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x, base);
    if (ec != std::errc() || p != v.data() + v.size()) return false;
    (*out)[key] = neg ? ~x + 1 : x;  // "%ld" of an unsigned long with bit 63 set
  }
  return true;
}

// The TP_printk body of a kvm event from its fields (perf trace left out fields equal to 0);
// the events the summary reads are rebuilt, other events keep perf's text.
std::string BodyFromFields(std::string_view name, const std::map<std::string, uint64_t>& f,
                           std::string_view args) {
  auto get = [&f](const char* k) {
    const auto it = f.find(k);
    return it == f.end() ? uint64_t{0} : it->second;
  };
  if (name == "kvm_apicv_inhibit_changed") {
    return FormatApicvInhibitChanged(static_cast<unsigned>(get("reason")), get("set") != 0,
                                     static_cast<unsigned long>(get("inhibits")));
  }
  if (name == "kvm_set_irq") {
    return FormatSetIrq(static_cast<unsigned>(get("gsi")), static_cast<int>(get("level")),
                        static_cast<int>(get("irq_source_id")));
  }
  if (name == "kvm_inj_virq") {
    if (f.count("irq")) return "irq " + std::to_string(static_cast<unsigned>(get("irq")));
    return FormatInjVirq(static_cast<unsigned>(get("vector")), get("soft") != 0,
                         get("reinjected") != 0);
  }
  if (name == "kvm_exit") {
    char buf[256];
    std::snprintf(
        buf, sizeof(buf),
        "vcpu %u reason %s rip 0x%llx info1 0x%016llx info2 0x%016llx intr_info 0x%08x "
        "error_code 0x%08x",
        static_cast<unsigned>(get("vcpu_id")),
        ExitReasonName(get("exit_reason") & 0xffffffffull, static_cast<uint32_t>(get("isa")))
            .c_str(),
        static_cast<unsigned long long>(get("guest_rip")),
        static_cast<unsigned long long>(get("info1")),
        static_cast<unsigned long long>(get("info2")), static_cast<unsigned>(get("intr_info")),
        static_cast<unsigned>(get("error_code")));
    return buf;
  }
  return std::string(args);
}

PerfLine PerfTraceLine(std::string_view line, const EventToken& ev) {
  const std::string_view name = line.substr(ev.name_begin, ev.name_end - ev.name_begin);
  const std::string_view trimmed = RTrim(line);
  if (trimmed.back() != ')') return Bad(trimmed.size(), "expected ')' at the end of the line");
  const size_t args_at = ev.name_end + 1;
  const std::string_view args = trimmed.substr(args_at, trimmed.size() - 1 - args_at);

  // "%10.3f " milliseconds, then the optional duration column, then "comm/tid ".
  std::string_view rest = line.substr(0, ev.start);
  const size_t lead = rest.size() - LTrim(rest).size();
  rest = LTrim(rest);
  const size_t sp = rest.find(' ');
  const std::string_view ms = rest.substr(0, sp);
  const size_t dot = ms.find('.');
  if (dot == std::string_view::npos || dot > 15 || !IsDigits(ms.substr(0, dot)) ||
      ms.size() - dot - 1 != 3 || !IsDigits(ms.substr(dot + 1))) {
    return Bad(lead, "bad timestamp (want perf trace's \"%10.3f\" milliseconds)");
  }
  uint64_t whole = 0, frac = 0;
  std::from_chars(ms.data(), ms.data() + dot, whole);
  std::from_chars(ms.data() + dot + 1, ms.data() + ms.size(), frac);
  const uint64_t usecs = whole * 1000 + frac;
  rest = sp == std::string_view::npos ? std::string_view{} : LTrim(rest.substr(sp));
  if (!rest.empty() && rest.front() == '(') {
    const size_t close = rest.find("): ");
    if (close == std::string_view::npos) {
      return Bad(static_cast<size_t>(rest.data() - line.data()), "bad duration column");
    }
    rest = LTrim(rest.substr(close + 3));
  }
  rest = RTrim(rest);
  const size_t slash = rest.rfind('/');
  if (rest.empty() || slash == std::string_view::npos || slash == 0 ||
      !IsDigits(rest.substr(slash + 1)) || rest.size() - slash - 1 > 9) {
    return Bad(static_cast<size_t>(rest.data() - line.data()),
               "missing \"comm/tid\" (perf trace prints it when tracing several threads, e.g. "
               "system-wide)");
  }
  char ts[48];
  std::snprintf(ts, sizeof(ts), "%llu.%06llu", static_cast<unsigned long long>(usecs / 1000000),
                static_cast<unsigned long long>(usecs % 1000000));
  PerfLine p;
  p.status = PerfLine::Status::kOk;
  p.cpu_known = false;
  p.ftrace = FtracePrefix(rest.substr(0, slash), rest.substr(slash + 1), "000", ts);
  p.ftrace.append(name);
  p.ftrace += ": ";
  p.body_offset = p.ftrace.size();
  std::map<std::string, uint64_t> fields;
  if (ParseFields(args, &fields)) {
    p.source_offset = 0;
    p.ftrace += BodyFromFields(name, fields, args);
  } else {
    p.source_offset = args_at;
    p.ftrace.append(args);
  }
  return p;
}

}  // namespace

PerfLine PerfLineToFtrace(std::string_view line) {
  const EventToken ev = FindKvmEvent(line);
  if (ev.start == std::string_view::npos) return {};
  return ev.after == ':' ? PerfScriptLine(line, ev) : PerfTraceLine(line, ev);
}

KvmStatTableReader::Feed KvmStatTableReader::feed(std::string_view line) {
  const std::string_view t = RTrim(LTrim(line));
  if (!in_table_) {
    // The VM-EXIT table's header; other event tables ("IO Port Access", "MSR Access") are not
    // exit reasons.
    if (t.starts_with("VM-EXIT ") && t.find(" Samples ") != std::string_view::npos) {
      in_table_ = seen_ = true;
      return Feed::kConsumed;
    }
    return Feed::kNotTable;
  }
  if (t.empty()) return Feed::kConsumed;
  const size_t lead = line.size() - LTrim(line).size();
  if (t.starts_with("Total Samples:")) {
    std::string_view n = t.substr(14);
    n = n.substr(0, n.find(','));
    uint64_t total = 0;
    const auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), total);
    if (ec != std::errc() || p != n.data() + n.size()) {
      column_ = lead + 15;
      error_ = "bad \"Total Samples:\" count";
      return Feed::kBad;
    }
    in_table_ = false;
    if (total != sum_) {
      column_ = lead + 15;
      error_ = "the perf kvm stat rows add up to " + std::to_string(sum_) +
               " samples, \"Total Samples\" says " + std::to_string(total);
      return Feed::kBad;
    }
    total_ += total;
    sum_ = 0;
    return Feed::kConsumed;
  }
  // "<name> <samples> <pct>% <pct>% ...": the name may hold a space (SVM's "DE excp").
  size_t pos = 0;
  while (pos < t.size()) {
    const size_t b = t.find_first_not_of(' ', pos);
    if (b == std::string_view::npos) break;
    size_t e = t.find(' ', b);
    if (e == std::string_view::npos) e = t.size();
    const std::string_view tok = t.substr(b, e - b);
    const size_t nb = t.find_first_not_of(' ', e);
    const std::string_view next =
        nb == std::string_view::npos ? std::string_view{} : t.substr(nb, t.find(' ', nb) - nb);
    if (b > 0 && IsDigits(tok) && !next.empty() && next.back() == '%') {
      uint64_t samples = 0;
      const auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), samples);
      if (ec != std::errc() || samples > (uint64_t{1} << 62) || sum_ + samples < sum_) {
        column_ = lead + b + 1;
        error_ = "sample count out of range";
        return Feed::kBad;
      }
      sum_ += samples;
      if (row_) row_(std::string(RTrim(t.substr(0, b))), samples);
      return Feed::kConsumed;
    }
    pos = e;
  }
  column_ = lead + 1;
  error_ =
      "expected a perf kvm stat row \"<exit reason> <samples> <samples%> <time%> ...\" or "
      "\"Total Samples:\"";
  return Feed::kBad;
}

}  // namespace apicv::trace
