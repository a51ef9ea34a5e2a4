// ftrace line prefix formatting; see ftrace_line.h.
#include "trace/ftrace_line.h"

#include <cstdio>

namespace apicv::trace {

void AppendFtracePrefix(std::string& out, const TaskContext& task, uint64_t ts_ns,
                        std::string_view flags) {
  // The kernel copies at most TASK_COMM_LEN-1 = 15 characters of comm.
  const std::string comm = task.comm.substr(0, 15);
  const unsigned long secs = static_cast<unsigned long>(ts_ns / 1000000000ull);
  const unsigned long usecs = static_cast<unsigned long>((ts_ns % 1000000000ull) / 1000ull);
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
