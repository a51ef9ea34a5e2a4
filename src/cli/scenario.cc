#include "cli/scenario.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>

#include "backend/emu/run_emu.h"
#include "builtin_guests.h"
#include "cli/command.h"
#include "trace/trace_sink.h"
#include "virt/shared_irqchip.h"

namespace apicv::cli {
std::string InhibitBody(const std::string& line) {
  static const std::string kTag = "kvm_apicv_inhibit_changed: ";
  const auto p = line.find(kTag);
  return p == std::string::npos ? std::string() : line.substr(p + kTag.size());
}

bool ParseInhibitBody(const std::string& body, InhibitLine* out) {
  static const std::regex re(R"(^(set|cleared) reason=(\d+), inhibits=0x([0-9a-f]+)( .*)?$)");
  std::smatch m;
  if (!std::regex_match(body, m, re)) return false;
  out->set = m[1] == "set";
  out->reason = static_cast<unsigned>(std::stoul(m[2]));
  out->inhibits = std::stoul(m[3], nullptr, 16);
  return true;
}

std::vector<InhibitLine> ParsedInhibitLines(const Scenario& s) {
  std::vector<InhibitLine> v;
  for (const auto& l : s.inhibit_lines) {
    InhibitLine p;
    if (ParseInhibitBody(InhibitBody(l), &p)) v.push_back(p);
  }
  return v;
}

std::vector<InhibitLine> LinesAfterSet(const std::vector<InhibitLine>& v, unsigned reason) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].set && v[i].reason == reason) return {v.begin() + static_cast<long>(i) + 1, v.end()};
  return {};
}

std::optional<double> FindGuestRate(const std::string& serial, const char* unit) {
  const std::regex re(std::string(R"(([0-9]+) )") + unit + "/s");
  std::optional<double> last;
  for (auto it = std::sregex_iterator(serial.begin(), serial.end(), re);
       it != std::sregex_iterator(); ++it)
    last = std::stod((*it)[1]);
  return last;
}

double GuestRate(const std::string& serial, const char* unit) {
  return FindGuestRate(serial, unit).value_or(0);
}

uint64_t InhibitSummary::Count(bool set, unsigned reason, unsigned long inhibits) const {
  for (const auto& f : forms)
    if (f.set == set && f.reason == reason && f.inhibits == inhibits) return f.count;
  return 0;
}

bool InhibitSummary::Add(const std::string& line, InhibitLine* out) {
  constexpr unsigned kIrqWin = static_cast<unsigned>(virt::InhibitReason::kIrqWin);
  constexpr unsigned kPitReinj = static_cast<unsigned>(virt::InhibitReason::kPitReinj);
  static const std::string kTag = "kvm_apicv_inhibit_changed: ";
  const size_t tag = line.find(kTag);
  if (tag == std::string::npos) return false;
  const std::string body = line.substr(tag + kTag.size());
  const unsigned ph = phase < kMaxPhases ? phase : kMaxPhases - 1;
  ++lines;
  ++phase_lines[ph];
  if (lines == 1) first_body = body;
  InhibitLine p;
  if (!ParseInhibitBody(body, &p)) {
    ++unparsed;
    return true;
  }
  *out = p;
  any_parsed = true;
  last = p;
  or_mask |= p.inhibits;
  // vCPU threads are named "CPU n/KVM" (QEMU's convention); VM creation prints as the VMM.
  if (line.find("CPU ") < tag) or_mask_vcpus |= p.inhibits;
  bool found = false;
  for (auto& f : forms) {
    if (f.set == p.set && f.reason == p.reason && f.inhibits == p.inhibits) {
      ++f.count;
      found = true;
      break;
    }
  }
  if (!found) {
    if (forms.size() < kMaxForms) {
      forms.push_back({p.set, p.reason, p.inhibits, 1});
    } else {
      ++forms_overflow;
    }
  }
  if (p.reason == kIrqWin) ++(p.set ? phase_irqwin_set : phase_irqwin_cleared)[ph];
  // CountIrqWin(): each update takes the write lock once and prints a line with its own reason
  // first; with the counted strategy every other update prints a second line, IRQWIN re-derived
  // from the counter, under the same lock.
  const bool own_irqwin = p.reason == kIrqWin && !(rederives && after_other);
  if (p.reason != kIrqWin) ++other_updates;
  if (pit_reinj_set && own_irqwin) {
    ++irqwin_updates_after_pit_reinj;
    // A broadcast goes out exactly when "inhibited at all" flips.
    if ((mask == 0) != (p.inhibits == 0)) ++irqwin_broadcasts_after_pit_reinj;
  }
  // Seed 000's alternation, over the reason 8 lines after the first PIT_REINJ set.
  if (pit_reinj_set && p.reason == kIrqWin) {
    if (alt_first && !p.set && p.inhibits == 0x200) {
      alt_first = false;  // IRQWIN re-derived with PIT_REINJ's own call
    } else {
      alt_first = false;
      if (p.set && p.inhibits == 0x300) {
        ++alt_sets;
        if (alt_last_set) ++alt_repeats;
        alt_last_set = true;
      } else if (!p.set && p.inhibits == 0x200 && alt_last_set) {
        ++alt_pairs;
        alt_last_set = false;
      } else {
        alt_well_formed = false;
      }
    }
  }
  if (p.set && p.reason == kPitReinj) pit_reinj_set = true;
  after_other = p.reason != kIrqWin;
  mask = p.inhibits;
  return true;
}

namespace {

// The sink's output stream: a FILE* whose writes are split into lines and folded into the
// scenario's summary as the trace is produced (fopencookie; nothing is stored but the summary,
// the kept lines and the excerpt).
class InhibitStream {
 public:
  explicit InhibitStream(Scenario& s) : s_(s) {
    s_.inhibits = InhibitSummary();
    s_.inhibits.rederives = s_.config.irqwin == virt::IrqWindowMode::kCounted;
    s_.inhibit_lines.clear();
    s_.excerpt.clear();
    cookie_io_functions_t io = {};
    io.write = &InhibitStream::Write;
    file_ = fopencookie(this, "w", io);
    if (file_ == nullptr) throw std::runtime_error("fopencookie failed for the trace stream");
    std::setvbuf(file_, nullptr, _IONBF, 0);  // every line reaches the summary at once
  }
  ~InhibitStream() {
    if (file_) std::fclose(file_);
  }
  InhibitStream(const InhibitStream&) = delete;
  InhibitStream& operator=(const InhibitStream&) = delete;

  std::FILE* file() const { return file_; }
  // Every byte written to the stream is copied to `tee` too (not owned).
  void set_tee(std::FILE* tee) { tee_ = tee; }

  // A serial-port line: the phase marker starts the next phase. Called on a vCPU thread.
  void SerialLine(const std::string& line) {
    if (s_.phase_marker.empty() || line.find(s_.phase_marker) == std::string::npos) return;
    std::lock_guard<std::mutex> g(mu_);
    ++s_.inhibits.phase;
  }

  // Flushes a last partial line (the sink always ends lines with '\n').
  void Finish() {
    std::fflush(file_);
    std::lock_guard<std::mutex> g(mu_);
    if (!pending_.empty()) Line(pending_);
    pending_.clear();
  }

 private:
  static ssize_t Write(void* cookie, const char* buf, size_t size) {
    auto* self = static_cast<InhibitStream*>(cookie);
    std::lock_guard<std::mutex> g(self->mu_);
    if (self->tee_ != nullptr) std::fwrite(buf, 1, size, self->tee_);
    for (size_t i = 0; i < size; ++i) {
      if (buf[i] != '\n') {
        // A line longer than any trace line is cut rather than grown without bound.
        if (self->pending_.size() < 4096) self->pending_.push_back(buf[i]);
        continue;
      }
      self->Line(self->pending_);
      self->pending_.clear();
    }
    return static_cast<ssize_t>(size);
  }

  void Line(const std::string& line) {  // mu_ held
    if (line.find("kvm_apicv_inhibit_changed: ") == std::string::npos) return;
    const InhibitSummary before_flags = SummaryFlags();
    InhibitLine p;
    p.reason = ~0u;
    if (!s_.inhibits.Add(line, &p)) return;
    if (s_.inhibit_lines.size() < s_.inhibit_keep) s_.inhibit_lines.push_back(line);
    if (p.reason != ~0u && s_.excerpt_filter && s_.excerpt.size() < s_.excerpt_max &&
        s_.excerpt_filter(p, before_flags))
      s_.excerpt.push_back(line);
  }

  // The summary's scalar state before a line (without copying the forms table).
  InhibitSummary SummaryFlags() const {
    InhibitSummary f;
    const InhibitSummary& a = s_.inhibits;
    f.lines = a.lines;
    f.pit_reinj_set = a.pit_reinj_set;
    f.or_mask = a.or_mask;
    f.phase = a.phase;
    f.any_parsed = a.any_parsed;
    f.last = a.last;
    return f;
  }

  Scenario& s_;
  std::FILE* file_ = nullptr;
  std::FILE* tee_ = nullptr;
  std::mutex mu_;  // leaf lock, taken under the sink's lock by Write
  std::string pending_;
};

}  // namespace

IrqWinCounts CountIrqWin(const Scenario& s) {
  IrqWinCounts c;
  const auto& st = s.stats;
  c.write_locks = st.inhibits.write_locks;
  c.broadcasts = st.inhibits.broadcasts;
  c.windows = st.windows_requested;
  c.window_exits = st.window_exits;
  const InhibitSummary& sum = s.inhibits;
  c.irqwin_updates_after_pit_reinj = sum.irqwin_updates_after_pit_reinj;
  c.irqwin_broadcasts_after_pit_reinj = sum.irqwin_broadcasts_after_pit_reinj;
  c.irqwin_write_locks = c.write_locks > sum.other_updates ? c.write_locks - sum.other_updates : 0;
  return c;
}

std::vector<ScenarioCheck> IrqWinStructureChecks(const Scenario& s, const IrqWinCounts& c) {
  std::vector<ScenarioCheck> v;
  v.push_back({"PIT_REINJ set (lost_tick_policy=delay)", s.inhibits.pit_reinj_set});
  const std::string w = std::to_string(c.windows) + " windows";
  if (s.config.irqwin == virt::IrqWindowMode::kLegacy) {
    v.push_back({"every window takes the write lock (" + std::to_string(c.irqwin_write_locks) +
                     " IRQWIN write locks, " + w + ")",
                 c.windows > 0 && c.irqwin_write_locks >= c.windows});
  } else {
    v.push_back({"no IRQWIN update of its own after PIT_REINJ is set (" +
                     std::to_string(c.irqwin_updates_after_pit_reinj) + ")",
                 c.irqwin_updates_after_pit_reinj == 0});
    v.push_back({"zero write locks for IRQ windows (" + std::to_string(c.irqwin_write_locks) +
                     ", " + w + ")",
                 c.windows > 0 && c.irqwin_write_locks == 0});
    v.push_back({"zero broadcasts for IRQ windows after PIT_REINJ is set (" +
                     std::to_string(c.irqwin_broadcasts_after_pit_reinj) + ")",
                 c.irqwin_broadcasts_after_pit_reinj == 0});
  }
  return v;
}

Scenario Seed000Scenario(virt::IrqWindowMode irqwin, int ticks) {
  Scenario s;
  const bool legacy = irqwin == virt::IrqWindowMode::kLegacy;
  s.label = std::string(legacy ? "legacy" : "counted") + " avic=on irqchip=on delay";
  s.guest = "pit-extint";
  s.smp = 1;
  s.append = "ticks=" + std::to_string(ticks);
  s.config.vendor = virt::VendorModel::kSvm;
  s.config.enable_apicv = true;
  s.config.placement = virt::IrqchipPlacement::kOn;
  s.config.pit_policy = virt::PitPolicy::kDelay;
  s.config.irqwin = irqwin;
  return s;
}

long ParseIntOption(const std::string& opt, const std::string& value, long lo, long hi) {
  try {
    size_t pos = 0;
    const long v = std::stol(value, &pos, 0);
    if (pos == value.size() && v >= lo && v <= hi) return v;
  } catch (...) {
  }
  throw UsageError(opt + ": expected an integer in " + std::to_string(lo) + ".." +
                   std::to_string(hi) + ", got '" + value + "'");
}

void CheckWritable(const std::string& opt, const std::string& path) {
  if (path.empty()) throw UsageError(opt + ": empty file name");
  const bool existed = access(path.c_str(), F_OK) == 0;
  std::FILE* f = std::fopen(path.c_str(), "a");  // "a": an existing file is not truncated yet
  if (f == nullptr)
    throw UsageError(opt + ": cannot write '" + path + "': " + std::strerror(errno));
  std::fclose(f);
  if (!existed) std::remove(path.c_str());
}

void RejectExtras(const std::string& command, const std::vector<std::string>& extras,
                  const std::string& hint) {
  if (extras.empty()) return;
  throw UsageError(command + ": unexpected argument '" + extras.front() + "' (" +
                   (hint.empty() ? "" : hint + "; ") + "apicv " + command + " --help)");
}

namespace {
Accel g_accel = Accel::kKvm;
bool g_accel_set = false;
}  // namespace

Accel DefaultAccel() {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return Accel::kEmu;
  ::close(fd);
  return Accel::kKvm;
}

void SetScenarioAccel(Accel accel) {
  g_accel = accel;
  g_accel_set = true;
}

Accel ScenarioAccel() {
  if (!g_accel_set) SetScenarioAccel(DefaultAccel());
  return g_accel;
}

const char* AccelName(Accel accel) {
  return accel == Accel::kKvm ? "kvm" : "emu";
}

Accel ParseAccel(const std::string& opt, const std::string& value) {
  if (value == "kvm") return Accel::kKvm;
  if (value == "emu") return Accel::kEmu;
  throw UsageError(opt + ": expected kvm|emu, got '" + value + "'");
}

void RunScenario(Scenario& s) {
  const guests::BuiltinGuest* g = guests::FindBuiltinGuest(s.guest);
  if (g == nullptr) throw std::runtime_error("no built-in guest '" + s.guest + "'");
  MonotonicClock trace_clock;
  trace::TraceSink sink(trace_clock);
  // No ring: the lines stream through InhibitStream, which keeps what the checks need.
  InhibitStream stream(s);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> tee(nullptr, &std::fclose);
  if (!s.trace_path.empty()) {
    tee.reset(std::fopen(s.trace_path.c_str(), "w"));
    if (!tee)
      throw std::runtime_error("cannot write trace file '" + s.trace_path +
                               "': " + std::strerror(errno));
    stream.set_tee(tee.get());
  }
  sink.set_output(stream.file());
  // The time the trace covers (--report draws against it): virtual time under emu.
  sink.set_observer(
      [&s](const trace::TaskContext&, uint64_t ts, std::string_view, std::string_view) {
        if (s.trace_first_ns == 0 || ts < s.trace_first_ns) s.trace_first_ns = ts;
        if (ts > s.trace_last_ns) s.trace_last_ns = ts;
      });
  std::shared_ptr<virt::ApicvVm> vm;
  // VM creation runs on this thread, as KVM_CREATE_VM runs on QEMU's main thread.
  const bool emu = ScenarioAccel() == Accel::kEmu;
  if (emu) {
    trace::set_current_task({"apicv", 1000, 0});  // deterministic identities under emu
  } else {
    trace::set_current_task(
        {"apicv", static_cast<int>(getpid()), sched_getcpu() < 0 ? 0 : sched_getcpu()});
  }

  kvm::RunOptions opt;
  opt.smp = s.smp;
  opt.mem_size = 64ull << 20;
  opt.kernel.assign(g->data, g->data + g->size);
  opt.kernel_name = g->name;
  opt.append = s.append;
  opt.irqchip = kvm::IrqchipMode::kApicv;
  opt.vm_config = s.config;
  opt.trace = &sink;
  opt.timeout_s = s.timeout_s;
  std::string serial_line;
  opt.serial = [&s, &stream, &serial_line](uint8_t c) {
    if (s.serial.size() < (1u << 20)) s.serial.push_back(static_cast<char>(c));
    if (c != '\n') {
      if (serial_line.size() < 1024) serial_line.push_back(static_cast<char>(c));
      return;
    }
    stream.SerialLine(serial_line);
    serial_line.clear();
  };
  opt.irqchip_factory = [&](const virt::VmConfig& cfg, const Clock& clock,
                            virt::TimerService* timers) {
    vm = std::make_shared<virt::ApicvVm>(cfg, clock, &sink, timers);
    vm->set_device_trace(false);
    return virt::ShareApicvVm(vm);
  };
  s.result = emu ? emu::RunGuest(opt, emu::EmuOptions{}) : kvm::RunGuest(opt);
  if (vm) s.stats = vm->stats();
  s.trace_lines_total = sink.lines_emitted();
  sink.set_output(nullptr);
  sink.set_observer(nullptr);
  stream.Finish();
  s.passed = s.result.debug_exit && s.serial.find("PASS") != std::string::npos &&
             s.serial.find("FAIL") == std::string::npos;
}

}  // namespace apicv::cli
