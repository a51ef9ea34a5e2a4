// The Trace Event Format export (trace/timeline_export.h) on hand-written host trace lines, checked
// with the document's schema rules (trace_event_schema.h); and the schema checks themselves on
// documents that break them, so they can fail.
#include "trace/timeline_export.h"

#include <gtest/gtest.h>

#include <sstream>

#include "trace/trace_event.h"
#include "trace_event_schema.h"

namespace apicv::trace {
namespace {

using nlohmann::json;

json Export(const std::string& text, TimelineStats* stats = nullptr) {
  std::istringstream in(text);
  TraceEventReader reader(in);
  std::ostringstream out;
  ChromeTraceWriter w(out, "test");
  TraceEvent ev;
  while (reader.Next(&ev)) w.Add(ev);
  EXPECT_FALSE(reader.error().has_value()) << reader.error()->what;
  w.Finish();
  if (stats) *stats = w.stats();
  return json::parse(out.str());
}

std::vector<json> Events(const json& doc, const std::string& ph, const std::string& name = "") {
  std::vector<json> v;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == ph && (name.empty() || e["name"] == name)) v.push_back(e);
  }
  return v;
}

// Two vCPU threads of a host trace (kernel ftrace text, microseconds): vCPU 0 sends IPI vector
// 0xf0 (240) to vCPU 1, which is injected 7 us later; vCPU 1 EOIs it.
const char* kTwoVcpus =
    "# tracer: nop\n"
    "       CPU 0/KVM-2001    [003] .....   100.000010: kvm_entry: vcpu 0, rip 0xffffffff81000000\n"
    "       CPU 1/KVM-2002    [005] .....   100.000011: kvm_entry: vcpu 1, rip 0xffffffff81000100\n"
    "       CPU 1/KVM-2002    [005] .....   100.000015: kvm_exit: vcpu 1 reason hlt rip 0x1 "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n"
    "       CPU 0/KVM-2001    [003] .....   100.000020: kvm_exit: vcpu 0 reason npf rip 0x2 "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n"
    "       CPU 0/KVM-2001    [003] .....   100.000021: kvm_apic_ipi: dst 1 vec 240 "
    "(Fixed|physical|assert|edge|dst)\n"
    "       CPU 0/KVM-2001    [003] .....   100.000021: kvm_apic_accept_irq: apicid 1 vec 240 "
    "(Fixed|edge)\n"
    "       CPU 0/KVM-2001    [003] .....   100.000023: kvm_entry: vcpu 0, rip 0x2\n"
    "       CPU 1/KVM-2002    [005] .....   100.000028: kvm_inj_virq: IRQ 0xf0\n"
    "       CPU 1/KVM-2002    [005] .....   100.000028: kvm_entry: vcpu 1, rip 0x1\n"
    "       CPU 1/KVM-2002    [005] .....   100.000040: kvm_exit: vcpu 1 reason npf rip 0x3 "
    "info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n"
    "       CPU 1/KVM-2002    [005] .....   100.000041: kvm_eoi: apicid 1 vector 240\n"
    "       CPU 1/KVM-2002    [005] .....   100.000042: kvm_entry: vcpu 1, rip 0x3\n";

TEST(TimelineExport, HostTraceIsValidWithTracksSpansAndAnIpiFlow) {
  TimelineStats st;
  const json doc = Export(kTwoVcpus, &st);
  const testing::TraceCheck c = testing::CheckTraceEventFormat(doc);
  for (const auto& e : c.errors) ADD_FAILURE() << e;
  EXPECT_EQ(c.vcpu_tracks, 2u);
  EXPECT_EQ(c.flows, 1u);
  EXPECT_EQ(st.vcpu_threads, 2u);
  EXPECT_EQ(st.clamped_flows, 0u);
  EXPECT_EQ(doc["displayTimeUnit"], "ns");
  EXPECT_EQ(doc["otherData"]["input_resolution"], "us");

  // vCPU 1's halt: from its hlt exit (15 us) to its next entry (28 us).
  const auto halts = Events(doc, "X", "halt");
  ASSERT_EQ(halts.size(), 1u);
  EXPECT_EQ(halts[0]["tid"], 2002);
  EXPECT_DOUBLE_EQ(halts[0]["ts"].get<double>(), 100000015.0);
  EXPECT_DOUBLE_EQ(halts[0]["dur"].get<double>(), 13.0);
  // Guest-mode spans: vCPU 0 10..20, 23..end(23); vCPU 1 11..15, 28..40, 42..42.
  EXPECT_EQ(Events(doc, "X", "guest").size(), 5u);

  // The flow: from vCPU 0's send (21 us) to vCPU 1's injection (28 us).
  const auto s = Events(doc, "s");
  const auto f = Events(doc, "f");
  ASSERT_EQ(s.size(), 1u);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(s[0]["tid"], 2001);
  EXPECT_EQ(f[0]["tid"], 2002);
  EXPECT_DOUBLE_EQ(s[0]["ts"].get<double>(), 100000021.0);
  EXPECT_DOUBLE_EQ(f[0]["ts"].get<double>(), 100000028.0);
  EXPECT_EQ(f[0]["bp"], "e");
  const auto recv = Events(doc, "X", "IPI received");
  ASSERT_EQ(recv.size(), 1u);
  EXPECT_EQ(recv[0]["args"]["vector"], 240);
  EXPECT_EQ(recv[0]["args"]["delivery"], "injected");
  EXPECT_EQ(recv[0]["args"]["latency_us"].get<double>(), 7.0);
  // The EOI as an instant on vCPU 1.
  const auto eoi = Events(doc, "i", "EOI vector 240");
  ASSERT_EQ(eoi.size(), 1u);
  EXPECT_EQ(eoi[0]["tid"], 2002);
}

TEST(TimelineExport, NanosecondsAreKeptAsMicrosecondFractions) {
  const json doc = Export(
      "CPU 0/KVM-7 [000] 5.000001234: kvm_entry: vcpu 0, rip 0x0\n"
      "CPU 0/KVM-7 [000] 5.000002500: kvm_exit: vcpu 0 reason io rip 0x0 info1 0x0 info2 0x0 "
      "intr_info 0x0 error_code 0x0\n");
  const auto g = Events(doc, "X", "guest");
  ASSERT_EQ(g.size(), 1u);
  EXPECT_DOUBLE_EQ(g[0]["ts"].get<double>(), 5000001.234);
  EXPECT_DOUBLE_EQ(g[0]["dur"].get<double>(), 1.266);
  EXPECT_EQ(doc["otherData"]["input_resolution"], "ns");
  EXPECT_EQ(FormatMicros(1234567), "1234.567");
  EXPECT_EQ(FormatMicros(5), "0.005");
}

TEST(TimelineExport, ReceiverClockBehindTheSenderNeverMakesABackwardArrow) {
  // vCPU 1's CPU clock is 5 us behind: its injection is stamped before the send.
  TimelineStats st;
  const json doc = Export(
      "CPU 0/KVM-1 [000] 10.000050: kvm_apic_ipi: dst 1 vec 250 (Fixed|physical|assert|edge|dst)\n"
      "CPU 0/KVM-1 [000] 10.000050: kvm_apic_accept_irq: apicid 1 vec 250 (Fixed|edge)\n"
      "CPU 1/KVM-2 [001] 10.000046: kvm_inj_virq: IRQ 0xfa\n",
      &st);
  const testing::TraceCheck c = testing::CheckTraceEventFormat(doc);
  for (const auto& e : c.errors) ADD_FAILURE() << e;
  EXPECT_EQ(c.flows, 1u);
  EXPECT_EQ(st.clamped_flows, 1u);
  const auto f = Events(doc, "f");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_DOUBLE_EQ(f[0]["ts"].get<double>(), 10000050.0);  // moved to the send time
  const auto recv = Events(doc, "X", "IPI received");
  ASSERT_EQ(recv.size(), 1u);
  EXPECT_DOUBLE_EQ(recv[0]["ts"].get<double>(), 10000046.0);  // the slice stays
  EXPECT_EQ(recv[0]["args"]["clamped_ns"], 4000);
}

TEST(TimelineExport, AThreadGoingBackwardsIsClampedAndStillNests) {
  TimelineStats st;
  const json doc = Export(
      "CPU 0/KVM-1 [000] 10.000050: kvm_entry: vcpu 0, rip 0x0\n"
      "CPU 0/KVM-1 [002] 10.000040: kvm_exit: vcpu 0 reason hlt rip 0x0 info1 0x0 info2 0x0 "
      "intr_info 0x0 error_code 0x0\n"
      "CPU 0/KVM-1 [000] 10.000060: kvm_entry: vcpu 0, rip 0x0\n",
      &st);
  EXPECT_EQ(st.clamped_events, 1u);
  const testing::TraceCheck c = testing::CheckTraceEventFormat(doc);
  for (const auto& e : c.errors) ADD_FAILURE() << e;
  const auto g = Events(doc, "X", "guest");
  ASSERT_GE(g.size(), 1u);
  EXPECT_DOUBLE_EQ(g[0]["dur"].get<double>(), 0.0);
}

TEST(TimelineExport, PostedDeliveryIsReceivedAtTheAccept) {
  const json doc = Export(
      "CPU 0/KVM-1 [000] 1.000001: kvm_entry: vcpu 0, rip 0x0\n"
      "CPU 1/KVM-2 [001] 1.000001: kvm_entry: vcpu 1, rip 0x0\n"
      "CPU 0/KVM-1 [000] 1.000002: kvm_apic_ipi: dst 1 vec 240 (Fixed|physical|assert|edge|dst)\n"
      "CPU 0/KVM-1 [000] 1.000002: kvm_apic_accept_irq: apicid 1 vec 240 (Fixed|edge)\n"
      "CPU 0/KVM-1 [000] 1.000003: kvm_apicv_accept_irq: apicid 1 vec 240 (Fixed|edge)\n");
  const auto recv = Events(doc, "X", "IPI received");
  ASSERT_EQ(recv.size(), 1u);
  EXPECT_EQ(recv[0]["tid"], 2);
  EXPECT_EQ(recv[0]["args"]["delivery"], "posted");
  EXPECT_EQ(Events(doc, "f").size(), 1u);
  EXPECT_EQ(testing::CheckTraceEventFormat(doc).errors.size(), 0u);
}

TEST(TimelineExport, InhibitMaskIsACounterAndEachReasonASpan) {
  const json doc = Export(
      "CPU 0/KVM-1 [000] 1.000001: kvm_apicv_inhibit_changed: set reason=9, inhibits=0x200 "
      "PIT_REINJ\n"
      "CPU 0/KVM-1 [000] 1.000002: kvm_apicv_inhibit_changed: set reason=8, inhibits=0x300 "
      "IRQWIN|PIT_REINJ\n"
      "CPU 0/KVM-1 [000] 1.000005: kvm_apicv_inhibit_changed: cleared reason=8, inhibits=0x200 "
      "PIT_REINJ\n");
  const auto counters = Events(doc, "C", "APICv inhibit mask");
  ASSERT_EQ(counters.size(), 3u);
  EXPECT_EQ(counters[0]["args"]["inhibits"], 0x200);
  EXPECT_EQ(counters[1]["args"]["inhibits"], 0x300);
  EXPECT_EQ(counters[2]["args"]["inhibits"], 0x200);
  EXPECT_EQ(counters[0]["tid"], kVmTid);
  const auto irqwin_b = Events(doc, "b", "IRQWIN");
  const auto irqwin_e = Events(doc, "e", "IRQWIN");
  ASSERT_EQ(irqwin_b.size(), 1u);
  ASSERT_EQ(irqwin_e.size(), 1u);
  EXPECT_DOUBLE_EQ(irqwin_e[0]["ts"].get<double>() - irqwin_b[0]["ts"].get<double>(), 3.0);
  EXPECT_EQ(Events(doc, "b", "PIT_REINJ").size(), 1u);
  EXPECT_EQ(Events(doc, "e", "PIT_REINJ").size(), 1u);  // closed at the end of the trace
  // The vCPU's own IRQ window span.
  EXPECT_EQ(Events(doc, "b", "IRQ window").size(), 1u);
  const testing::TraceCheck c = testing::CheckTraceEventFormat(doc);
  for (const auto& e : c.errors) ADD_FAILURE() << e;
  // The VM track is named.
  bool vm_named = false;
  for (const auto& m : Events(doc, "M", "thread_name")) {
    if (m["tid"] == kVmTid) vm_named = true;
  }
  EXPECT_TRUE(vm_named);
}

TEST(TimelineExport, HostileBodiesAndNamesStayValidJson) {
  std::string text = "CPU 0/KVM-1 [000] 1.000001: kvm_exit: \"quote\\ \x01\xff reason\n";
  text += "CPU 0/KVM-1 [000] 1.000002: kvm_apic_ipi: dst zz vec\n";
  text += "CPU 0/KVM-1 [000] 1.000003: kvm_apic_accept_irq: apicid 99999999999999999999 vec 1\n";
  text += "CPU 0/KVM-1 [000] 1.000004: kvm_inj_virq: IRQ 0x\n";
  text += "CPU 0/KVM-1 [000] 1.000005: kvm_apicv_inhibit_changed: set reason=x\n";
  text += "we\"ird\x7f-3 [000] 1.000006: some_event: \x02\n";
  TimelineStats st;
  const json doc = Export(text, &st);  // json::parse throws on invalid JSON
  EXPECT_GE(st.undecoded, 4u);
  const testing::TraceCheck c = testing::CheckTraceEventFormat(doc);
  for (const auto& e : c.errors) ADD_FAILURE() << e;
  EXPECT_EQ(JsonString("a\"b\\\n\xc3"), "\"a\\\"b\\\\\\u000a\\u00c3\"");
}

TEST(TimelineExport, ThreadsAreBounded) {
  std::ostringstream out;
  ChromeTraceWriter w(out, "many");
  TraceEvent ev;
  ev.name = "kvm_eoi";
  ev.body = "apicid 0 vector 32";
  ev.task.comm = std::string(1, 't');
  for (int i = 0; i < static_cast<int>(kMaxThreads) + 10; ++i) {
    ev.task.pid = 100 + i;
    w.Add(ev);
  }
  w.Finish();
  EXPECT_EQ(w.stats().threads, kMaxThreads);
  EXPECT_EQ(w.stats().dropped_events, 10u);
}

TEST(TraceEventLine, ParsesFtraceAndTraceCmdPrefixes) {
  TraceEvent ev;
  ASSERT_TRUE(ParseFtraceEventLine(
                  "       CPU 2/KVM-10404   [263] ..... 42212.649282: kvm_inj_virq: IRQ 0xec", &ev)
                  .ok);
  EXPECT_EQ(ev.task.comm, "CPU 2/KVM");
  EXPECT_EQ(ev.task.pid, 10404);
  EXPECT_EQ(ev.task.cpu, 263);
  EXPECT_EQ(ev.ts_ns, 42212649282000ull);
  EXPECT_EQ(ev.ts_digits, 6);
  EXPECT_EQ(ev.name, "kvm_inj_virq");
  EXPECT_EQ(ev.body, "IRQ 0xec");
  // trace-cmd report: no flags column; -t prints nanoseconds.
  ASSERT_TRUE(ParseFtraceEventLine(
                  "qemu-system-x86-991 [001] 7.123456789: kvm_eoi: apicid 0 vector 32", &ev)
                  .ok);
  EXPECT_EQ(ev.ts_ns, 7123456789ull);
  EXPECT_EQ(ev.ts_digits, 9);
  EXPECT_EQ(ev.task.comm, "qemu-system-x86");
  const EventParse bad = ParseFtraceEventLine("CPU 0/KVM-1 [000] 1.0001: kvm_eoi: x", &ev);
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.column, 19u);
  EXPECT_FALSE(ParseFtraceEventLine("CPU 0/KVM-1 [000] 1.000001: : x", &ev).ok);
  EXPECT_FALSE(ParseFtraceEventLine("no cpu column here", &ev).ok);
}

TEST(TraceEventLine, ReaderRejectsBinaryAndOverlongLines) {
  std::string data = "CPU 0/KVM-1 [000] 1.000001: kvm_eoi: x\n";
  data.push_back('\0');
  data.push_back('\x01');
  std::istringstream bin(data);
  TraceEventReader r(bin);
  TraceEvent ev;
  EXPECT_TRUE(r.Next(&ev));
  EXPECT_FALSE(r.Next(&ev));
  ASSERT_TRUE(r.error().has_value());
  EXPECT_EQ(r.error()->line, 2u);
  std::istringstream longl(std::string(kMaxEventLineLength + 10, 'a') + "\n");
  TraceEventReader r2(longl);
  EXPECT_FALSE(r2.Next(&ev));
  ASSERT_TRUE(r2.error().has_value());
  // Stack traces and buffer notes (no "[cpu]" column) are skipped.
  std::istringstream other(" => kvm_arch_vcpu_ioctl_run\nCPU:3 [LOST 5 EVENTS]\n");
  TraceEventReader r3(other);
  EXPECT_FALSE(r3.Next(&ev));
  EXPECT_FALSE(r3.error().has_value());
  EXPECT_EQ(r3.skipped_lines(), 2u);
}

// The schema checks fail where the document (or apicv's promise) is broken.
TEST(TraceEventSchema, RejectsBrokenDocuments) {
  auto errors = [](const char* text) {
    return testing::CheckTraceEventFormat(json::parse(text)).errors.size();
  };
  EXPECT_GT(errors(R"([])"), 0u);  // array format
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1,"ts":1}]})"), 0u);
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"Q","name":"a","pid":1,"tid":1,"ts":1}]})"), 0u);
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"i","name":"a","pid":1,"tid":1}]})"), 0u);
  EXPECT_GT(errors(R"({"displayTimeUnit":"s","traceEvents":[]})"), 0u);
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"C","name":"c","pid":1,"tid":1,"ts":1,
                                        "args":{"v":"x"}}]})"),
            0u);
  // A backward flow.
  EXPECT_GT(errors(R"({"traceEvents":[
      {"ph":"s","name":"f","cat":"c","id":1,"pid":1,"tid":1,"ts":5},
      {"ph":"f","name":"f","cat":"c","id":1,"pid":1,"tid":2,"ts":4,"bp":"e"},
      {"ph":"M","name":"thread_name","pid":1,"tid":1,"args":{"name":"a"}},
      {"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":"b"}}]})"),
            0u);
  // Partially overlapping slices on one thread.
  EXPECT_GT(errors(R"({"traceEvents":[
      {"ph":"X","name":"a","pid":1,"tid":1,"ts":1,"dur":5},
      {"ph":"X","name":"b","pid":1,"tid":1,"ts":3,"dur":5},
      {"ph":"M","name":"thread_name","pid":1,"tid":1,"args":{"name":"a"}}]})"),
            0u);
  // An unnamed thread, an unended async span, bad metadata.
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"i","name":"a","pid":1,"tid":9,"ts":1}]})"), 0u);
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"b","name":"a","cat":"x","id":"1","pid":1,"tid":0,
                                        "ts":1},
      {"ph":"M","name":"thread_name","pid":1,"tid":0,"args":{"name":"vm"}}]})"),
            0u);
  EXPECT_GT(errors(R"({"traceEvents":[{"ph":"M","name":"thread_name","pid":1,"tid":0,
                                        "args":{}}]})"),
            0u);
  // And a valid one passes: nested, sibling at the parent's end, zero-length child at the end.
  EXPECT_EQ(errors(R"({"displayTimeUnit":"ns","traceEvents":[
      {"ph":"X","name":"a","pid":1,"tid":1,"ts":1,"dur":5},
      {"ph":"X","name":"b","pid":1,"tid":1,"ts":2,"dur":1},
      {"ph":"X","name":"c","pid":1,"tid":1,"ts":6,"dur":0},
      {"ph":"X","name":"d","pid":1,"tid":1,"ts":6,"dur":2},
      {"ph":"M","name":"thread_name","pid":1,"tid":1,"args":{"name":"a"}}]})"),
            0u);
}

}  // namespace
}  // namespace apicv::trace
