// `apicv trace summary FILE|-` and `apicv trace diff A B`: a host's (or apicv's) trace of
// kvm_apicv_inhibit_changed (ftrace text, trace-cmd's trace.dat, perf script / perf trace text, or
// a pasted perf kvm stat table for the exit reasons; the format is found from the content),
// summarised with the seed-000 verdict or compared transition by transition
// (trace/inhibit_trace_compare.h holds the logic; this file opens files and prints). Exit status:
// summary 0; diff 0 match, 1 differ or not comparable (NOT EVALUATED); 2 bad options or bad input
// (a missing file, a directory, a binary or over-long line, a malformed kvm_apicv_inhibit_changed
// line, or a trace without any kvm_apicv_inhibit_changed line), reported as one line "apicv:
// FILE:LINE:COLUMN: what".
// `apicv trace export FILE|- -o OUT.json`: every event of a trace (any of the formats above) as a
// Trace Event Format timeline (trace/timeline_export.h) for ui.perfetto.dev / chrome://tracing; OUT
// is written to a temporary file and renamed, so a bad trace leaves nothing behind.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "cli/atomic_output.h"
#include "cli/command.h"
#include "cli/scenario.h"
#include "trace/inhibit_trace_compare.h"
#include "trace/timeline_export.h"
#include "trace/trace_dat.h"

namespace apicv::cli {
namespace {

// trace.dat files already converted to ftrace text, by path: `trace diff` opens each trace more
// than once, and the conversion (a child process running libtracecmd) is done once.
std::map<std::string, int>& ConvertedTraceDat() {
  static std::map<std::string, int> files;
  return files;
}

// Opens a trace file for reading, or throws a UsageError naming it. The format is found from the
// content: a trace.dat (trace-cmd's magic) is converted to ftrace text first (trace/trace_dat.h);
// anything else is text (ftrace, perf script, perf trace, perf kvm stat).
std::unique_ptr<std::istream> OpenTrace(const std::string& path) {
  if (path.empty()) throw UsageError("trace: empty file name");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    throw UsageError(path + ": cannot open: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw UsageError(path + ": is a directory, expected a trace file");
  auto f = std::make_unique<std::ifstream>(path, std::ios::binary);
  if (!*f) throw UsageError(path + ": cannot open: " + std::strerror(errno));
  char head[16];
  f->read(head, sizeof(head));
  const auto n = static_cast<size_t>(f->gcount());
  if (!trace::HasTraceDatMagic(std::string_view(head, n))) {
    f->clear();
    f->seekg(0);
    if (!*f) throw UsageError(path + ": cannot read: " + std::strerror(errno));
    return f;
  }
  auto& converted = ConvertedTraceDat();
  auto it = converted.find(path);
  if (it == converted.end()) {
    const int fd = memfd_create("apicv-trace-dat", MFD_CLOEXEC);
    if (fd < 0) throw UsageError(path + ": cannot convert: memfd_create: " + std::strerror(errno));
    if (auto err = trace::TraceDatToFtraceText(path, fd)) {
      close(fd);
      throw UsageError(path + ": " + *err);
    }
    it = converted.emplace(path, fd).first;
  }
  // A new open of the memfd starts at offset 0 and is independent of other readers.
  auto text = std::make_unique<std::ifstream>("/proc/self/fd/" + std::to_string(it->second),
                                              std::ios::binary);
  if (!*text) throw UsageError(path + ": cannot read the converted trace.dat");
  return text;
}

[[noreturn]] void ThrowTraceError(const std::string& name, const trace::TraceError& e) {
  if (e.line == 0) throw UsageError(name + ": " + e.what);
  throw UsageError(name + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": " +
                   e.what);
}

void WriteFileOrThrow(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr)
    throw UsageError("--json: cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw UsageError("--json: write failed for '" + path + "'");
}

struct SummaryOptions {
  std::string file;
  std::string json;
};

void SummaryMain(const SummaryOptions& opt) {
  if (opt.file.empty())
    throw UsageError("trace summary: missing the trace FILE (apicv trace summary FILE|-)");
  if (!opt.json.empty()) CheckWritable("--json", opt.json);
  const bool stdin_trace = opt.file == "-";
  const std::string name = stdin_trace ? "(stdin)" : opt.file;
  std::unique_ptr<std::istream> owned;
  if (!stdin_trace) owned = OpenTrace(opt.file);
  std::istream& in = stdin_trace ? std::cin : *owned;
  trace::TraceSummary s;
  if (auto e = trace::SummarizeTrace(in, &s)) ThrowTraceError(name, *e);
  // A pasted perf kvm stat report has exit reasons and no inhibit lines: its summary is the
  // exit-reason section.
  if (s.inhibit_lines == 0 && s.kvm_stat_samples == 0) {
    throw UsageError(name + ": no kvm_apicv_inhibit_changed lines (" + std::to_string(s.lines) +
                     " lines read); enable the event: echo 1 > "
                     "/sys/kernel/tracing/events/kvm/kvm_apicv_inhibit_changed/enable");
  }
  std::fputs(trace::FormatSummary(s, name).c_str(), stdout);
  if (!opt.json.empty()) WriteFileOrThrow(opt.json, trace::SummaryJson(s, name));
}

struct DiffCmdOptions {
  std::string a, b;
  bool align = false;
};

int DiffMain(const DiffCmdOptions& opt) {
  // Named as the usage line names them (CLI11 would say "b is required").
  if (opt.a.empty())
    throw UsageError("trace diff: missing trace files A and B (apicv trace diff [--align] A B)");
  if (opt.b.empty())
    throw UsageError("trace diff: missing the second trace file B after '" + opt.a +
                     "' (apicv trace diff [--align] A B)");
  for (const std::string* p : {&opt.a, &opt.b}) {
    // Each trace is read more than once (to keep memory bounded), so stdin cannot be one.
    if (*p == "-") throw UsageError("trace diff: '-' (stdin) is not supported; give a file");
    OpenTrace(*p);  // reports a missing file or a directory before anything is read
  }
  trace::TraceDiff d;
  trace::DiffOptions dopt;
  dopt.align = opt.align;
  const auto err = trace::DiffTraces([&] { return OpenTrace(opt.a); },
                                     [&] { return OpenTrace(opt.b); }, dopt, &d);
  if (err) ThrowTraceError(err->which == 0 ? opt.a : opt.b, err->error);
  std::fputs(trace::FormatDiff(d, opt.a, opt.b).c_str(), stdout);
  return d.result == trace::CheckVerdict::kAgree ? 0 : 1;
}

struct ExportOptions {
  std::string file;
  std::string out;
};

void ExportMain(const ExportOptions& opt) {
  if (opt.file.empty())
    throw UsageError("trace export: missing the trace FILE (apicv trace export FILE|- -o OUT)");
  if (opt.out.empty())
    throw UsageError("trace export: missing -o OUT.json (apicv trace export FILE|- -o OUT)");
  const bool stdin_trace = opt.file == "-";
  const std::string name = stdin_trace ? "(stdin)" : opt.file;
  std::unique_ptr<std::istream> owned;
  if (!stdin_trace) owned = OpenTrace(opt.file);
  AtomicOutput out("-o", opt.out);
  std::istream& in = stdin_trace ? std::cin : *owned;
  trace::TraceEventReader reader(in);
  trace::ChromeTraceWriter writer(out.stream(), name);
  trace::TraceEvent ev;
  while (reader.Next(&ev)) writer.Add(ev);
  if (const auto& e = reader.error()) ThrowTraceError(name, {e->line, e->column, e->what});
  if (reader.events() == 0) {
    throw UsageError(name + ": no trace events (" + std::to_string(reader.lines()) +
                     " lines read); expected ftrace text such as /sys/kernel/tracing/trace");
  }
  writer.Finish();
  out.commit();
  const trace::TimelineStats& s = writer.stats();
  std::printf(
      "wrote %s: %llu events, %llu threads (%llu vCPUs), %llu IPI flows, %llu clamped "
      "timestamps, %llu clamped flows\n",
      opt.out.c_str(), (unsigned long long)s.events, (unsigned long long)s.threads,
      (unsigned long long)s.vcpu_threads, (unsigned long long)s.flows,
      (unsigned long long)s.clamped_events, (unsigned long long)s.clamped_flows);
}

CommandRegistration reg("", [](CLI::App& app) {
  auto* trace_cmd = app.add_subcommand(
      "trace", "Summarise or compare kvm_apicv_inhibit_changed traces (host ftrace or --trace)");
  trace_cmd->require_subcommand(1);  // names checked by main() (CheckSubcommandName)

  auto sopt = std::make_shared<SummaryOptions>();
  auto* summary = trace_cmd->add_subcommand(
      "summary", "Counts per reason/mask/thread/CPU and the seed-000 verdict of one trace");
  summary->add_option("FILE", sopt->file,
                      "ftrace or perf text, trace-cmd trace.dat, or - for stdin (text only)");
  summary->add_option("--json", sopt->json, "Also write the figures as JSON to this file");
  summary->callback([sopt] { SummaryMain(*sopt); });

  auto dopt = std::make_shared<DiffCmdOptions>();
  auto* diff = trace_cmd->add_subcommand(
      "diff",
      "Compare two traces' (set/cleared, reason, mask) transitions, run lengths, masks and "
      "IRQ-window rate per workload; exit 0 MATCH, 1 otherwise");
  diff->add_option("A", dopt->a, "first trace file");
  diff->add_option("B", dopt->b, "second trace file");
  diff->add_flag("--align", dopt->align,
                 "Start each trace at the first transition they share (e.g. a host trace "
                 "captured mid-run against a run from VM creation); the overlap must match");
  diff->callback([dopt] { SetExitStatus(DiffMain(*dopt)); });

  auto eopt = std::make_shared<ExportOptions>();
  auto* exp = trace_cmd->add_subcommand(
      "export",
      "Write a trace as a Trace Event Format timeline (ui.perfetto.dev, chrome://tracing)");
  exp->add_option("FILE", eopt->file,
                  "ftrace or perf text, trace-cmd trace.dat, or - for stdin (text only)");
  exp->add_option("-o,--output", eopt->out, "the JSON file to write");
  exp->callback([eopt] { ExportMain(*eopt); });
});

}  // namespace
}  // namespace apicv::cli
