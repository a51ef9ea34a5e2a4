// The ftrace text line prefix, as the kernel's default trace output prints it
// (kernel/trace/trace_output.c, "function" tracer header with irq-info and flags):
//
//   trace_print_context():  "%16s-%-7d " comm, pid;  "[%03d] " cpu
//   trace_print_lat_fmt():  five flag characters (irqs-off, need-resched, hard/softirq,
//                           preempt depth, migrate-disable depth), e.g. "....."
//   trace_print_time():     " %5lu.%06lu" seconds, microseconds, then ": "
//
// e.g. "       CPU 2/KVM-10404   [263] ..... 42212.649282: ". Widths were checked byte for byte
// against the host traces of seed 000 (tests/trace/ftrace_line_test.cc). Kernel details kept:
// the timestamp goes through ns2usecs(), which rounds to the nearest microsecond (it does not
// truncate); trace_find_cmdline() prints pid 0 as "<idle>" and a negative pid as "<XXX>" whatever
// the comm; comm holds at most TASK_COMM_LEN-1 = 15 characters.
//
// Not supported: the "tgid" column (options/record-tgid), raw/hex/bin output, counter clocks
// (x86-tsc, counter: " %12llu"), the latency format (options/latency-format).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace apicv::trace {

// Who "runs" when an event fires: the thread's comm (e.g. "CPU 2/KVM", truncated to 15 characters
// like TASK_COMM_LEN), pid, and the CPU number ftrace prints. A comm the kernel has not cached
// prints as "<...>".
struct TaskContext {
  std::string comm = "<...>";
  int pid = 0;
  int cpu = 0;
};

// Appends the prefix for an event at `ts_ns` (trace clock nanoseconds). Flags are ftrace's five
// irq/preempt columns; apicv events always run in task context with nothing pending: ".....".
// (The kernel prints e.g. "...1." for events traced under a spinlock; apicv has no such state.)
void AppendFtracePrefix(std::string& out, const TaskContext& task, uint64_t ts_ns,
                        std::string_view flags = ".....");

// One whole line without the newline: prefix, "event: ", body.
std::string FormatFtraceLine(const TaskContext& task, uint64_t ts_ns, std::string_view event,
                             std::string_view body);

}  // namespace apicv::trace
