// The ftrace text line prefix, as the kernel's default trace output prints it
// (kernel/trace/trace_output.c, "function" tracer header with irq-info and flags):
//
//   "%16s-%-7d [%03d] %s %5lu.%06lu: "    comm, pid, cpu, flags, seconds, microseconds
//
// e.g. "       CPU 2/KVM-10404   [263] ..... 42212.649282: ". Widths were checked byte for byte
// against the host traces of seed 000 (tests/trace/ftrace_line_test.cc).
//
// Not supported: the "tgid" column (options/record-tgid), non-default clocks' formats, latency
// format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace apicv::trace {

// Who "runs" when an event fires: the thread's comm (e.g. "CPU 2/KVM", truncated to 15 characters
// like TASK_COMM_LEN), pid, and the CPU number ftrace prints.
struct TaskContext {
  std::string comm = "<...>";
  int pid = 0;
  int cpu = 0;
};

// Appends the prefix for an event at `ts_ns` (trace clock nanoseconds). Flags are ftrace's five
// irq/preempt columns; apicv events always run in task context with nothing pending: ".....".
void AppendFtracePrefix(std::string& out, const TaskContext& task, uint64_t ts_ns,
                        std::string_view flags = ".....");

// One whole line without the newline: prefix, "event: ", body.
std::string FormatFtraceLine(const TaskContext& task, uint64_t ts_ns, std::string_view event,
                             std::string_view body);

}  // namespace apicv::trace
