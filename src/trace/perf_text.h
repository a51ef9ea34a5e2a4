// perf's text output for kvm tracepoints, read as the same events as ftrace text: each perf line
// is rewritten into the ftrace line of the same event (ftrace_line.h), which the ftrace parsers
// then read, so every input format gives the same figures. Formats, from perf's source (checked
// against perf 6.1, Debian bookworm's linux-perf, and the 6.x tools/perf tree):
//
// `perf script` (builtin-script.c, perf_sample__fprintf_start() and process_event(), default
// fields for tracepoints comm,tid,cpu,time,event,trace):
//   "%16s %7d [%03d] %5lu.%06lu: %*s: <TP_printk text>\n" comm, tid, cpu, secs.usecs (9 digits
//   with --ns), the event name "kvm:kvm_exit" right-aligned to the longest name, then the body
//   exactly as ftrace prints it (libtraceevent formats the kernel's print fmt). "-F pid,tid"
//   prints "%7d/%-7d " pid/tid; the tid is taken.
// `perf trace -e 'kvm:*'` (builtin-trace.c, trace__event_handler()):
//   "%10.3f " milliseconds since the first event, optionally "(         ): " (with syscalls),
//   "%.14s/%d " comm/tid (when tracing several threads, e.g. system-wide), then
//   "kvm:kvm_apicv_inhibit_changed(" args ")". Since perf 5.8 the args are the fields,
//   "name: value" joined by ", ", values "%ld", and a field whose value is 0 is left out
//   (trace__fprintf_tp_fields()); with --libtraceevent_print the args are the TP_printk text.
//   perf trace prints no CPU: such records have cpu -1 ("unknown") and the time is relative.
// `perf kvm stat report|live` (builtin-kvm.c print_result()): a "VM-EXIT Samples Samples%
//   Time% Min Time Max Time Avg time" header, rows "%20s %10llu %8.2f%% %8.2f%% ..." (the exit
//   reason as KVM names it, samples, ...), then "Total Samples:%llu, Total events handled
//   time:%.2fus.". Only the VM-EXIT table is read (not the "IO Port Access" or "MSR Access" ones);
//   its rows become the summary's exit-reason section.
//
// Input is untrusted: a malformed line of a kvm event is an error with its column.
// Not supported: perf script with custom -F field lists other than pid/tid (the CPU column is
// required), perf trace duration columns of syscalls, perf's --ns for perf trace, tracepoints
// outside the "kvm" system (they are other lines).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace apicv::trace {

struct PerfLine {
  enum class Status { kNotPerf, kOk, kBad };
  Status status = Status::kNotPerf;
  std::string ftrace;        // kOk: the same event as an ftrace text line
  bool cpu_known = true;     // false for perf trace (no CPU column)
  size_t body_offset = 0;    // kOk: where the event body starts in `ftrace`
  size_t source_offset = 0;  // kOk: where it starts in the perf line (0 when rebuilt from fields)
  size_t column = 0;         // kBad: 1-based column in the perf line
  std::string error;         // kBad
};

// A `perf script` or `perf trace` line of a kvm tracepoint, as ftrace text; kNotPerf for any other
// line (ftrace text, comments, other systems' events).
PerfLine PerfLineToFtrace(std::string_view line);

// Streams the lines of a pasted `perf kvm stat` report and collects its VM-EXIT table.
class KvmStatTableReader {
 public:
  enum class Feed { kNotTable, kConsumed, kBad };
  // kConsumed for the table's header, rows, blank lines inside it and its "Total Samples" line.
  Feed feed(std::string_view line);
  // Called with each row: the exit reason as printed and its samples.
  void set_row_observer(std::function<void(const std::string&, uint64_t)> f) {
    row_ = std::move(f);
  }
  const std::string& error() const { return error_; }
  size_t error_column() const { return column_; }
  bool seen() const { return seen_; }
  uint64_t total_samples() const { return total_; }

 private:
  bool in_table_ = false, seen_ = false;
  uint64_t sum_ = 0, total_ = 0;
  std::string error_;
  size_t column_ = 0;
  std::function<void(const std::string&, uint64_t)> row_;
};

}  // namespace apicv::trace
