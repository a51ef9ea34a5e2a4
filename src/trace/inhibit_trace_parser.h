// Parser for ftrace text lines of kvm_apicv_inhibit_changed, as produced by a host's
// /sys/kernel/tracing/trace (seed 000) or by apicv's TraceSink. Used by `apicv trace` to compare
// host traces with apicv runs.
//
// Accepted line: optional leading spaces, "<comm>-<pid>", spaces, "[<cpu>]", an optional flags
// column, "<secs>.<usecs>:", "kvm_apicv_inhibit_changed:", then the §2.7 body
// "set|cleared reason=<n>, inhibits=0x<hex>[ NAME|NAME...]". The names must agree with the mask.
// Input is untrusted: lines longer than kMaxLineLength, numbers out of range or any deviation give
// an error with the column, never a crash.
//
// Not supported: the pre-2024 format without names (parsed, names must then be absent and the mask
// is taken as is), other events (reported as "not a kvm_apicv_inhibit_changed line").
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
  InhibitChangedRecord record;
};

inline constexpr size_t kMaxLineLength = 4096;

ParseResult ParseInhibitChangedLine(std::string_view line);

}  // namespace apicv::trace
