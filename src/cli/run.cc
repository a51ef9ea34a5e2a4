// `apicv run`: boot a guest on /dev/kvm with QEMU-style options, served by apicv's irqchip
// (--irqchip apicv, default) or KVM's in-kernel one (--irqchip kvm). Exit status: the guest's
// isa-debug-exit status; 124 timeout; 125 VMM error; 77 no /dev/kvm; 2 bad options.
// Options are parsed here (QEMU's single-dash long names such as -smp are not CLI11 syntax).
#include "cli/run.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/emu/run_emu.h"
#include "backend/kvm/run_guest.h"
#include "builtin_guests.h"
#include "cli/atomic_output.h"
#include "cli/command.h"
#include "cli/scenario.h"
#include "devices/clock.h"
#include "platform/cpu_model.h"
#include "platform/guest_memory.h"
#include "platform/run_options.h"
#include "trace/timeline_export.h"
#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"
#include "virt/shared_irqchip.h"

namespace apicv::cli {
namespace {

constexpr const char* kRunHelp = R"(apicv run [options]
  -kernel FILE            multiboot v1 ELF, or a flat binary (see --entry)
  --guest NAME            a built-in guest (apicv run --guest list)
  --entry 16|32|64        load -kernel as a flat binary with this entry mode
  -initrd FILE            multiboot module
  -append STR             kernel command line (after the kernel's name)
  -smp N                  vCPUs, 1..1024 under -accel emu (above 255: x2APIC only), 1..288
                          under -accel kvm (default 1)
  -cpu MODEL[,+feat|-feat|feat=on|off|pmu=on|off|vendor=V]   guest CPU model (QEMU's spelling;
                          default max; -cpu help lists models and features)
  -m SIZE                 guest RAM, e.g. 64M, 1G (default 64M; no suffix = MiB)
  -serial stdio|file:PATH|none   UART 0x3F8 output (default stdio)
  -accel kvm|emu[,thread=single|multi]  execution: /dev/kvm, or apicv's software CPU (default:
                          kvm when /dev/kvm opens, else emu; -accel help lists them)
  -icount shift=N         emu: each instruction is 2^N ns of virtual time (default 3)
  --sched-seed S          emu: seeded quanta, tie breaks and descheduled periods (default 0:
                          fixed; apicv explore runs many seeds)
  --quantum N             emu: instructions per scheduling quantum (default 2000)
  --irqchip apicv|kvm     interrupt controllers: apicv's (default) or KVM's in-kernel ones
  --trace FILE            apicv tracepoints, ftrace text
  --trace-json FILE       the run as a Trace Event Format timeline (ui.perfetto.dev); turns on
                          kvm_entry/kvm_exit (also in --trace) (docs/timeline.md)
  --trace-exits           kvm_entry/kvm_exit lines in --trace too (two per VM exit)
  --timeout SECONDS       default 120; on expiry exit 124
  --max-reboots N         default 8
  --stats                 print exit and kick counters to stderr
 apicv virtualization layer (--irqchip apicv only):
  --vendor svm|vmx  --avic on|off  --irqwin legacy|counted  --avic-kick fast|slow
  -machine kernel-irqchip=on|split|off  -global kvm-pit.lost_tick_policy=delay|discard
  --apic-id-check current|2022  --pmi-delivery current|legacy  --halt-poll-ns NS
  --suppress-eoi-broadcast quirk|enable|disable   KVM_CAP_X2APIC_API flags (split only))";

// Reads a -kernel or -initrd file. Bad input, refused before anything is read: a path that is not
// a regular file (a directory, /dev/zero, a FIFO) and a file larger than guest RAM, which could
// not be loaded and would otherwise be read whole into memory.
std::vector<uint8_t> ReadFile(const std::string& path, const char* what, uint64_t ram_size) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    throw UsageError(std::string(what) + ": cannot open '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                                              : "not a regular file";
    throw UsageError(std::string(what) + ": '" + path + "' is " + kind +
                     ", expected a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > ram_size)
    throw UsageError(std::string(what) + ": '" + path + "' has " + std::to_string(size) +
                     " bytes, more than guest RAM (-m, " + std::to_string(ram_size) + " bytes)");
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw UsageError(std::string(what) + ": cannot open '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> data(size);
  f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
  if (static_cast<uint64_t>(f.gcount()) != size)
    throw UsageError(std::string(what) + ": short read from '" + path + "'");
  return data;
}

uint64_t ParseSize(const std::string& s) {
  size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &pos, 0);
  } catch (...) {
    throw UsageError("-m: bad size '" + s + "'");
  }
  std::string suf = s.substr(pos);
  uint64_t mul = 1ull << 20;
  if (suf == "K" || suf == "k")
    mul = 1ull << 10;
  else if (suf == "G" || suf == "g")
    mul = 1ull << 30;
  else if (suf == "B" || suf == "b")
    mul = 1;
  else if (!suf.empty() && suf != "M" && suf != "m")
    throw UsageError("-m: bad suffix '" + suf + "'");
  if (v == 0 || v > (1ull << 40) / mul) throw UsageError("-m: size out of range '" + s + "'");
  return v * mul;
}

template <typename E>
E Choose(const std::string& opt, const std::string& v, std::map<std::string, E> choices) {
  auto it = choices.find(v);
  if (it != choices.end()) return it->second;
  std::string all;
  for (auto& [k, _] : choices) all += (all.empty() ? "" : "|") + k;
  throw UsageError(opt + ": expected " + all + ", got '" + v + "'");
}

struct Parsed {
  kvm::RunOptions run;
  std::string kernel_path, initrd_path, guest, serial = "stdio", trace_path, trace_json;
  bool trace_exits = false;
  bool stats = false;
  bool help = false;
  std::vector<std::string> layer_opts;  // options that only make sense with --irqchip apicv
  bool have_pit_policy = false, have_avic_kick = false;
  std::string accel;  // "" (automatic), "kvm" or "emu"
  bool accel_help = false;
  std::vector<std::string> emu_opts;           // options that only make sense with -accel emu
  std::vector<std::string> virtual_time_opts;  // emu options thread=multi (real time) refuses
  emu::EmuOptions emu;
  platform::CpuModel cpu;
  bool cpu_help = false;
};

// The choices that need one accelerator, checked once it is known (explicit or automatic).
void CheckForAccel(const Parsed& p, const std::string& accel) {
  if (accel == "emu" && p.cpu.needs_kvm) {
    throw UsageError("-cpu " + p.cpu.name + " needs -accel kvm (it is KVM's supported CPUID)");
  }
  if (accel == "kvm" && p.run.smp > platform::kMaxKvmVcpus) {
    throw UsageError("-smp " + std::to_string(p.run.smp) + ": -accel kvm supports at most " +
                     std::to_string(platform::kMaxKvmVcpus) +
                     " vCPUs (-accel emu: " + std::to_string(platform::kMaxVcpus) + ")");
  }
}

constexpr const char* kAccelHelp = R"(Accelerators:
  kvm   /dev/kvm with KVM's irqchip off (apicv serves every interrupt); --irqchip kvm: KVM's own
  emu   apicv's software x86-64 CPU (docs/emu.md); options:
          thread=single  the default: every vCPU on one thread, deterministic in virtual time
          thread=multi   a host thread per vCPU as under KVM, real time, nondeterministic)";

// The -accel value: NAME[,thread=single|multi].
void ParseAccel(Parsed& p, const std::string& v) {
  if (v == "help") {
    p.accel_help = true;
    return;
  }
  const size_t comma = v.find(',');
  const std::string name = v.substr(0, comma);
  if (name != "kvm" && name != "emu") {
    throw UsageError("-accel: expected kvm or emu (-accel help), got '" + name + "'");
  }
  p.accel = name;
  if (comma == std::string::npos) return;
  const std::string rest = v.substr(comma + 1);
  if (name != "emu") throw UsageError("-accel kvm takes no options, got '" + rest + "'");
  if (rest == "thread=single" || rest == "thread=multi") {
    p.emu.multi = rest == "thread=multi";
    return;
  }
  throw UsageError("-accel emu: unknown option '" + rest + "' (thread=single|multi)");
}

Parsed Parse(const std::vector<std::string>& args) {
  Parsed p;
  auto& cfg = p.run.vm_config;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string val;
    bool have_val = false;
    if (a.rfind("--", 0) == 0) a = a.substr(1);  // accept -opt and --opt alike
    if (auto eq = a.find('=');
        eq != std::string::npos && a.rfind("-global", 0) != 0 && a.rfind("-machine", 0) != 0) {
      val = a.substr(eq + 1);
      a = a.substr(0, eq);
      have_val = true;
    }
    auto next = [&]() -> std::string {
      if (have_val) return val;
      if (i + 1 >= args.size()) throw UsageError(a + ": missing value");
      return args[++i];
    };
    if (a == "-h" || a == "-help") {
      p.help = true;  // help wins over everything else on the line; exit 0
      return p;
    } else if (a == "-smp") {
      p.run.smp = static_cast<int>(ParseIntOption("-smp", next(), 1, kvm::kMaxVcpus));
    } else if (a == "-cpu") {
      const std::string v = next();
      if (v == "help") {
        p.cpu_help = true;
        continue;
      }
      try {
        p.cpu = platform::ParseCpuModel(v);
      } catch (const platform::CpuModelError& e) {
        throw UsageError(std::string("-cpu: ") + e.what());
      }
      platform::ApplyCpuModel(p.cpu, cfg);
    } else if (a == "-m") {
      p.run.mem_size = ParseSize(next());
    } else if (a == "-kernel") {
      p.kernel_path = next();
    } else if (a == "-initrd") {
      p.initrd_path = next();
    } else if (a == "-append") {
      p.run.append = next();
    } else if (a == "-guest") {
      p.guest = next();
    } else if (a == "-entry") {
      p.run.flat_entry = Choose<platform::EntryMode>("--entry", next(),
                                                     {{"16", platform::EntryMode::kReal16},
                                                      {"32", platform::EntryMode::kProtected32},
                                                      {"64", platform::EntryMode::kLong64}});
    } else if (a == "-serial") {
      p.serial = next();
    } else if (a == "-trace") {
      p.trace_path = next();
    } else if (a == "-trace-json") {
      p.trace_json = next();
    } else if (a == "-trace-exits") {
      p.trace_exits = true;
    } else if (a == "-irqchip") {
      p.run.irqchip = Choose<kvm::IrqchipMode>(
          "--irqchip", next(),
          {{"apicv", kvm::IrqchipMode::kApicv}, {"kvm", kvm::IrqchipMode::kKvm}});
    } else if (a == "-timeout") {
      const std::string v = next();
      try {
        p.run.timeout_s = std::stod(v);
      } catch (...) {
        throw UsageError("--timeout: bad number '" + v + "'");
      }
      if (!(p.run.timeout_s > 0 && p.run.timeout_s < 1e7))
        throw UsageError("--timeout: out of range");
    } else if (a == "-max-reboots") {
      p.run.max_reboots = static_cast<int>(ParseIntOption("--max-reboots", next(), 0, 1000));
    } else if (a == "-accel") {
      ParseAccel(p, next());
    } else if (a == "-icount") {
      const std::string v = next();
      std::string shift = v.substr(0, v.find(','));
      if (shift.rfind("shift=", 0) == 0) shift = shift.substr(6);
      const std::string rest = v.find(',') == std::string::npos ? "" : v.substr(v.find(',') + 1);
      if (!rest.empty() && rest != "sleep=off") {
        throw UsageError("-icount: only shift=N[,sleep=off] is supported, got '" + v + "'");
      }
      p.emu.icount_shift = static_cast<unsigned>(ParseIntOption("-icount shift", shift, 0, 10));
      p.emu_opts.push_back("-icount");
      p.virtual_time_opts.push_back("-icount");
    } else if (a == "-sched-seed") {
      p.emu.sched_seed =
          static_cast<uint64_t>(ParseIntOption("--sched-seed", next(), 0, INT64_MAX));
      p.emu_opts.push_back("--sched-seed");
      p.virtual_time_opts.push_back("--sched-seed");
    } else if (a == "-quantum") {
      p.emu.quantum = static_cast<uint64_t>(ParseIntOption("--quantum", next(), 1, 100000000));
      p.emu_opts.push_back("--quantum");
      p.virtual_time_opts.push_back("--quantum");
    } else if (a == "-stats") {
      p.stats = true;
    } else if (a == "-vendor") {
      cfg.vendor = Choose<virt::VendorModel>(
          "--vendor", next(), {{"svm", virt::VendorModel::kSvm}, {"vmx", virt::VendorModel::kVmx}});
      p.layer_opts.push_back("--vendor");
    } else if (a == "-avic") {
      cfg.enable_apicv = Choose<bool>("--avic", next(), {{"on", true}, {"off", false}});
      p.layer_opts.push_back("--avic");
    } else if (a == "-irqwin") {
      cfg.irqwin = Choose<virt::IrqWindowMode>(
          "--irqwin", next(),
          {{"legacy", virt::IrqWindowMode::kLegacy}, {"counted", virt::IrqWindowMode::kCounted}});
      p.layer_opts.push_back("--irqwin");
    } else if (a == "-avic-kick") {
      cfg.avic_kick = Choose<virt::AvicKick>(
          "--avic-kick", next(),
          {{"fast", virt::AvicKick::kFast}, {"slow", virt::AvicKick::kSlow}});
      p.have_avic_kick = true;
      p.layer_opts.push_back("--avic-kick");
    } else if (a == "-apic-id-check") {
      cfg.apic_id_check = Choose<virt::ApicIdCheck>(
          "--apic-id-check", next(),
          {{"current", virt::ApicIdCheck::kCurrent}, {"2022", virt::ApicIdCheck::k2022}});
      p.layer_opts.push_back("--apic-id-check");
    } else if (a == "-pmi-delivery") {
      cfg.pmi_delivery = Choose<virt::PmiDelivery>(
          "--pmi-delivery", next(),
          {{"current", virt::PmiDelivery::kCurrent}, {"legacy", virt::PmiDelivery::kLegacy}});
      p.layer_opts.push_back("--pmi-delivery");
    } else if (a == "-suppress-eoi-broadcast") {
      cfg.suppress_eoi_broadcast =
          Choose<virt::SuppressEoiBroadcast>("--suppress-eoi-broadcast", next(),
                                             {{"quirk", virt::SuppressEoiBroadcast::kQuirk},
                                              {"enable", virt::SuppressEoiBroadcast::kEnabled},
                                              {"disable", virt::SuppressEoiBroadcast::kDisabled}});
      p.layer_opts.push_back("--suppress-eoi-broadcast");
    } else if (a == "-halt-poll-ns") {
      cfg.halt_poll_ns =
          static_cast<uint64_t>(ParseIntOption("--halt-poll-ns", next(), 0, 100000000));
    } else if (a == "-machine" || a.rfind("-machine=", 0) == 0) {
      const std::string v = a == "-machine" ? next() : a.substr(9);
      const std::string key = "kernel-irqchip=";
      if (v.rfind(key, 0) != 0)
        throw UsageError("-machine: only kernel-irqchip=on|split|off is supported, got '" + v +
                         "'");
      cfg.placement =
          Choose<virt::IrqchipPlacement>("-machine kernel-irqchip", v.substr(key.size()),
                                         {{"on", virt::IrqchipPlacement::kOn},
                                          {"split", virt::IrqchipPlacement::kSplit},
                                          {"off", virt::IrqchipPlacement::kOff}});
      p.layer_opts.push_back("-machine");
    } else if (a == "-global" || a.rfind("-global=", 0) == 0) {
      const std::string v = a == "-global" ? next() : a.substr(8);
      const std::string key = "kvm-pit.lost_tick_policy=";
      if (v.rfind(key, 0) != 0)
        throw UsageError(
            "-global: only kvm-pit.lost_tick_policy=delay|discard is supported, got '" + v + "'");
      cfg.pit_policy = Choose<virt::PitPolicy>(
          "-global kvm-pit.lost_tick_policy", v.substr(key.size()),
          {{"delay", virt::PitPolicy::kDelay}, {"discard", virt::PitPolicy::kDiscard}});
      p.have_pit_policy = true;
      p.layer_opts.push_back("-global");
    } else {
      throw UsageError("run: unknown option '" + args[i] + "' (apicv run -help)");
    }
  }
  // Invalid combinations, as KVM/QEMU would reject them.
  if (p.run.irqchip == kvm::IrqchipMode::kKvm && !p.layer_opts.empty()) {
    throw UsageError(p.layer_opts.front() +
                     " configures apicv's virtualization layer and needs --irqchip apicv");
  }
  if (cfg.vendor == virt::VendorModel::kVmx && p.have_avic_kick) {
    throw UsageError("--avic-kick is an AVIC (svm) option and is invalid with --vendor vmx");
  }
  if (cfg.placement != virt::IrqchipPlacement::kOn && p.have_pit_policy) {
    throw UsageError(
        "-global kvm-pit.lost_tick_policy needs the in-kernel PIT (kernel-irqchip=on)");
  }
  if (cfg.placement != virt::IrqchipPlacement::kSplit &&
      cfg.suppress_eoi_broadcast != virt::SuppressEoiBroadcast::kQuirk) {
    throw UsageError(
        "--suppress-eoi-broadcast needs kernel-irqchip=split (KVM rejects it otherwise)");
  }
  if (p.accel_help || p.cpu_help) return p;
  if (p.accel == "kvm" && !p.emu_opts.empty()) {
    throw UsageError(p.emu_opts.front() + " configures -accel emu and is invalid with -accel kvm");
  }
  if (p.accel == "emu" && p.run.irqchip == kvm::IrqchipMode::kKvm) {
    throw UsageError("--irqchip kvm (KVM's in-kernel irqchip, the oracle) needs -accel kvm");
  }
  if (!p.accel.empty()) CheckForAccel(p, p.accel);
  if (p.emu.multi && !p.virtual_time_opts.empty()) {
    throw UsageError(p.virtual_time_opts.front() +
                     " configures virtual time and is invalid with -accel emu,thread=multi "
                     "(real time)");
  }
  if (p.guest.empty() == p.kernel_path.empty()) {
    throw UsageError("run: give exactly one of -kernel FILE and --guest NAME");
  }
  if (!p.guest.empty() && p.run.flat_entry) throw UsageError("--entry applies to -kernel only");
  if (p.run.flat_entry && !p.initrd_path.empty())
    throw UsageError("-initrd needs a multiboot kernel");
  return p;
}

void ListGuests() {
  for (const auto& g : guests::BuiltinGuests()) std::printf("%-12s %s\n", g.name, g.description);
}

void PrintVmStats(const virt::ApicvVm& vm) {
  const virt::VmStats s = vm.stats();
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(stderr,
               "  apicv layer: ipis %llu ipi-kicks %llu injections %llu hw-deliveries %llu "
               "eois %llu (no exit %llu) pit ticks %llu acks %llu inhibits 0x%lx\n",
               u(s.ipis), u(s.ipi_kicks), u(s.injections), u(s.hw_deliveries), u(s.eois),
               u(s.eois_accelerated), u(s.pit_ticks), u(s.pit_acks), vm.inhibit_reasons());
  if (vm.config().vendor == virt::VendorModel::kVmx) {
    std::fprintf(stderr,
                 "  posted interrupts: deliveries %llu notifications %llu wake-ups %llu "
                 "suppressed (ON set) %llu coalesced %llu harvests %llu\n"
                 "  EOI-exit bitmap: virtualized EOIs %llu EOI exits %llu ioapic scans %llu\n",
                 u(s.pi_deliveries), u(s.pi_notifications), u(s.pi_wakeups), u(s.pi_suppressed_on),
                 u(s.pi_coalesced), u(s.pi_harvests), u(s.vmx_eois_virtualized), u(s.vmx_eoi_exits),
                 u(s.vmx_ioapic_scans));
  } else {
    std::fprintf(stderr,
                 "  avic: accelerated ipis %llu incomplete-ipi exits %llu doorbells %llu "
                 "kicks %llu\n"
                 "  avic xAPIC MMIO: accelerated %llu unaccelerated-access exits: trap %llu "
                 "fault %llu\n",
                 u(s.avic_accelerated_ipis), u(s.avic_incomplete_ipi), u(s.avic_doorbells),
                 u(s.avic_kicks), u(s.avic_accelerated_accesses), u(s.avic_unaccelerated_traps),
                 u(s.avic_unaccelerated_faults));
  }
  if (vm.config().placement == virt::IrqchipPlacement::kSplit) {
    std::fprintf(stderr, "  split: VMM-layer exits %llu of which IOAPIC EOI exits %llu\n",
                 u(s.vmm_exits), u(s.split_ioapic_eoi_exits));
  }
}

int RunMain(const std::vector<std::string>& args) {
  Parsed p = Parse(args);
  if (p.help) {
    std::puts(kRunHelp);
    return 0;
  }
  if (p.accel_help) {
    std::puts(kAccelHelp);
    return 0;
  }
  if (p.cpu_help) {
    std::puts(platform::CpuModelHelp());
    return 0;
  }
  if (p.guest == "list") {
    ListGuests();
    return 0;
  }
  if (!p.guest.empty()) {
    const guests::BuiltinGuest* g = guests::FindBuiltinGuest(p.guest);
    if (g == nullptr)
      throw UsageError("--guest: no built-in guest '" + p.guest + "' (--guest list)");
    p.run.kernel.assign(g->data, g->data + g->size);
    p.run.kernel_name = g->name;
  } else {
    p.run.kernel = ReadFile(p.kernel_path, "-kernel", p.run.mem_size);
    p.run.kernel_name = p.kernel_path;
  }
  if (!p.initrd_path.empty()) {
    p.run.initrd = ReadFile(p.initrd_path, "-initrd", p.run.mem_size);
    p.run.initrd_name = p.initrd_path;
  }
  std::FILE* serial_file = nullptr;
  if (p.serial == "stdio") {
    p.run.serial = [](uint8_t b) {
      std::fputc(b, stdout);
      if (b == '\n') std::fflush(stdout);
    };
  } else if (p.serial.rfind("file:", 0) == 0) {
    serial_file = std::fopen(p.serial.substr(5).c_str(), "wb");
    if (!serial_file) throw UsageError("-serial: cannot open '" + p.serial.substr(5) + "'");
    p.run.serial = [serial_file](uint8_t b) { std::fputc(b, serial_file); };
  } else if (p.serial != "none") {
    throw UsageError("-serial: expected stdio, file:PATH or none");
  }
  MonotonicClock trace_clock;
  std::unique_ptr<trace::TraceSink> sink;
  std::FILE* trace_file = nullptr;
  // The timeline: every event the sink emits, as it is emitted, into a temporary file renamed
  // over FILE when the run ends (a bad path is reported here, before anything runs).
  std::unique_ptr<AtomicOutput> json_out;
  std::unique_ptr<trace::ChromeTraceWriter> timeline;
  if (!p.trace_json.empty()) {
    json_out = std::make_unique<AtomicOutput>("--trace-json", p.trace_json);
    timeline = std::make_unique<trace::ChromeTraceWriter>(
        json_out->stream(), "apicv run " + (p.guest.empty() ? p.kernel_path : p.guest));
  }
  if (!p.trace_path.empty()) {
    trace_file = std::fopen(p.trace_path.c_str(), "w");
    if (!trace_file) throw UsageError("--trace: cannot open '" + p.trace_path + "'");
    sink = std::make_unique<trace::TraceSink>(trace_clock);
    sink->set_output(trace_file);
    p.run.trace = sink.get();
  }
  if (timeline) {
    if (!sink) sink = std::make_unique<trace::TraceSink>(trace_clock);
    p.run.trace = sink.get();
    sink->set_observer([&timeline](const trace::TaskContext& task, uint64_t ts,
                                   std::string_view event, std::string_view body) {
      trace::TraceEvent ev;
      ev.task = task;
      ev.ts_ns = ts;
      ev.ts_digits = 9;
      ev.name = event;
      ev.body = body;
      timeline->Add(ev);
    });
  }
  if (sink && (p.trace_exits || timeline)) sink->set_run_events(true);
  std::shared_ptr<virt::ApicvVm> vm;
  if (p.stats && p.run.irqchip == kvm::IrqchipMode::kApicv && !p.run.irqchip_factory) {
    p.run.irqchip_factory = [&vm, &p](const virt::VmConfig& cfg, const Clock& clock,
                                      virt::TimerService* timers) {
      vm = std::make_shared<virt::ApicvVm>(cfg, clock, p.run.trace, timers);
      return virt::ShareApicvVm(vm);
    };
  }
  if (p.accel.empty()) {
    // Bad input first, as its one line: the image is checked before the accelerator is named.
    try {
      platform::GuestMemory scratch(p.run.mem_size);
      (void)platform::LoadKernel(p.run, scratch);
    } catch (const std::runtime_error& e) {
      if (serial_file) std::fclose(serial_file);
      if (trace_file) std::fclose(trace_file);
      throw UsageError((p.guest.empty() ? "-kernel '" + p.kernel_path : "--guest '" + p.guest) +
                       "': " + e.what());
    }
    // QEMU's default order: KVM when it is usable, else the software CPU.
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    p.accel = fd >= 0 ? "kvm" : "emu";
    if (fd >= 0) ::close(fd);
    if (p.accel == "emu" && p.run.irqchip == kvm::IrqchipMode::kKvm) {
      std::fprintf(stderr, "apicv: --irqchip kvm needs /dev/kvm, which is not available\n");
      return 77;
    }
    // Options only emu has (and more vCPUs than the KVM backend runs) choose it.
    if (p.accel == "kvm" && (!p.emu_opts.empty() || p.run.smp > platform::kMaxKvmVcpus)) {
      p.accel = "emu";
    }
    CheckForAccel(p, p.accel);  // bad input: before the accelerator line
    std::fprintf(stderr, "apicv: accelerator: %s%s\n", p.accel.c_str(),
                 p.accel == "emu" && fd < 0 ? " (/dev/kvm is not available)" : "");
  }
  if (p.accel == "emu" && p.run.mem_size > platform::GuestMemory::kHoleStart) {
    throw UsageError("-m: -accel emu supports at most 3G of guest RAM (no RAM above the hole)");
  }
  kvm::RunResult r;
  int status = 0;
  bool run_failed = false;
  try {
    r = p.accel == "emu" ? emu::RunGuest(p.run, p.emu) : kvm::RunGuest(p.run);
    status = r.exit_code;
  } catch (const kvm::InvalidBootImage& e) {
    if (serial_file) std::fclose(serial_file);
    if (trace_file) std::fclose(trace_file);
    throw UsageError((p.guest.empty() ? "-kernel '" + p.kernel_path : "--guest '" + p.guest) +
                     "': " + e.what());
  } catch (const kvm::KvmUnavailable& e) {
    std::fprintf(stderr, "apicv: %s\n", e.what());
    status = 77;
    run_failed = true;
  } catch (const std::exception& e) {
    // A VMM error never exits with a guest status (1 is a guest that passed).
    std::fprintf(stderr, "apicv: %s\n", e.what());
    status = kvm::kExitVmmError;
    run_failed = true;
  }
  std::fflush(stdout);
  if (serial_file) std::fclose(serial_file);
  if (trace_file) std::fclose(trace_file);
  if (timeline) {
    sink->set_observer(nullptr);
    timeline->Finish();
    json_out->commit();
    const trace::TimelineStats& ts = timeline->stats();
    std::fprintf(stderr, "apicv: wrote %s: %llu events, %llu vCPU tracks, %llu IPI flows\n",
                 p.trace_json.c_str(), (unsigned long long)ts.events,
                 (unsigned long long)ts.vcpu_threads, (unsigned long long)ts.flows);
  }
  // A guest that passes exits through isa-debug-exit with status 1: only a run that never
  // completed returns here.
  if (run_failed) return status;
  if (r.timed_out) {
    std::fprintf(stderr, "apicv: guest timed out after %g s (--timeout)\n", p.run.timeout_s);
  } else if (!r.error.empty()) {
    std::fprintf(stderr, "apicv: %s\n", r.error.c_str());
  }
  if (p.stats) {
    const auto& c = r.counters;
    std::fprintf(stderr, "apicv: wall %.3f s, reboots %d, tsc %llu kHz\n", r.wall_s, r.reboots,
                 static_cast<unsigned long long>(r.tsc_khz));
    for (size_t i = 0; i < c.exits.size(); ++i) {
      if (c.exits[i])
        std::fprintf(stderr, "  exit %-16s %llu\n", kvm::ExitReasonName(static_cast<unsigned>(i)),
                     static_cast<unsigned long long>(c.exits[i]));
    }
    std::fprintf(
        stderr,
        "  eintr %llu msr(inval %llu filter %llu) windows(req %llu exit %llu) inj %llu nmi %llu\n"
        "  kicks %llu (signals %llu) halts %llu (poll ok %llu, slept %llu) sipis %llu\n",
        (unsigned long long)c.eintr, (unsigned long long)c.msr_exits_inval,
        (unsigned long long)c.msr_exits_filter, (unsigned long long)c.window_requests,
        (unsigned long long)c.window_exits, (unsigned long long)c.injections,
        (unsigned long long)c.nmis, (unsigned long long)c.kicks, (unsigned long long)c.kick_signals,
        (unsigned long long)c.halts, (unsigned long long)c.halt_poll_success,
        (unsigned long long)c.halt_sleeps, (unsigned long long)c.sipis);
    if (vm) PrintVmStats(*vm);
  }
  return status;
}

CommandRegistration reg("", [](CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a guest on /dev/kvm (QEMU-style options; run -help)");
  cmd->prefix_command();
  cmd->footer(kRunHelp);
  cmd->callback([cmd] {
    try {
      SetExitStatus(RunMain(cmd->remaining()));
    } catch (const UsageError&) {
      throw;  // exit 2
    } catch (const std::exception& e) {
      // Internal error outside the run itself: 125, never a guest's status.
      std::fprintf(stderr, "apicv: error: %s\n", e.what());
      SetExitStatus(kvm::kExitVmmError);
    }
  });
});

}  // namespace

void CheckRunOptions(const std::vector<std::string>& args) {
  (void)Parse(args);
}

}  // namespace apicv::cli
