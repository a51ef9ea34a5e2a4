// One trace event as every input format yields it: who (comm, pid, CPU), when (nanoseconds), the
// event name and its body as the kernel's TP_printk prints it. The ftrace text prefix
// (kernel/trace/trace_output.c: trace_print_context(), trace_print_lat_fmt(), trace_print_time();
// see ftrace_line.h) is parsed here for any event; `trace-cmd report` lines (no flags column,
// "-t" nanosecond timestamps) parse too. Consumers (the timeline export) decode the body by event
// name, so a binary reader (trace.dat through libtraceevent, whose TEP_PRINT_INFO prints the same
// body) only has to fill this struct.
//
// Input is untrusted: a line longer than kMaxEventLineLength, a NUL byte or a malformed prefix is
// reported with its column, never a crash.
//
// Not supported: the "tgid" column (options/record-tgid), counter clocks (x86-tsc: no '.'),
// the latency format, `perf script` text.
#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>

#include "trace/ftrace_line.h"

namespace apicv::trace {

inline constexpr size_t kMaxEventLineLength = 4096;

struct TraceEvent {
  TaskContext task;
  uint64_t ts_ns = 0;
  // Digits after the seconds' point: 6 for the kernel's ftrace text (microseconds), 9 for
  // `trace-cmd report -t` and apicv's own runs (nanoseconds).
  int ts_digits = 9;
  std::string name;  // "kvm_exit"
  std::string body;  // the TP_printk text
};

struct EventParse {
  bool ok = false;
  size_t column = 0;  // 1-based, when !ok
  std::string error;
};

// Parses "<comm>-<pid> [<cpu>] [<flags>] <secs>.<frac>: <event>: <body>".
EventParse ParseFtraceEventLine(std::string_view line, TraceEvent* out);

struct TraceReadError {
  uint64_t line = 0;
  size_t column = 0;
  std::string what;
};

// Streams a text trace: comments ('#'), blank lines and lines without a "[cpu]" column (stack
// traces, "CPU 3 buffer started") are skipped and counted; any other line must parse.
class TraceEventReader {
 public:
  explicit TraceEventReader(std::istream& in) : in_(in) {}
  // The next event; false at the end or at the first bad line (then error() is set).
  bool Next(TraceEvent* ev);
  const std::optional<TraceReadError>& error() const { return error_; }
  uint64_t lines() const { return lines_; }
  uint64_t skipped_lines() const { return skipped_; }
  uint64_t events() const { return events_; }

 private:
  std::istream& in_;
  std::string line_;
  std::optional<TraceReadError> error_;
  uint64_t lines_ = 0, skipped_ = 0, events_ = 0;
};

}  // namespace apicv::trace
