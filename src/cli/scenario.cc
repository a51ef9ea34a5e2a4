#include "cli/scenario.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <regex>

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

double GuestRate(const std::string& serial, const char* unit) {
  const std::regex re(std::string(R"(([0-9]+) )") + unit + "/s");
  double last = 0;
  for (auto it = std::sregex_iterator(serial.begin(), serial.end(), re);
       it != std::sregex_iterator(); ++it)
    last = std::stod((*it)[1]);
  return last;
}

IrqWinCounts CountIrqWin(const Scenario& s) {
  constexpr unsigned kIrqWin = static_cast<unsigned>(virt::InhibitReason::kIrqWin);
  constexpr unsigned kPitReinj = static_cast<unsigned>(virt::InhibitReason::kPitReinj);
  // With the counted strategy every update for another reason prints a second line, IRQWIN
  // re-derived from the counter, under the same write lock; the legacy one never does.
  const bool rederives = s.config.irqwin == virt::IrqWindowMode::kCounted;
  IrqWinCounts c;
  const auto& st = s.stats;
  c.write_locks = st.inhibits.write_locks;
  c.broadcasts = st.inhibits.broadcasts;
  c.windows = st.windows_requested;
  c.window_exits = st.window_exits;
  // Each update takes the write lock once and prints a line with its own reason first.
  uint64_t other_updates = 0;
  bool pit_reinj = false, after_other = false;
  unsigned long mask = 0;
  for (const auto& p : ParsedInhibitLines(s)) {
    const bool own_irqwin = p.reason == kIrqWin && !(rederives && after_other);
    if (p.reason != kIrqWin) ++other_updates;
    if (pit_reinj && own_irqwin) {
      ++c.irqwin_updates_after_pit_reinj;
      // A broadcast goes out exactly when "inhibited at all" flips.
      if ((mask == 0) != (p.inhibits == 0)) ++c.irqwin_broadcasts_after_pit_reinj;
    }
    if (p.set && p.reason == kPitReinj) pit_reinj = true;
    after_other = p.reason != kIrqWin;
    mask = p.inhibits;
  }
  c.irqwin_write_locks = c.write_locks > other_updates ? c.write_locks - other_updates : 0;
  return c;
}

std::vector<ScenarioCheck> IrqWinStructureChecks(const Scenario& s, const IrqWinCounts& c) {
  std::vector<ScenarioCheck> v;
  bool pit_reinj = false;
  for (const auto& p : ParsedInhibitLines(s))
    if (p.set && p.reason == static_cast<unsigned>(virt::InhibitReason::kPitReinj))
      pit_reinj = true;
  v.push_back({"PIT_REINJ set (lost_tick_policy=delay)", pit_reinj});
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

void RunScenario(Scenario& s) {
  const guests::BuiltinGuest* g = guests::FindBuiltinGuest(s.guest);
  if (g == nullptr) throw std::runtime_error("no built-in guest '" + s.guest + "'");
  MonotonicClock trace_clock;
  trace::TraceSink sink(trace_clock);
  sink.set_ring_capacity(s.trace_ring);
  std::shared_ptr<virt::ApicvVm> vm;
  // VM creation runs on this thread, as KVM_CREATE_VM runs on QEMU's main thread.
  trace::set_current_task(
      {"apicv", static_cast<int>(getpid()), sched_getcpu() < 0 ? 0 : sched_getcpu()});

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
  opt.serial = [&s](uint8_t c) {
    if (s.serial.size() < (1u << 20)) s.serial.push_back(static_cast<char>(c));
  };
  opt.irqchip_factory = [&](const virt::VmConfig& cfg, const Clock& clock) {
    vm = std::make_shared<virt::ApicvVm>(cfg, clock, &sink);
    vm->set_device_trace(false);
    return virt::ShareApicvVm(vm);
  };
  s.result = kvm::RunGuest(opt);
  if (vm) s.stats = vm->stats();
  s.trace_lines_total = sink.lines_emitted();
  s.inhibit_lines.clear();
  for (auto& l : sink.ring_lines()) {
    if (l.find("kvm_apicv_inhibit_changed: ") != std::string::npos) s.inhibit_lines.push_back(l);
  }
  s.passed = s.result.debug_exit && s.serial.find("PASS") != std::string::npos &&
             s.serial.find("FAIL") == std::string::npos;
}

}  // namespace apicv::cli
