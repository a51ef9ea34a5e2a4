// `apicv bench cpu` (issue 12 "Benchmark"): guest instructions per second of the software CPU
// (src/cpu, docs/cpu.md) on three 64-bit loops (bench/cpu_bench_guest.S): registers only, loads
// and stores within one page, and a load from a new 4 KiB page every iteration over 15360 pages
// (every access misses the 256-entry software TLB and walks the page tables). Self-modifying-code
// detection is always on in this CPU (every store checks the page's "holds decoded code" byte).
// Where qemu-system-x86_64 is installed, the same binary runs under `-accel tcg` in the same
// run; QEMU's rate is (wall time of N iterations - wall time of 0 iterations) / instructions.
// Targets on the reference machine: >= 100 M/s register loop, >= 40 M/s memory loop (PASS /
// FAIL unless --no-timing-targets, then REPORTED). JSON with --json FILE.
// `--only LOOP --instructions N` runs one loop on the interpreter only, for the callgrind
// ceiling test (bench/cpu_callgrind_ceiling.sh).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cpu/cpu.h"

extern "C" const unsigned char apicv_cpu_bench_guest[], apicv_cpu_bench_guest_end[];
extern "C" const unsigned char apicv_cpu_bench_reset[], apicv_cpu_bench_reset_end[];

namespace apicv::bench {
namespace {

constexpr uint64_t kLoad = 0x8000;
constexpr uint64_t kParams = 0x8008;        // loop id, iterations (see cpu_bench_guest.S)
constexpr uint64_t kRamSize = 64ull << 20;  // the guest maps 0..64 MiB
constexpr uint16_t kMarkerPort = 0xE9, kExitPort = 0xF4;

struct Loop {
  const char* name;
  uint64_t id;
  unsigned insns_per_iteration;
  uint64_t iterations;  // interpreter run
  double target_mips;   // 0: no target
};
constexpr Loop kLoops[] = {
    {"register", 0, 8, 25'000'000, 100},
    {"memory", 1, 8, 15'000'000, 40},
    {"page_walk", 2, 6, 5'000'000, 0},
};

std::span<const unsigned char> Guest() {
  return {apicv_cpu_bench_guest,
          static_cast<size_t>(apicv_cpu_bench_guest_end - apicv_cpu_bench_guest)};
}
std::span<const unsigned char> Firmware() {
  return {apicv_cpu_bench_reset,
          static_cast<size_t>(apicv_cpu_bench_reset_end - apicv_cpu_bench_reset)};
}

std::vector<unsigned char> GuestWith(uint64_t id, uint64_t iterations) {
  std::vector<unsigned char> g(Guest().begin(), Guest().end());
  std::memcpy(g.data() + (kParams - kLoad), &id, 8);
  std::memcpy(g.data() + (kParams - kLoad) + 8, &iterations, 8);
  return g;
}

class BenchHost : public cpu::CpuHost {
 public:
  uint32_t pio_in(uint16_t, unsigned) override { return 0xFFFFFFFF; }
  void pio_out(uint16_t port, unsigned, uint32_t) override {
    if (port == kMarkerPort) marker = true;
    if (port == kExitPort) done = true;
  }
  void mmio_read(uint64_t, void* data, unsigned len) override { std::memset(data, 0xFF, len); }
  void mmio_write(uint64_t, const void*, unsigned) override {}
  cpu::MsrResult rdmsr(uint32_t, uint64_t*) override { return cpu::MsrResult::kGp; }
  cpu::MsrResult wrmsr(uint32_t, uint64_t) override { return cpu::MsrResult::kGp; }
  uint64_t read_cr8() override { return 0; }
  void write_cr8(uint64_t) override {}
  cpu::CpuidLeaf cpuid(uint32_t, uint32_t) override { return {}; }
  uint64_t rdtsc() override { return 0; }
  uint64_t tsc_aux() override { return 0; }
  bool marker = false, done = false;
};

struct InterpRun {
  uint64_t retired = 0;  // from the marker OUT to the exit OUT
  double seconds = 0;
};

// Boots the guest on a fresh CPU, then times the loop alone.
InterpRun RunInterpreter(const Loop& loop, uint64_t iterations) {
  std::vector<uint8_t> mem(kRamSize);
  cpu::GuestRam ram(mem.data(), kRamSize);
  BenchHost host;
  cpu::Cpu c(ram, host);
  const std::vector<unsigned char> g = GuestWith(loop.id, iterations);
  std::memcpy(mem.data() + kLoad, g.data(), g.size());
  ram.note_write(kLoad, g.size());
  cpu::CpuState& s = c.state();
  s.seg[cpu::kCs] = cpu::Segment{0, 0, 0xFFFF, 0x9B};
  s.rip = kLoad;
  c.state_changed();
  for (int k = 0; !host.marker; ++k) {
    const cpu::RunResult r = c.run(10'000'000);
    if (k > 100 || (r.reason != cpu::StopReason::kBudget && r.reason != cpu::StopReason::kExit)) {
      throw std::runtime_error("cpu bench: the guest did not reach its loop (stop reason " +
                               std::to_string(static_cast<int>(r.reason)) + ")");
    }
  }
  InterpRun out;
  const uint64_t start = c.retired();
  const auto t0 = std::chrono::steady_clock::now();
  while (!host.done) {
    const cpu::RunResult r = c.run(UINT64_MAX / 2);
    if (r.reason != cpu::StopReason::kExit) {
      throw std::runtime_error("cpu bench: the loop stopped unexpectedly (stop reason " +
                               std::to_string(static_cast<int>(r.reason)) + ")");
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  out.retired = c.retired() - start;
  out.seconds = std::chrono::duration<double>(t1 - t0).count();
  return out;
}

std::optional<std::string> FindQemu() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    const std::string candidate = p.substr(start, end - start) + "/qemu-system-x86_64";
    if (!p.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

void WriteFile(const std::filesystem::path& path, std::span<const unsigned char> bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Wall time of one QEMU run of `iterations`, or a negative value on failure.
double QemuSeconds(const std::string& qemu, const std::filesystem::path& dir, const Loop& loop,
                   uint64_t iterations) {
  const std::filesystem::path guest = dir / "guest.bin";
  WriteFile(guest, GuestWith(loop.id, iterations));
  const std::string cmd = "timeout 300 " + qemu +
                          " -accel tcg -machine pc -cpu max -m 128 -nodefaults -display none"
                          " -no-reboot -bios " +
                          (dir / "reset.bin").string() + " -device loader,file=" + guest.string() +
                          ",addr=0x8000,force-raw=on -device isa-debug-exit,iobase=0xf4,iosize=1"
                          " 2>/dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  const auto t1 = std::chrono::steady_clock::now();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) return -1;  // debug-exit: (0 << 1) | 1
  return std::chrono::duration<double>(t1 - t0).count();
}

struct Row {
  const Loop* loop;
  InterpRun interp;
  double mips = 0;
  std::string verdict;
  double qemu_mips = 0;  // 0: not evaluated
  std::string qemu_note;
};

struct Options {
  std::string json_path;
  bool judge_timing = true;
  bool no_qemu = false;
  double scale = 1.0;
  std::string only;
  uint64_t only_instructions = 0;
};

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o;
}

void RunCpuBench(const Options& o) {
  if (!o.only.empty()) {
    for (const Loop& l : kLoops) {
      if (o.only != l.name) continue;
      const uint64_t iterations = o.only_instructions / l.insns_per_iteration;
      const InterpRun r = RunInterpreter(l, iterations);
      std::printf("loop %s iterations %llu retired %llu\n", l.name,
                  static_cast<unsigned long long>(iterations),
                  static_cast<unsigned long long>(r.retired));
      return;
    }
    throw cli::UsageError("--only: unknown loop '" + o.only + "' (register, memory, page_walk)");
  }

  std::optional<std::string> qemu = o.no_qemu ? std::nullopt : FindQemu();
  const std::string no_qemu_reason =
      o.no_qemu ? "--no-qemu"
                : "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
  std::filesystem::path dir;
  if (qemu) {
    char tmpl[] = "/tmp/apicv_cpu_bench_XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("cpu bench: mkdtemp failed");
    dir = tmpl;
    WriteFile(dir / "reset.bin", Firmware());
  }

  std::vector<Row> rows;
  bool ok = true;
  for (const Loop& l : kLoops) {
    Row row{&l, {}, 0, "", 0, ""};
    const uint64_t iterations = static_cast<uint64_t>(static_cast<double>(l.iterations) * o.scale);
    // Best of three: the machine is shared and noisy; the best run is the least disturbed one.
    for (int k = 0; k < 3; ++k) {
      const InterpRun r = RunInterpreter(l, iterations);
      if (row.interp.seconds == 0 || r.seconds < row.interp.seconds) row.interp = r;
    }
    // Structural check: the loop retired exactly its instructions (+ the few around it).
    const uint64_t expect = iterations * l.insns_per_iteration;
    if (row.interp.retired < expect || row.interp.retired > expect + 32) {
      std::printf("FAIL %s loop retired %llu guest instructions, expected %llu (+ <= 32)\n", l.name,
                  static_cast<unsigned long long>(row.interp.retired),
                  static_cast<unsigned long long>(expect));
      ok = false;
    }
    row.mips = static_cast<double>(row.interp.retired) / row.interp.seconds / 1e6;
    if (l.target_mips <= 0) {
      row.verdict = "REPORTED";
    } else if (!o.judge_timing) {
      row.verdict = "REPORTED";
    } else {
      row.verdict = row.mips >= l.target_mips ? "PASS" : "FAIL";
      ok = ok && row.mips >= l.target_mips;
    }
    if (qemu) {
      // 10x the interpreter's iterations (TCG is much faster), minus QEMU's start-up and boot.
      const uint64_t qiter = iterations * 10;
      double base = -1, full = -1;
      for (int k = 0; k < 3; ++k) {
        const double b = QemuSeconds(*qemu, dir, l, 0), f = QemuSeconds(*qemu, dir, l, qiter);
        if (b > 0 && (base < 0 || b < base)) base = b;
        if (f > 0 && (full < 0 || f < full)) full = f;
      }
      if (base < 0 || full < 0) {
        row.qemu_note = "NOT EVALUATED: QEMU did not reach the exit port";
      } else if (full - base < 0.05) {
        row.qemu_note = "NOT EVALUATED: the loop ran too briefly under QEMU to time";
      } else {
        row.qemu_mips = static_cast<double>(qiter * l.insns_per_iteration) / (full - base) / 1e6;
      }
    } else {
      row.qemu_note = "NOT EVALUATED: " + no_qemu_reason;
    }
    rows.push_back(row);
  }
  if (qemu) std::filesystem::remove_all(dir);

  std::printf("\n%-10s %14s %10s %8s %10s  %s\n", "cpu loop", "guest insns", "M insn/s", "target",
              "verdict", "QEMU TCG M insn/s (ratio apicv/QEMU)");
  for (const Row& r : rows) {
    char target[16] = "-";
    if (r.loop->target_mips > 0)
      std::snprintf(target, sizeof target, ">= %.0f", r.loop->target_mips);
    char q[96];
    if (r.qemu_mips > 0) {
      std::snprintf(q, sizeof q, "%.1f (%.3f) REPORTED", r.qemu_mips, r.mips / r.qemu_mips);
    } else {
      std::snprintf(q, sizeof q, "%s", r.qemu_note.c_str());
    }
    std::printf("%-10s %14llu %10.1f %8s %10s  %s\n", r.loop->name,
                static_cast<unsigned long long>(r.interp.retired), r.mips, target,
                r.verdict.c_str(), q);
  }
  std::printf("self-modifying-code detection: on (always, docs/cpu.md)\n");

  if (!o.json_path.empty()) {
    std::ofstream j(o.json_path);
    if (!j) throw cli::UsageError("cannot write " + o.json_path);
    j << "{\n  \"benchmark\": \"cpu\",\n  \"smc_detection\": true,\n  \"loops\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      j << "    {\"name\": \"" << r.loop->name << "\", \"guest_instructions\": " << r.interp.retired
        << ", \"seconds\": " << r.interp.seconds << ", \"m_insns_per_s\": " << r.mips
        << ", \"target_m_insns_per_s\": " << r.loop->target_mips << ", \"verdict\": \"" << r.verdict
        << "\", ";
      if (r.qemu_mips > 0) {
        j << "\"qemu_tcg_m_insns_per_s\": " << r.qemu_mips
          << ", \"ratio_to_qemu\": " << r.mips / r.qemu_mips << "}";
      } else {
        j << "\"qemu_tcg\": \"" << JsonEscape(r.qemu_note) << "\"}";
      }
      j << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    j << "  ],\n  \"pass\": " << (ok ? "true" : "false") << "\n}\n";
  }
  if (!ok) cli::SetExitStatus(1);
}

cli::CommandRegistration reg("bench", [](CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "cpu", "Software CPU: guest M instructions/s on register, memory and page-walk loops");
  auto o = std::make_shared<Options>();
  cmd->add_option("--json", o->json_path, "Write the results as JSON to this file");
  cmd->add_flag("--no-timing-targets{false}", o->judge_timing,
                "Report the rates without judging them against the targets");
  cmd->add_flag("--no-qemu", o->no_qemu, "Skip the side-by-side QEMU TCG runs");
  cmd->add_option("--scale", o->scale, "Multiply every loop's iteration count")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--only", o->only,
                  "Run one loop once on the interpreter only (register, memory, page_walk)");
  cmd->add_option("--instructions", o->only_instructions,
                  "With --only: guest instructions to run in the loop")
      ->check(CLI::PositiveNumber);
  cmd->callback([o] { RunCpuBench(*o); });
});

}  // namespace
}  // namespace apicv::bench
