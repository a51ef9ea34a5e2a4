// Contract checks for the kvm_apicv_inhibit_changed parser fuzzer (inhibit_trace_fuzz.cc):
// arbitrary bytes are one line; the parser must never crash, must refuse over-long lines, must
// explain every refusal with "column N: what" (N inside the line, 1-based) and must produce a
// consistent record when it accepts. Not supported: multi-line inputs (the caller splits lines).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "trace/inhibit_trace_parser.h"

namespace apicv::fuzz {

inline std::string RunInhibitTraceInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const trace::ParseResult r = trace::ParseInhibitChangedLine(line);
  if (size > trace::kMaxLineLength && r.ok) return "over-long line accepted";
  if (!r.ok) {
    if (r.error.rfind("column ", 0) != 0) return "refusal without a column: " + r.error;
    size_t col = 0;
    size_t i = 7;
    while (i < r.error.size() && r.error[i] >= '0' && r.error[i] <= '9') {
      col = col * 10 + static_cast<size_t>(r.error[i] - '0');
      if (col > trace::kMaxLineLength + 1) break;
      ++i;
    }
    if (col == 0 || col > trace::kMaxLineLength + 1 || col > size + 1) {
      return "refusal column out of the line: " + r.error;
    }
    if (i >= r.error.size() || r.error[i] != ':') return "malformed refusal: " + r.error;
    return "";
  }
  if (!r.error.empty()) return "accepted line with an error text";
  if (r.record.reason >= 64) return "accepted reason >= 64";
  if (r.record.comm.empty()) return "accepted an empty task name";
  if (r.record.cpu < 0) return "accepted a negative cpu";
  // Parsing is a pure function of the text.
  const trace::ParseResult again = trace::ParseInhibitChangedLine(line);
  if (!again.ok || again.record.inhibits != r.record.inhibits ||
      again.record.ts_ns != r.record.ts_ns || again.record.comm != r.record.comm) {
    return "second parse differs";
  }
  return "";
}

}  // namespace apicv::fuzz
