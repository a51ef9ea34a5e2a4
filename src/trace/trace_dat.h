// trace-cmd's binary trace.dat (file versions 6 and 7, compressed or not), read through
// libtracecmd and libtraceevent, the libraries trace-cmd itself uses (Debian's libtracecmd-dev
// and libtraceevent-dev): every kvm event is read field by field, by name, from the event format
// the file carries (never from printed text), and written out as the ftrace text line of the same
// event, which the hardened text reader (inhibit_trace_compare.h) then reads. So a trace.dat and
// the text of the same events give the same figures.
//
// Fields read (arch/x86/kvm/trace.h, include/trace/events/kvm.h), required by name and size:
//   kvm_apicv_inhibit_changed  reason (4), set (1), inhibits (4 or 8)     (5.18+)
//   kvm_exit                   exit_reason (4), isa (4); vcpu_id (4) if present
//   kvm_set_irq                gsi (4), level (4), irq_source_id (4)
//   kvm_inj_virq               vector (4), soft (1), reinjected (1) (6.0+) or irq (4) (before)
// A file whose format for one of these events lacks a field or has another size is an "unknown
// event format version" and is rejected. For the timeline (`apicv trace export`), read when
// present with these sizes and otherwise left without a body (never an error):
//   kvm_entry vcpu_id (4), rip (8); kvm_apic_ipi icr_low (4), dest_id (4);
//   kvm_apic_accept_irq / kvm_apicv_accept_irq apicid (4), dm (2), tm (1 or 2), vec (1);
//   kvm_eoi / kvm_pv_eoi apicid (4), vector (4).
// Other events become ftrace lines without a body (the summary only counts them). Whether kvm_apicv_inhibit_changed prints reason names (2024+) is
// taken from its print fmt, so the text says what the host's own ftrace would have said.
// Timestamps are written with 9 digits (nanoseconds); comm comes from the file's saved cmdlines.
//
// libtracecmd is not hardened against hostile files, so the file is parsed in a forked child
// process, never in apicv's own: the child runs with RLIMIT_AS (2 GiB), RLIMIT_CPU (60 s), an
// alarm (120 s wall), RLIMIT_FSIZE (the text it may write, 512 MiB), RLIMIT_NOFILE (64) and no
// core dumps; libtracecmd's warnings go to a pipe the parent drains and discards; the child
// reports a refusal as one line on a status pipe and exits 2. A child that dies (a signal, a
// limit) is reported as a corrupt file. The parent only reads the text, with the text reader's
// own checks. Record fields are also bounds-checked against the record size before each read.
//
// Not supported: trace.dat versions other than 6 and 7; buffer instances other than the top one;
// counter clocks (x86-tsc, counter): their timestamps are taken as nanoseconds; big-endian files
// are read as libtraceevent converts them; stdin (a trace.dat must be a file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace apicv::trace {

// trace.dat starts with 0x17 0x08 0x44 "tracing" (TRACECMD_MAGIC), then the version string.
inline constexpr std::string_view kTraceDatMagic{"\x17\x08\x44tracing", 10};

bool HasTraceDatMagic(std::string_view first_bytes);

struct TraceDatLimits {
  uint64_t address_space = 2ull << 30;
  unsigned cpu_seconds = 60;
  unsigned wall_seconds = 120;
  uint64_t text_bytes = 512ull << 20;
};

struct TraceDatStats {
  uint64_t records = 0, kvm_records = 0;
  unsigned file_version = 0;
};

// Writes the ftrace text of the trace.dat at `path` to `out_fd` (from its current offset), in a
// child process. Returns nullopt, or the reason the file is refused, as one line.
std::optional<std::string> TraceDatToFtraceText(const std::string& path, int out_fd,
                                                TraceDatStats* stats = nullptr,
                                                const TraceDatLimits& limits = {});

}  // namespace apicv::trace
