// Trace Event Format export; see timeline_export.h.
#include "trace/timeline_export.h"

#include <charconv>
#include <cstdio>

#include "x86/inhibit_reason.h"

namespace apicv::trace {

namespace {

// The number right after `key` in `body` (the first occurrence), in `base`.
template <typename T>
bool NumAfter(std::string_view body, std::string_view key, T& out, int base = 10) {
  const size_t k = body.find(key);
  if (k == std::string_view::npos) return false;
  const char* b = body.data() + k + key.size();
  const char* e = body.data() + body.size();
  auto [p, ec] = std::from_chars(b, e, out, base);
  return ec == std::errc() && p != b;
}

std::string_view TokenAfter(std::string_view body, std::string_view key) {
  const size_t k = body.find(key);
  if (k == std::string_view::npos) return {};
  std::string_view rest = body.substr(k + key.size());
  return rest.substr(0, rest.find(' '));
}

// "CPU 3/KVM" (QEMU's vCPU thread name, and apicv's): 3.
int VcpuFromComm(std::string_view comm) {
  if (comm.substr(0, 4) != "CPU ") return -1;
  int v = -1;
  auto [p, ec] = std::from_chars(comm.data() + 4, comm.data() + comm.size(), v);
  if (ec != std::errc() || p == comm.data() + 4 || v < 0) return -1;
  if (std::string_view(p, comm.data() + comm.size() - p) != "/KVM") return -1;
  return v;
}

std::string Hex(unsigned long v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%lx", v);
  return buf;
}

bool IsHltReason(std::string_view r) {
  return r == "hlt" || r == "HLT";
}
bool IsWindowReason(std::string_view r) {
  return r == "vintr" || r == "INTERRUPT_WINDOW" || r == "PENDING_INTERRUPT";
}

// The inhibit reason's trace name, or "reason N" for a bit without one.
std::string ReasonName(int bit) {
  if (bit < x86::kNrApicvInhibitReasons) return std::string(x86::kInhibitReasonNames[bit]);
  return "reason " + std::to_string(bit);
}

}  // namespace

std::string FormatMicros(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%03llu", static_cast<unsigned long long>(ns / 1000),
                static_cast<unsigned long long>(ns % 1000));
  return buf;
}

std::string JsonString(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o.push_back('\\');
      o.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o.push_back(static_cast<char>(c));
    }
  }
  o.push_back('"');
  return o;
}

ChromeTraceWriter::ChromeTraceWriter(std::ostream& out, std::string source)
    : out_(out), source_(std::move(source)) {
  out_ << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
}

void ChromeTraceWriter::Write(const std::string& event_json) {
  if (!first_) out_ << ",\n";
  first_ = false;
  out_ << event_json;
}

ChromeTraceWriter::Thread* ChromeTraceWriter::ThreadFor(const TraceEvent& ev) {
  auto it = threads_.find(ev.task.pid);
  if (it == threads_.end()) {
    if (threads_.size() >= kMaxThreads) return nullptr;
    Thread t;
    t.tid = ev.task.pid;
    t.comm = ev.task.comm;
    it = threads_.emplace(t.tid, std::move(t)).first;
    ++stats_.threads;
    if (const int v = VcpuFromComm(ev.task.comm); v >= 0) SetVcpu(it->second, v);
  }
  return &it->second;
}

void ChromeTraceWriter::SetVcpu(Thread& t, int vcpu) {
  if (t.vcpu == vcpu || vcpu < 0 || vcpu > 1 << 20) return;
  if (t.vcpu < 0) ++stats_.vcpu_threads;
  t.vcpu = vcpu;
  vcpu_tid_[vcpu] = t.tid;
}

void ChromeTraceWriter::CloseSpan(Thread& t, uint64_t ts) {
  if (t.span == Thread::Span::kNone) return;
  std::string e = "{\"name\":" + JsonString(t.span_name) + ",\"cat\":\"" + t.span_cat +
                  "\",\"ph\":\"X\",\"ts\":" + FormatMicros(t.span_start) +
                  ",\"dur\":" + FormatMicros(ts - t.span_start) +
                  ",\"pid\":" + std::to_string(kVmPid) + ",\"tid\":" + std::to_string(t.tid);
  if (!t.span_args.empty()) e += ",\"args\":{" + t.span_args + "}";
  Write(e + "}");
  t.span = Thread::Span::kNone;
}

void ChromeTraceWriter::OpenSpan(Thread& t, uint64_t ts, Thread::Span kind, std::string name,
                                 std::string cat, std::string args) {
  CloseSpan(t, ts);
  t.span = kind;
  t.span_start = ts;
  t.span_name = std::move(name);
  t.span_cat = std::move(cat);
  t.span_args = std::move(args);
}

void ChromeTraceWriter::Instant(const Thread& t, uint64_t ts, const std::string& name,
                                const std::string& cat, const std::string& args) {
  Write("{\"name\":" + JsonString(name) + ",\"cat\":\"" + cat +
        "\",\"ph\":\"i\",\"s\":\"t\",\"ts\":" + FormatMicros(ts) + ",\"pid\":" +
        std::to_string(kVmPid) + ",\"tid\":" + std::to_string(t.tid) + ",\"args\":{" + args + "}}");
}

void ChromeTraceWriter::ZeroSlice(int tid, uint64_t ts, const std::string& name,
                                  const std::string& cat, const std::string& args) {
  // Zero length: it can never overlap its enclosing guest/exit span improperly.
  Write("{\"name\":" + JsonString(name) + ",\"cat\":\"" + cat + "\",\"ph\":\"X\",\"ts\":" +
        FormatMicros(ts) + ",\"dur\":0,\"pid\":" + std::to_string(kVmPid) +
        ",\"tid\":" + std::to_string(tid) + ",\"args\":{" + args + "}}");
}

void ChromeTraceWriter::Receive(int target_vcpu, const Pending& p, uint64_t ts, bool posted) {
  const auto it = vcpu_tid_.find(target_vcpu);
  if (it == vcpu_tid_.end()) {
    ++stats_.unreceived_ipis;  // no track for that vCPU (it never ran in the trace)
    return;
  }
  // A flow arrow never points backwards: the end moves to the send time if the receiver's clock
  // is behind (host per-CPU clocks), the slice stays where the receiver stamped it.
  const uint64_t flow_ts = ts < p.send_ts ? p.send_ts : ts;
  std::string args = "\"vector\":" + std::to_string(p.vec) +
                     ",\"latency_us\":" + (ts >= p.send_ts ? FormatMicros(ts - p.send_ts) : "0") +
                     ",\"delivery\":\"" + (posted ? "posted" : "injected") + "\"";
  if (flow_ts != ts) {
    ++stats_.clamped_flows;
    args += ",\"clamped_ns\":" + std::to_string(p.send_ts - ts);
  }
  ZeroSlice(it->second, ts, "IPI received", "ipi", args);
  Write("{\"name\":\"IPI\",\"cat\":\"ipi\",\"ph\":\"f\",\"bp\":\"e\",\"id\":" +
        std::to_string(p.flow) + ",\"ts\":" + FormatMicros(flow_ts) +
        ",\"pid\":" + std::to_string(kVmPid) + ",\"tid\":" + std::to_string(it->second) + "}");
  ++stats_.flows;
}

void ChromeTraceWriter::IrqWindow(Thread& t, uint64_t ts, bool open) {
  if (t.irqwin_open == open) return;
  t.irqwin_open = open;
  Write("{\"name\":\"IRQ window\",\"cat\":\"irqwin\",\"ph\":\"" + std::string(open ? "b" : "e") +
        "\",\"id\":\"irqwin-" + std::to_string(t.tid) + "\",\"ts\":" + FormatMicros(ts) +
        ",\"pid\":" + std::to_string(kVmPid) + ",\"tid\":" + std::to_string(t.tid) +
        ",\"args\":{}}");
}

void ChromeTraceWriter::Inhibits(const Thread& t, uint64_t ts, unsigned long mask) {
  // The VM track: one clock for all of it, so its events are kept in order too.
  if (ts < mask_ts_) {
    ts = mask_ts_;
    ++stats_.clamped_events;
  }
  mask_ts_ = ts;
  const unsigned long before = have_mask_ ? mask_ : 0;
  Write("{\"name\":\"APICv inhibit mask\",\"ph\":\"C\",\"ts\":" + FormatMicros(ts) +
        ",\"pid\":" + std::to_string(kVmPid) + ",\"tid\":" + std::to_string(kVmTid) +
        ",\"args\":{\"inhibits\":" + std::to_string(mask) + "}}");
  for (int bit = 0; bit < 64; ++bit) {
    const unsigned long b = 1ul << bit;
    if ((before & b) == (mask & b)) continue;
    const bool set = (mask & b) != 0;
    Write("{\"name\":" + JsonString(ReasonName(bit)) + ",\"cat\":\"inhibit\",\"ph\":\"" +
          (set ? "b" : "e") + "\",\"id\":\"inhibit-" + std::to_string(bit) +
          "\",\"ts\":" + FormatMicros(ts) + ",\"pid\":" + std::to_string(kVmPid) +
          ",\"tid\":" + std::to_string(kVmTid) + ",\"args\":{" +
          (set ? "\"set_by\":" + JsonString(t.comm) : std::string()) + "}}");
  }
  have_mask_ = true;
  mask_ = mask;
}

void ChromeTraceWriter::Add(const TraceEvent& ev) {
  if (finished_) return;
  ++stats_.events;
  if (ev.ts_digits < stats_.ts_digits) stats_.ts_digits = ev.ts_digits;
  Thread* tp = ThreadFor(ev);
  if (tp == nullptr) {
    ++stats_.dropped_events;
    return;
  }
  Thread& t = *tp;
  uint64_t ts = ev.ts_ns;
  if (t.seen && ts < t.last_ts) {
    ts = t.last_ts;  // this thread's events stay in order (see the file comment)
    ++stats_.clamped_events;
  }
  t.seen = true;
  t.last_ts = ts;
  if (ts > max_ts_) max_ts_ = ts;
  const std::string_view body = ev.body;
  const std::string& name = ev.name;
  // The accept lines that name an IPI's targets follow the kvm_apic_ipi line on its thread.
  const bool continues_ipi = name == "kvm_apic_accept_irq" || name == "kvm_apicv_accept_irq" ||
                             name == "kvm_avic_doorbell";
  if (!continues_ipi) {
    t.ipi_open = false;
    t.last_target = -1;
  }

  if (name == "kvm_entry") {
    unsigned vcpu = 0;
    if (NumAfter(body, "vcpu ", vcpu)) SetVcpu(t, static_cast<int>(vcpu));
    OpenSpan(t, ts, Thread::Span::kGuest, "guest", "guest", "");
    return;
  }
  if (name == "kvm_exit") {
    unsigned vcpu = 0;
    if (NumAfter(body, "vcpu ", vcpu)) SetVcpu(t, static_cast<int>(vcpu));
    const std::string_view reason = TokenAfter(body, "reason ");
    if (reason.empty()) ++stats_.undecoded;
    unsigned long rip = 0;
    std::string args = "\"reason\":" + JsonString(reason);
    if (NumAfter(body, " rip 0x", rip, 16)) args += ",\"rip\":\"" + Hex(rip) + "\"";
    if (IsWindowReason(reason)) IrqWindow(t, ts, false);
    const bool hlt = IsHltReason(reason);
    OpenSpan(t, ts, Thread::Span::kExit, hlt ? "halt" : "exit " + std::string(reason),
             hlt ? "halt" : "exit", args);
    return;
  }
  if (name == "kvm_inj_virq") {
    unsigned vec = 0;
    const bool ok = NumAfter(body, "0x", vec, 16) || NumAfter(body, "irq ", vec);
    if (!ok) ++stats_.undecoded;
    Instant(t, ts, "inject " + std::string(body), "inject", "\"vector\":" + std::to_string(vec));
    if (ok && t.vcpu >= 0) {
      auto pit = pending_.find(t.vcpu);
      if (pit != pending_.end()) {
        for (auto p = pit->second.begin(); p != pit->second.end(); ++p) {
          if (p->vec != vec) continue;
          const Pending got = *p;
          pit->second.erase(p);
          Receive(t.vcpu, got, ts, false);
          break;
        }
      }
    }
    return;
  }
  if (name == "kvm_apic_ipi") {
    unsigned dst = 0, vec = 0;
    if (!NumAfter(body, "dst ", dst, 16) || !NumAfter(body, " vec ", vec)) {
      ++stats_.undecoded;
      Instant(t, ts, name, "kvm", "\"body\":" + JsonString(body));
      return;
    }
    const size_t paren = body.find('(');
    const std::string_view mode = paren == std::string_view::npos ? "" : body.substr(paren);
    ZeroSlice(t.tid, ts, "IPI sent", "ipi",
              "\"dst\":\"" + Hex(dst) + "\",\"vector\":" + std::to_string(vec) +
                  ",\"mode\":" + JsonString(mode));
    t.ipi_open = true;
    t.ipi_ts = ts;
    t.ipi_vec = vec;
    return;
  }
  if (name == "kvm_apic_accept_irq" || name == "kvm_apicv_accept_irq") {
    unsigned apicid = 0, vec = 0;
    if (!NumAfter(body, "apicid ", apicid, 16) || !NumAfter(body, " vec ", vec)) {
      ++stats_.undecoded;
      Instant(t, ts, name, "kvm", "\"body\":" + JsonString(body));
      return;
    }
    const bool posted = name == "kvm_apicv_accept_irq";
    const int target = static_cast<int>(apicid);
    if (t.ipi_open && vec == t.ipi_vec) {
      if (posted && t.last_target == target) {
        // KVM prints kvm_apic_accept_irq, then the vendor's kvm_apicv_accept_irq for the same
        // target: the interrupt was posted, so it is received now.
        auto pit = pending_.find(target);
        if (pit != pending_.end()) {
          for (auto p = pit->second.begin(); p != pit->second.end(); ++p) {
            if (p->flow != t.last_flow) continue;
            const Pending got = *p;
            pit->second.erase(p);
            Receive(target, got, ts, true);
            break;
          }
        }
        t.last_target = -1;
        return;
      }
      const Pending p{next_flow_++, vec, t.ipi_ts};
      Write("{\"name\":\"IPI\",\"cat\":\"ipi\",\"ph\":\"s\",\"id\":" + std::to_string(p.flow) +
            ",\"ts\":" + FormatMicros(p.send_ts) + ",\"pid\":" + std::to_string(kVmPid) +
            ",\"tid\":" + std::to_string(t.tid) + "}");
      if (posted) {
        Receive(target, p, ts, true);
      } else {
        auto& q = pending_[target];
        if (q.size() >= kMaxPendingIpis) {
          q.pop_front();
          ++stats_.unreceived_ipis;
        }
        q.push_back(p);
        t.last_target = target;
        t.last_flow = p.flow;
      }
      return;
    }
    Instant(t, ts, "accept vec " + std::to_string(vec) + " -> vCPU " + std::to_string(apicid),
            "accept", "\"body\":" + JsonString(body));
    return;
  }
  if (name == "kvm_eoi" || name == "kvm_pv_eoi") {
    int vec = 0;
    if (!NumAfter(body, "vector ", vec)) ++stats_.undecoded;
    Instant(t, ts, "EOI vector " + std::to_string(vec), "eoi", "\"vector\":" + std::to_string(vec));
    return;
  }
  if (name == "kvm_apicv_inhibit_changed") {
    unsigned reason = 0;
    unsigned long mask = 0;
    const bool set = body.substr(0, 4) == "set ";
    if (!NumAfter(body, "reason=", reason) || !NumAfter(body, "inhibits=0x", mask, 16)) {
      ++stats_.undecoded;
      Instant(t, ts, name, "kvm", "\"body\":" + JsonString(body));
      return;
    }
    Inhibits(t, ts, mask);
    if (reason == static_cast<unsigned>(x86::InhibitReason::kIrqWin)) IrqWindow(t, ts, set);
    return;
  }
  Instant(t, ts, name, "kvm", "\"body\":" + JsonString(body));
}

void ChromeTraceWriter::Finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& [tid, t] : threads_) {
    CloseSpan(t, t.last_ts);
    if (t.irqwin_open) IrqWindow(t, t.last_ts, false);
  }
  for (const auto& [v, q] : pending_) stats_.unreceived_ipis += q.size();
  if (have_mask_) {
    for (int bit = 0; bit < 64; ++bit) {
      if (!(mask_ & (1ul << bit))) continue;
      Write("{\"name\":" + JsonString(ReasonName(bit)) +
            ",\"cat\":\"inhibit\",\"ph\":\"e\",\"id\":\"inhibit-" + std::to_string(bit) +
            "\",\"ts\":" + FormatMicros(max_ts_ > mask_ts_ ? max_ts_ : mask_ts_) + ",\"pid\":" +
            std::to_string(kVmPid) + ",\"tid\":" + std::to_string(kVmTid) + ",\"args\":{}}");
    }
  }
  const std::string pid = std::to_string(kVmPid);
  Write("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + pid +
        ",\"tid\":0,\"args\":{\"name\":" + JsonString("VM (" + source_ + ")") + "}}");
  Write("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + pid +
        ",\"tid\":" + std::to_string(kVmTid) + ",\"args\":{\"name\":\"VM: APICv inhibits\"}}");
  Write("{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":" + pid +
        ",\"tid\":" + std::to_string(kVmTid) + ",\"args\":{\"sort_index\":-1}}");
  for (const auto& [tid, t] : threads_) {
    Write("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + pid +
          ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"name\":" + JsonString(t.comm) + "}}");
    Write("{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":" + pid +
          ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"sort_index\":" +
          std::to_string(t.vcpu >= 0 ? t.vcpu : 1000000 + (tid & 0xFFFFFF)) + "}}");
  }
  out_ << "\n],\"otherData\":{\"source\":" << JsonString(source_)
       << ",\"generator\":\"apicv\",\"events\":" << stats_.events
       << ",\"threads\":" << stats_.threads << ",\"vcpu_threads\":" << stats_.vcpu_threads
       << ",\"ipi_flows\":" << stats_.flows << ",\"clamped_events\":" << stats_.clamped_events
       << ",\"clamped_flows\":" << stats_.clamped_flows
       << ",\"unreceived_ipis\":" << stats_.unreceived_ipis
       << ",\"dropped_events\":" << stats_.dropped_events
       << ",\"undecoded_events\":" << stats_.undecoded << ",\"input_resolution\":\""
       << (stats_.ts_digits == 6 ? "us" : "ns") << "\"}}\n";
}

}  // namespace apicv::trace
