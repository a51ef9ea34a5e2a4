// Contract checks for the trace text reader with perf's dialects (perf_text_fuzz.cc, and
// tests/trace/perf_text_replay_test.cc in CI): arbitrary bytes are a whole trace file read by
// SummarizeTrace (ftrace, perf script, perf trace, perf kvm stat lines, any mix). The reader must
// never crash; a refusal names a line inside the input (1-based) and a column inside that line
// (1-based, at most one past its end); an accepted trace has consistent counts. Not supported:
// trace.dat (read by libtracecmd in a child process, trace/trace_dat.h).
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "trace/inhibit_trace_compare.h"

namespace apicv::fuzz {

inline std::string RunPerfTextInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream in(text);
  trace::TraceSummary s;
  const auto err = trace::SummarizeTrace(in, &s);
  uint64_t newlines = 0;
  size_t longest = 0, cur = 0;
  for (char c : text) {
    if (c == '\n') {
      ++newlines;
      longest = cur > longest ? cur : longest;
      cur = 0;
    } else {
      ++cur;
    }
  }
  longest = cur > longest ? cur : longest;
  const uint64_t lines = newlines + (cur > 0 ? 1 : 0);
  if (err) {
    if (err->line == 0 || err->line > lines)
      return "refusal outside the input: line " + std::to_string(err->line);
    if (err->column == 0 || err->column > longest + 1) {
      if (err->column != trace::kMaxLineLength + 1) {
        return "refusal column outside the line: " + std::to_string(err->column);
      }
    }
    if (err->what.empty()) return "refusal without a reason";
    return "";
  }
  if (s.lines != lines) return "line count differs from the input";
  if (s.inhibit_lines + s.comment_lines + s.other_lines != s.lines) return "lines do not add up";
  // Exit reasons count kvm_exit lines, or the samples of a perf kvm stat table (which replaces
  // them): never more than both together.
  uint64_t exits = s.exit_reasons.other;
  for (const auto& [reason, n] : s.exit_reasons.counts) exits += n;
  if (exits > s.exit_lines + s.kvm_stat_samples) return "more exit reasons than exits";
  for (const auto& [cpu, n] : s.cpus.counts) {
    if (cpu < -1) return "negative cpu other than 'unknown'";
  }
  return "";
}

}  // namespace apicv::fuzz
