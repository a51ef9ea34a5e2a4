// Parser for ftrace text lines of kvm_apicv_inhibit_changed, as produced by a host's
// /sys/kernel/tracing/trace (seed 000), `trace-cmd report`, or apicv's TraceSink (spec §2.7).
// Used by inhibit_trace_compare.h, behind `apicv trace summary|diff`, to compare host traces with
// apicv runs.
//
// Accepted line: optional leading spaces, "<comm>-<pid>", spaces, "[<cpu>]", an optional flags
// column, "<secs>.<usecs>:", "kvm_apicv_inhibit_changed:", then the §2.7 body
// "set|cleared reason=<n>, inhibits=0x<hex>[ NAME|NAME...]". The names must agree with the mask.
// The pre-2024 format without names is accepted too (has_names = false; the mask is taken as is).
// Reason numbers 13..63 (newer kernels) are accepted; mask bits without a name must be printed as
// __print_flags() does, one trailing "0x..." item.
// Input is untrusted: lines longer than kMaxLineLength, numbers out of range or any deviation give
// an error with the column, never a crash.
//
// Not supported: other events (reported as "not a kvm_apicv_inhibit_changed line"); the historical
// reason numberings of spec §1.2 (numbers are returned as printed, meaning is the caller's).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace apicv::trace {

struct InhibitChangedRecord {
  std::string comm;
  int pid = 0;
  int cpu = 0;
  std::string flags;
  uint64_t ts_ns = 0;  // microsecond resolution, as printed
  bool set = false;
  unsigned reason = 0;
  unsigned long inhibits = 0;
  bool has_names = false;
};

struct ParseResult {
  bool ok = false;
  std::string error;  // "column N: what" when !ok
  size_t column = 0;  // 1-based column of the error when !ok
  InhibitChangedRecord record;
};

inline constexpr size_t kMaxLineLength = 4096;

ParseResult ParseInhibitChangedLine(std::string_view line);

}  // namespace apicv::trace
