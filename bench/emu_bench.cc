// `apicv bench emu`: the built-in guests smp (-smp 4), ioapic, pit-extint and apic on apicv's
// software CPU (-accel emu, deterministic, -icount shift=N) and, side by side in the same run, on
// `qemu-system-x86_64 -accel tcg -icount shift=N,sleep=off` with the same N, the same guest ELF
// (multiboot), command line and vCPU count. Reported per guest and side: guest instructions to
// PASS, wall time, and wall time per guest instruction; the goal is apicv within 2x of QEMU.
//
// How QEMU's side is measured: QEMU starts paused (-S) with a QMP socket; the timed interval runs
// from QMP "cont" to the guest's "PASS" line on the serial port (QEMU's start-up excluded; apicv's
// RunResult::wall_s includes its small set-up). QEMU runs without isa-debug-exit, so the guest
// halts after PASS and QMP `query-replay` then reads QEMU's instruction counter (icount_get_raw:
// every vCPU's executed instructions, idle-time warps excluded). apicv's count is
// RunResult::guest_instructions (Cpu::retired() of every vCPU).
//
// Not supported: guests that need x2APIC under QEMU (TCG in QEMU 7.2 has none; such a guest
// prints SKIP for those tests, and a guest that fails there is reported FAIL for QEMU's side);
// QEMU TCG plugins (Debian 12 ships none) for an independent instruction count.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "backend/emu/run_emu.h"
#include "builtin_guests.h"
#include "cli/command.h"
#include "cli/scenario.h"

namespace apicv::bench {
namespace {

struct Case {
  const char* guest;
  int smp;
  const char* append;
};
constexpr Case kCases[] = {
    {"smp", 4, ""}, {"ioapic", 1, ""}, {"pit-extint", 1, "ticks=200"}, {"apic", 1, ""}};

struct Side {
  bool measured = false;  // false: `note` says why (NOT EVALUATED / FAIL)
  bool passed = false;
  std::string note;
  uint64_t insns = 0;
  double wall_s = 0;
  double cpu_s = 0;  // user + system CPU time of the process over the same interval
  double ns_per_insn() const { return insns ? wall_s * 1e9 / static_cast<double>(insns) : 0; }
  double cpu_ns_per_insn() const { return insns ? cpu_s * 1e9 / static_cast<double>(insns) : 0; }
};

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// utime + stime of `pid` from /proc/PID/stat (fields 14 and 15), in seconds; -1 when unreadable.
double ProcCpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  const std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t rp = all.rfind(')');
  if (rp == std::string::npos || rp + 2 > all.size()) return -1;
  std::istringstream in(all.substr(rp + 2));
  std::string field;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::stoull(field);
    if (i == 15) st = std::stoull(field);
  }
  return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A complete serial line starting with FAIL, or "".
std::string FailLine(const std::string& out) {
  size_t at = out.rfind("FAIL", 0) == 0 ? 0 : out.find("\nFAIL");
  if (at == std::string::npos) return "";
  if (at != 0) ++at;
  const size_t nl = out.find('\n', at);
  return nl == std::string::npos ? "" : out.substr(at, nl - at);
}

bool HasLine(const std::string& out, const std::string& line) {
  return out.rfind(line + "\n", 0) == 0 || out.find("\n" + line + "\n") != std::string::npos;
}

Side RunApicv(const guests::BuiltinGuest& g, const Case& c, unsigned shift, double timeout_s) {
  Side s;
  platform::RunOptions o;
  o.kernel.assign(g.data, g.data + g.size);
  o.kernel_name = g.name;
  o.append = c.append;
  o.smp = c.smp;
  o.timeout_s = timeout_s;
  std::string serial;
  o.serial = [&serial](uint8_t b) { serial.push_back(static_cast<char>(b)); };
  emu::EmuOptions e;
  e.icount_shift = shift;
  platform::RunResult r;
  const double cpu0 = SelfCpuSeconds();
  try {
    r = emu::RunGuest(o, e);
    s.cpu_s = SelfCpuSeconds() - cpu0;
  } catch (const std::exception& ex) {
    s.note = std::string("FAIL: ") + ex.what();
    return s;
  }
  s.passed = r.exit_code == 1 && HasLine(serial, "PASS");
  s.measured = true;
  s.insns = r.guest_instructions;
  s.wall_s = r.wall_s;
  if (!s.passed) {
    s.note = "FAIL: exit status " + std::to_string(r.exit_code) +
             (r.error.empty() ? "" : " (" + r.error + ")");
  }
  return s;
}

std::optional<std::string> FindQemu() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  size_t start = 0;
  while (!p.empty() && start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    const std::string candidate = p.substr(start, end - start) + "/qemu-system-x86_64";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

// A QMP connection: line-delimited JSON; events are skipped while waiting for a "return".
class Qmp {
 public:
  ~Qmp() {
    if (fd_ >= 0) close(fd_);
  }
  bool Connect(const std::string& path, std::chrono::steady_clock::time_point deadline) {
    while (std::chrono::steady_clock::now() < deadline) {
      fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
      if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        return !Line(deadline).empty() && Command("qmp_capabilities", deadline).has_value();
      }
      close(fd_);
      fd_ = -1;
      usleep(10000);
    }
    return false;
  }
  // The "return" line of `cmd`, or nullopt.
  std::optional<std::string> Command(const std::string& cmd,
                                     std::chrono::steady_clock::time_point deadline) {
    const std::string req = "{\"execute\": \"" + cmd + "\"}\n";
    if (write(fd_, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return {};
    for (;;) {
      const std::string l = Line(deadline);
      if (l.empty()) return {};
      if (l.find("\"return\"") != std::string::npos) return l;
      if (l.find("\"error\"") != std::string::npos) return {};
    }
  }

 private:
  std::string Line(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return {};
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) return {};
      char b[4096];
      const ssize_t n = read(fd_, b, sizeof b);
      if (n <= 0) return {};
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  int fd_ = -1;
  std::string buf_;
};

Side RunQemu(const std::string& qemu, const std::filesystem::path& dir,
             const guests::BuiltinGuest& g, const Case& c, unsigned shift, double timeout_s) {
  Side s;
  const std::filesystem::path elf = dir / (std::string(g.name) + ".elf");
  {
    std::ofstream f(elf, std::ios::binary);
    f.write(reinterpret_cast<const char*>(g.data), static_cast<std::streamsize>(g.size));
  }
  const std::string sock = (dir / "qmp.sock").string();
  std::filesystem::remove(sock);
  const std::vector<std::string> args = {qemu,
                                         "-accel",
                                         "tcg",
                                         "-icount",
                                         "shift=" + std::to_string(shift) + ",sleep=off",
                                         "-machine",
                                         "pc",
                                         "-m",
                                         "64",
                                         "-smp",
                                         std::to_string(c.smp),
                                         "-nodefaults",
                                         "-display",
                                         "none",
                                         "-no-reboot",
                                         "-serial",
                                         "stdio",
                                         "-kernel",
                                         elf.string(),
                                         "-append",
                                         c.append,
                                         "-qmp",
                                         "unix:" + sock + ",server=on,wait=off",
                                         "-S"};
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    s.note = "FAIL: pipe";
    return s;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(qemu.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  std::string serial;
  Qmp qmp;
  bool passed = false, failed = false;
  std::chrono::steady_clock::time_point t0, t1;
  double cpu0 = 0, cpu1 = 0;
  if (!qmp.Connect(sock, deadline)) {
    s.note = "FAIL: QEMU's QMP socket did not answer";
  } else {
    cpu0 = ProcCpuSeconds(pid);
    t0 = std::chrono::steady_clock::now();
    if (!qmp.Command("cont", deadline)) s.note = "FAIL: QMP cont";
    while (s.note.empty() && !passed && !failed) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{out[0], POLLIN, 0};
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) {
        s.note = "FAIL: no PASS within " + std::to_string(static_cast<int>(timeout_s)) + " s";
        break;
      }
      char b[4096];
      const ssize_t n = read(out[0], b, sizeof b);
      if (n <= 0) {
        s.note = "FAIL: QEMU exited before PASS";
        break;
      }
      serial.append(b, static_cast<size_t>(n));
      passed = HasLine(serial, "PASS");
      failed = !FailLine(serial).empty();
    }
    t1 = std::chrono::steady_clock::now();
    cpu1 = ProcCpuSeconds(pid);
    if (passed || failed) {
      // The guest halts after PASS/FAIL (no isa-debug-exit): QEMU's counter is final.
      const auto r = qmp.Command("query-replay", deadline);
      static const std::regex re(R"("icount":\s*([0-9]+))");
      std::smatch m;
      if (r && std::regex_search(*r, m, re)) {
        s.insns = std::stoull(m[1]);
        s.measured = true;
        s.wall_s = std::chrono::duration<double>(t1 - t0).count();
        s.cpu_s = cpu0 >= 0 && cpu1 >= cpu0 ? cpu1 - cpu0 : 0;
        s.passed = passed;
        if (failed) s.note = "FAIL under QEMU: " + FailLine(serial);
      } else {
        s.note = "FAIL: QMP query-replay gave no icount";
      }
    }
    (void)qmp.Command("quit", std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }
  close(out[0]);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return s;
}

std::string Num(double v, const char* fmt) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

std::string JsonSide(const Side& s) {
  std::ostringstream j;
  j << "{\"measured\": " << (s.measured ? "true" : "false")
    << ", \"passed\": " << (s.passed ? "true" : "false");
  if (s.measured) {
    j << ", \"guest_instructions\": " << s.insns << ", \"wall_s\": " << Num(s.wall_s, "%.4f")
      << ", \"wall_ns_per_guest_instruction\": " << Num(s.ns_per_insn(), "%.3f")
      << ", \"cpu_s\": " << Num(s.cpu_s, "%.4f")
      << ", \"cpu_ns_per_guest_instruction\": " << Num(s.cpu_ns_per_insn(), "%.3f");
  }
  if (!s.note.empty()) {
    std::string n;
    for (char ch : s.note) {
      if (ch == '"' || ch == '\\') n += '\\';
      if (static_cast<unsigned char>(ch) >= 0x20) n += ch;
    }
    j << ", \"note\": \"" << n << "\"";
  }
  j << "}";
  return j.str();
}

cli::CommandRegistration reg("bench", [](CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "emu", "built-in guests on -accel emu and on QEMU TCG -icount: time per guest instruction");
  static std::string json_path;
  static unsigned shift = 3;
  static double timeout_s = 300;
  static bool no_qemu = false;
  cmd->add_option("--json", json_path, "write results as JSON");
  cmd->add_option("--shift", shift, "icount shift N for both (2^N ns per instruction)")
      ->check(CLI::Range(0, 10));
  cmd->add_option("--timeout", timeout_s, "per-run timeout in seconds")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-qemu", no_qemu, "do not run QEMU (its side is NOT EVALUATED)");
  cmd->callback([] {
    if (!json_path.empty()) cli::CheckWritable("--json", json_path);
    const std::optional<std::string> qemu = no_qemu ? std::nullopt : FindQemu();
    const std::string no_qemu_why =
        no_qemu ? "NOT EVALUATED: --no-qemu"
                : "NOT EVALUATED: qemu-system-x86_64 is not installed (apt-get install "
                  "qemu-system-x86)";
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("apicv-bench-emu-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    struct Row {
      const Case* c;
      Side apicv, qemu;
    };
    std::vector<Row> rows;
    for (const Case& c : kCases) {
      const guests::BuiltinGuest* g = guests::FindBuiltinGuest(c.guest);
      Row r{&c, {}, {}};
      if (g == nullptr) {
        r.apicv.note = r.qemu.note = "FAIL: built-in guest missing";
      } else {
        r.apicv = RunApicv(*g, c, shift, timeout_s);
        if (qemu) {
          r.qemu = RunQemu(*qemu, dir, *g, c, shift, timeout_s);
        } else {
          r.qemu.note = no_qemu_why;
        }
      }
      rows.push_back(std::move(r));
    }
    std::filesystem::remove_all(dir);
    std::printf("icount shift=%u (%u ns per instruction), sleep=off\n", shift, 1u << shift);
    std::printf("%-14s %11s %7s %9s %8s | %11s %7s %9s %8s | %s\n", "guest", "apicv insns",
                "wall s", "wall ns/i", "cpu ns/i", "QEMU insns", "wall s", "wall ns/i", "cpu ns/i",
                "apicv/QEMU wall (cpu), goal <= 2");
    bool all_apicv_pass = true;
    int met = 0, not_met = 0, not_eval = 0;
    for (const Row& r : rows) {
      std::string name =
          std::string(r.c->guest) + (r.c->smp > 1 ? " -smp " + std::to_string(r.c->smp) : "");
      auto side = [](const Side& s) {
        if (!s.measured) return std::string(11 + 8 + 10 + 9, ' ');
        return Num(static_cast<double>(s.insns), "%11.0f") + Num(s.wall_s, " %7.3f") +
               Num(s.ns_per_insn(), " %9.2f") + Num(s.cpu_ns_per_insn(), " %8.2f");
      };
      std::string verdict;
      if (r.apicv.measured && r.qemu.measured && r.apicv.passed && r.qemu.passed) {
        const double ratio = r.apicv.ns_per_insn() / r.qemu.ns_per_insn();
        const double cpu_ratio =
            r.qemu.cpu_s > 0 ? r.apicv.cpu_ns_per_insn() / r.qemu.cpu_ns_per_insn() : 0;
        verdict =
            Num(ratio, "%.2f") + Num(cpu_ratio, " (%.2f) ") + (ratio <= 2.0 ? "met" : "NOT met");
        (ratio <= 2.0 ? met : not_met)++;
      } else {
        verdict = "NOT EVALUATED: " + (!r.apicv.passed ? "apicv " + r.apicv.note : r.qemu.note);
        ++not_eval;
      }
      all_apicv_pass = all_apicv_pass && r.apicv.passed;
      std::printf("%-14s %s | %s | %s\n", name.c_str(), side(r.apicv).c_str(), side(r.qemu).c_str(),
                  verdict.c_str());
      if (!r.apicv.note.empty()) std::printf("  apicv: %s\n", r.apicv.note.c_str());
      if (!r.qemu.note.empty()) std::printf("  QEMU: %s\n", r.qemu.note.c_str());
    }
    std::printf(
        "bench emu: goal (apicv <= 2x QEMU time per guest instruction): %d met, %d NOT met, "
        "%d NOT EVALUATED; every guest passed under apicv: %s\n",
        met, not_met, not_eval, all_apicv_pass ? "yes" : "NO");
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << "{\n  \"icount_shift\": " << shift << ",\n  \"guests\": [\n";
      for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        f << "    {\"guest\": \"" << r.c->guest << "\", \"smp\": " << r.c->smp << ", \"append\": \""
          << r.c->append << "\",\n     \"apicv\": " << JsonSide(r.apicv)
          << ",\n     \"qemu_tcg\": " << JsonSide(r.qemu);
        if (r.apicv.passed && r.qemu.passed && r.qemu.ns_per_insn() > 0) {
          f << ",\n     \"wall_ratio_apicv_to_qemu\": "
            << Num(r.apicv.ns_per_insn() / r.qemu.ns_per_insn(), "%.3f");
          if (r.qemu.cpu_s > 0) {
            f << ", \"cpu_ratio_apicv_to_qemu\": "
              << Num(r.apicv.cpu_ns_per_insn() / r.qemu.cpu_ns_per_insn(), "%.3f");
          }
        }
        f << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
      }
      f << "  ],\n  \"goal_met\": " << met << ", \"goal_not_met\": " << not_met
        << ", \"not_evaluated\": " << not_eval << "\n}\n";
      if (!f) throw cli::UsageError("--json: cannot write '" + json_path + "'");
    }
    // The exit status follows apicv's own guests; the speed goal is reported, not asserted.
    cli::SetExitStatus(all_apicv_pass ? 0 : 1);
  });
});

}  // namespace
}  // namespace apicv::bench
