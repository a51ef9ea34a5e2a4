// ftrace line prefix formatting; see ftrace_line.h.
#include "trace/ftrace_line.h"

#include <cstdio>

namespace apicv::trace {

namespace {

// trace_find_cmdline(): the idle task and bogus pids get fixed names, others their saved comm.
std::string CmdlineFor(const TaskContext& task) {
  if (task.pid == 0) return "<idle>";
  if (task.pid < 0) return "<XXX>";
  return task.comm.substr(0, 15);  // TASK_COMM_LEN - 1
}

}  // namespace

void AppendFtracePrefix(std::string& out, const TaskContext& task, uint64_t ts_ns,
                        std::string_view flags) {
  const std::string comm = CmdlineFor(task);
  // ns2usecs() adds 500 ns before dividing: the printed microsecond is rounded to nearest.
  const uint64_t usecs_total = (ts_ns + 500u) / 1000u;
  const unsigned long secs = static_cast<unsigned long>(usecs_total / 1000000u);
  const unsigned long usecs = static_cast<unsigned long>(usecs_total % 1000000u);
  char buf[128];
  const int n =
      std::snprintf(buf, sizeof(buf), "%16s-%-7d [%03d] %.*s %5lu.%06lu: ", comm.c_str(), task.pid,
                    task.cpu, static_cast<int>(flags.size()), flags.data(), secs, usecs);
  if (n > 0) out.append(buf, static_cast<size_t>(n) < sizeof(buf) ? n : sizeof(buf) - 1);
}

std::string FormatFtraceLine(const TaskContext& task, uint64_t ts_ns, std::string_view event,
                             std::string_view body) {
  std::string line;
  line.reserve(64 + event.size() + body.size());
  AppendFtracePrefix(line, task, ts_ns);
  line.append(event);
  line.append(": ");
  line.append(body);
  return line;
}

}  // namespace apicv::trace
