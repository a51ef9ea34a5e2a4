// Generic ftrace text event parsing (perf script / perf trace lines through perf_text.h); see
// trace_event.h.
#include "trace/trace_event.h"

#include <charconv>

#include "trace/perf_text.h"

namespace apicv::trace {

namespace {

EventParse Fail(size_t col, std::string what) {
  EventParse r;
  r.column = col + 1;
  r.error = "column " + std::to_string(r.column) + ": " + what;
  return r;
}

template <typename T>
bool ParseAll(std::string_view s, T& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// The "[NNN]" CPU column: '[' after a space, digits, ']'. comm itself may hold spaces, '-', '['.
size_t FindCpuColumn(std::string_view line) {
  for (size_t i = line.find('['); i != std::string_view::npos; i = line.find('[', i + 1)) {
    size_t j = i + 1;
    while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
    if (j > i + 1 && j < line.size() && line[j] == ']' && i > 0 && line[i - 1] == ' ') return i;
  }
  return std::string_view::npos;
}

bool IsEventNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

EventParse ParseFtraceEventLine(std::string_view line, TraceEvent* out) {
  if (line.size() > kMaxEventLineLength) return Fail(kMaxEventLineLength, "line too long");
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const size_t lb = FindCpuColumn(line);
  if (lb == std::string_view::npos) return Fail(0, "missing \"[cpu]\" column");
  TraceEvent ev;
  std::string_view head = line.substr(0, lb);
  while (!head.empty() && head.back() == ' ') head.remove_suffix(1);
  size_t lead = 0;
  while (lead < head.size() && head[lead] == ' ') ++lead;
  const size_t dash = head.rfind('-');
  if (dash == std::string_view::npos || dash < lead) return Fail(lead, "missing \"comm-pid\"");
  if (dash == lead) return Fail(lead, "empty task name");
  if (!ParseAll(head.substr(dash + 1), ev.task.pid) || ev.task.pid < 0)
    return Fail(dash + 1, "bad pid");
  ev.task.comm = std::string(head.substr(lead, dash - lead));

  size_t pos = lb + 1;
  const size_t rb = line.find(']', pos);
  if (!ParseAll(line.substr(pos, rb - pos), ev.task.cpu) || ev.task.cpu < 0)
    return Fail(pos, "bad cpu number");
  pos = rb + 1;
  auto skip_spaces = [&] {
    while (pos < line.size() && line[pos] == ' ') ++pos;
  };
  auto token = [&] {
    const size_t start = pos;
    while (pos < line.size() && line[pos] != ' ') ++pos;
    return line.substr(start, pos - start);
  };
  skip_spaces();
  std::string_view tok = token();
  if (tok.empty()) return Fail(pos, "missing timestamp");
  if (tok.back() != ':') {  // the flags column ("....." or "d..1.")
    skip_spaces();
    tok = token();
  }
  const size_t ts_col = pos - tok.size();
  if (tok.size() < 3 || tok.back() != ':') return Fail(ts_col, "bad timestamp");
  tok.remove_suffix(1);
  const size_t dot = tok.find('.');
  uint64_t secs = 0, frac = 0;
  const size_t digits = dot == std::string_view::npos ? 0 : tok.size() - dot - 1;
  if (dot == std::string_view::npos || !ParseAll(tok.substr(0, dot), secs) ||
      (digits != 6 && digits != 9) || !ParseAll(tok.substr(dot + 1), frac)) {
    return Fail(ts_col, "bad timestamp (want <secs>.<6 or 9 digits>:)");
  }
  if (secs > UINT64_MAX / 1000000000ull - 1) return Fail(ts_col, "timestamp out of range");
  ev.ts_digits = static_cast<int>(digits);
  ev.ts_ns = secs * 1000000000ull + (digits == 6 ? frac * 1000ull : frac);
  skip_spaces();
  const size_t name_start = pos;
  while (pos < line.size() && IsEventNameChar(line[pos])) ++pos;
  if (pos == name_start || pos >= line.size() || line[pos] != ':')
    return Fail(name_start, "expected \"<event>:\"");
  ev.name = std::string(line.substr(name_start, pos - name_start));
  ++pos;
  if (pos < line.size() && line[pos] == ' ') ++pos;
  ev.body = std::string(line.substr(pos < line.size() ? pos : line.size()));
  *out = std::move(ev);
  EventParse r;
  r.ok = true;
  return r;
}

bool TraceEventReader::Next(TraceEvent* ev) {
  while (!error_) {
    line_.clear();
    std::streambuf* sb = in_.rdbuf();
    if (sb == nullptr) return false;
    bool any = false, too_long = false;
    for (;;) {
      const int c = sb->sbumpc();
      if (c == std::char_traits<char>::eof()) break;
      any = true;
      if (c == '\n') break;
      if (c == '\0') {
        error_ = TraceReadError{lines_ + 1, line_.size() + 1,
                                "binary data (NUL byte): expected ftrace text, e.g. "
                                "/sys/kernel/tracing/trace or `trace-cmd report` output"};
        return false;
      }
      line_.push_back(static_cast<char>(c));
      if (line_.size() > kMaxEventLineLength + 1) {
        too_long = true;
        break;
      }
    }
    if (!any) return false;
    ++lines_;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (too_long || line_.size() > kMaxEventLineLength) {
      error_ = TraceReadError{lines_, kMaxEventLineLength + 1,
                              "line longer than " + std::to_string(kMaxEventLineLength) + " bytes"};
      return false;
    }
    // perf script / perf trace lines of kvm events are read as the ftrace line of the same event
    // (perf_text.h), so a timeline can be made from them too.
    const PerfLine perf = PerfLineToFtrace(line_);
    if (perf.status == PerfLine::Status::kBad) {
      error_ = TraceReadError{lines_, perf.column, perf.error};
      return false;
    }
    if (perf.status == PerfLine::Status::kOk) {
      if (perf.ftrace.size() > kMaxEventLineLength) {
        error_ = TraceReadError{lines_, 1, "perf line too long once rewritten as ftrace text"};
        return false;
      }
      line_ = perf.ftrace;
    }
    const size_t first = line_.find_first_not_of(" \t");
    if (first == std::string::npos || line_[first] == '#' ||
        FindCpuColumn(line_) == std::string::npos) {
      ++skipped_;
      continue;
    }
    const EventParse p = ParseFtraceEventLine(line_, ev);
    if (!p.ok) {
      error_ = TraceReadError{lines_, p.column, p.error.substr(p.error.find(": ") + 2)};
      return false;
    }
    ++events_;
    return true;
  }
  return false;
}

}  // namespace apicv::trace
