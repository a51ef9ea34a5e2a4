// trace.dat through libtracecmd in a sandboxed child; see trace_dat.h.
#include "trace/trace_dat.h"

#include <event-parse.h>  // libtraceevent
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

// libtracecmd's reading API, as declared in Debian's /usr/include/trace-cmd/trace-cmd.h
// (libtracecmd 1.3). That header includes tracefs.h, whose inline functions are not valid C++,
// so the few functions used are declared here.
extern "C" {
struct tracecmd_input;
enum { kTracecmdFlLoadNoPlugins = 1 << 0, kTracecmdFlLoadNoSystemPlugins = 1 << 1 };
tracecmd_input* tracecmd_open(const char* file, int flags);
void tracecmd_close(tracecmd_input* handle);
tep_handle* tracecmd_get_tep(tracecmd_input* handle);
int tracecmd_iterate_events(tracecmd_input* handle, cpu_set_t* cpus, int cpu_size,
                            int (*callback)(tracecmd_input* handle, tep_record*, int, void*),
                            void* callback_data);
void tracecmd_set_loglevel(enum tep_loglevel level);
}

#include "trace/exit_reasons.h"
#include "trace/kvm_events.h"

namespace apicv::trace {

bool HasTraceDatMagic(std::string_view first_bytes) {
  return first_bytes.substr(0, kTraceDatMagic.size()) == kTraceDatMagic;
}

namespace {

// ---- child side: runs only in the forked process --------------------------------------------

[[noreturn]] void ChildFail(int status_fd, const std::string& what) {
  const std::string line = what.substr(0, 400) + "\n";
  ssize_t ignored = write(status_fd, line.data(), line.size());
  (void)ignored;
  _exit(2);
}

// The field `name` of `ev`, required to exist with one of the sizes given.
tep_format_field* RequireField(int status_fd, tep_event* ev, const char* name,
                               std::initializer_list<int> sizes) {
  tep_format_field* f = tep_find_field(ev, name);
  bool size_ok = false;
  if (f != nullptr) {
    for (int s : sizes) size_ok = size_ok || f->size == s;
  }
  if (f == nullptr || !size_ok || f->offset < 0) {
    ChildFail(status_fd, std::string("unknown event format version: kvm:") + ev->name +
                             (f == nullptr ? " has no field '" : " has field '") + name +
                             (f == nullptr ? "'" : "' of size " + std::to_string(f->size)) +
                             " (apicv reads the kvm formats of Linux 5.18 to 6.15)");
  }
  return f;
}

struct ChildContext {
  tep_handle* tep = nullptr;
  FILE* out = nullptr;
  int status_fd = -1;
  uint64_t records = 0, kvm_records = 0;
  tep_event *inhibit = nullptr, *exit = nullptr, *set_irq = nullptr, *inj = nullptr;
  tep_format_field *reason = nullptr, *set = nullptr, *inhibits = nullptr;
  tep_format_field *exit_reason = nullptr, *isa = nullptr, *vcpu_id = nullptr;
  tep_format_field *gsi = nullptr, *level = nullptr, *source = nullptr;
  tep_format_field *vector = nullptr, *soft = nullptr, *reinjected = nullptr, *irq = nullptr;
  bool inhibit_names = true;
  // The events only the timeline draws (trace export): read when their fields are the ones the
  // kernel's formats have had since 4.x, else printed with an empty body (as before), never an
  // error, since the summary does not need them.
  struct Timeline {
    tep_event* ev = nullptr;
    tep_format_field *a = nullptr, *b = nullptr, *c = nullptr, *d = nullptr;
  };
  Timeline entry, ipi, accept, apicv_accept, eoi, pv_eoi;
};

// `name` of `ev` if it exists with one of `sizes`, else nullptr.
tep_format_field* OptionalField(tep_event* ev, const char* name, std::initializer_list<int> sizes) {
  tep_format_field* f = tep_find_field(ev, name);
  if (f == nullptr || f->offset < 0) return nullptr;
  for (int s : sizes) {
    if (f->size == s) return f;
  }
  return nullptr;
}

// A field's value, read only when it lies inside the record (libtraceevent does not check).
uint64_t Read(const ChildContext& c, tep_format_field* f, tep_record* r) {
  if (f == nullptr) return 0;
  if (r->data == nullptr || r->size < 0 || f->offset + f->size > r->size) {
    ChildFail(c.status_fd, std::string("corrupt trace.dat: a kvm:") + f->event->name +
                               " record of " + std::to_string(r->size) +
                               " bytes is too short for its field '" + f->name + "'");
  }
  unsigned long long v = 0;
  if (tep_read_number_field(f, r->data, &v) != 0) {
    ChildFail(c.status_fd, std::string("corrupt trace.dat: cannot read field '") + f->name + "'");
  }
  return v;
}

int64_t SignExtend(uint64_t v, int size) {
  if (size >= 8) return static_cast<int64_t>(v);
  const int bits = size * 8;
  const uint64_t sign = uint64_t{1} << (bits - 1);
  v &= (sign << 1) - 1;
  return static_cast<int64_t>((v ^ sign) - sign);
}

int OnRecord(tracecmd_input*, tep_record* r, int, void* data) {
  auto& c = *static_cast<ChildContext*>(data);
  ++c.records;
  tep_event* ev = tep_find_event_by_record(c.tep, r);
  if (ev == nullptr) return 0;  // an event without a format: skipped, as trace-cmd report does
  const bool kvm = ev->system != nullptr && std::strcmp(ev->system, "kvm") == 0;
  if (kvm) ++c.kvm_records;
  const int pid = tep_data_pid(c.tep, r);
  const char* comm = pid == 0 ? "<idle>" : tep_data_comm_from_pid(c.tep, pid);
  std::string body;
  if (ev == c.inhibit) {
    const unsigned reason = static_cast<unsigned>(Read(c, c.reason, r));
    const bool set = Read(c, c.set, r) != 0;
    const unsigned long mask = static_cast<unsigned long>(Read(c, c.inhibits, r));
    if (c.inhibit_names) {
      body = FormatApicvInhibitChanged(reason, set, mask);
    } else {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "%s reason=%u, inhibits=0x%lx", set ? "set" : "cleared",
                    reason, mask);
      body = buf;
    }
  } else if (ev == c.exit) {
    char buf[160];
    std::snprintf(
        buf, sizeof(buf), "vcpu %u reason %s", static_cast<unsigned>(Read(c, c.vcpu_id, r)),
        ExitReasonName(Read(c, c.exit_reason, r), static_cast<uint32_t>(Read(c, c.isa, r)))
            .c_str());
    body = buf;
    body += " rip";  // the exit-reason text ends at " rip "
    body += " (fields not read)";
  } else if (ev == c.set_irq) {
    body = FormatSetIrq(static_cast<unsigned>(Read(c, c.gsi, r)),
                        static_cast<int>(SignExtend(Read(c, c.level, r), c.level->size)),
                        static_cast<int>(SignExtend(Read(c, c.source, r), c.source->size)));
  } else if (ev == c.entry.ev && c.entry.a) {
    body = FormatKvmEntry(static_cast<uint32_t>(Read(c, c.entry.a, r)),
                          c.entry.b ? Read(c, c.entry.b, r) : 0);
  } else if (ev == c.ipi.ev && c.ipi.a && c.ipi.b) {
    body = FormatApicIpi(static_cast<uint32_t>(Read(c, c.ipi.a, r)),
                         static_cast<uint32_t>(Read(c, c.ipi.b, r)));
  } else if ((ev == c.accept.ev || ev == c.apicv_accept.ev) && ev != nullptr) {
    const ChildContext::Timeline& t = ev == c.accept.ev ? c.accept : c.apicv_accept;
    if (t.a && t.b && t.c && t.d) {
      body = FormatApicAcceptIrq(
          static_cast<uint32_t>(Read(c, t.a, r)), static_cast<uint16_t>(Read(c, t.b, r)),
          static_cast<uint16_t>(Read(c, t.c, r)), static_cast<uint8_t>(Read(c, t.d, r)));
    }
  } else if ((ev == c.eoi.ev || ev == c.pv_eoi.ev) && ev != nullptr) {
    const ChildContext::Timeline& t = ev == c.eoi.ev ? c.eoi : c.pv_eoi;
    if (t.a && t.b) {
      body = FormatEoi(static_cast<uint32_t>(Read(c, t.a, r)),
                       static_cast<int>(SignExtend(Read(c, t.b, r), t.b->size)));
    }
  } else if (ev == c.inj) {
    if (c.irq != nullptr) {
      body = "irq " + std::to_string(static_cast<unsigned>(Read(c, c.irq, r)));
    } else {
      body = FormatInjVirq(static_cast<unsigned>(Read(c, c.vector, r)), Read(c, c.soft, r) != 0,
                           Read(c, c.reinjected, r) != 0);
    }
  }
  const unsigned long long ts = r->ts;
  std::fprintf(c.out, "%16s-%-7d [%03d] ..... %5llu.%09llu: %s: %s\n", comm, pid, r->cpu,
               ts / 1000000000ull, ts % 1000000000ull, ev->name ? ev->name : "?", body.c_str());
  return 0;
}

[[noreturn]] void RunChild(const std::string& path, int out_fd, int status_fd) {
  tracecmd_set_loglevel(TEP_LOG_NONE);
  tep_set_loglevel(TEP_LOG_NONE);
  tracecmd_input* h =
      tracecmd_open(path.c_str(), kTracecmdFlLoadNoPlugins | kTracecmdFlLoadNoSystemPlugins);
  if (h == nullptr) {
    ChildFail(status_fd,
              "truncated or corrupt trace.dat (libtracecmd cannot read its headers or data)");
  }
  ChildContext c;
  c.status_fd = status_fd;
  c.tep = tracecmd_get_tep(h);
  if (c.tep == nullptr) ChildFail(status_fd, "corrupt trace.dat: no event formats");
  bool any_kvm = false;
  if (tep_event** all = tep_list_events(c.tep, TEP_EVENT_SORT_ID)) {
    for (tep_event** e = all; *e != nullptr; ++e) {
      any_kvm = any_kvm || ((*e)->system != nullptr && std::strcmp((*e)->system, "kvm") == 0);
    }
  }
  if (!any_kvm) {
    ChildFail(status_fd, "no kvm events in this trace.dat (record them: trace-cmd record -e kvm)");
  }
  c.inhibit = tep_find_event_by_name(c.tep, "kvm", "kvm_apicv_inhibit_changed");
  if (c.inhibit != nullptr) {
    c.reason = RequireField(status_fd, c.inhibit, "reason", {4});
    c.set = RequireField(status_fd, c.inhibit, "set", {1});
    c.inhibits = RequireField(status_fd, c.inhibit, "inhibits", {4, 8});
    const char* fmt = c.inhibit->print_fmt.format;
    c.inhibit_names = fmt != nullptr && std::strstr(fmt, "inhibits=0x%lx%s%s") != nullptr;
  }
  c.exit = tep_find_event_by_name(c.tep, "kvm", "kvm_exit");
  if (c.exit != nullptr) {
    c.exit_reason = RequireField(status_fd, c.exit, "exit_reason", {4});
    c.isa = RequireField(status_fd, c.exit, "isa", {4});
    if (tep_find_field(c.exit, "vcpu_id") != nullptr) {
      c.vcpu_id = RequireField(status_fd, c.exit, "vcpu_id", {4});
    }
  }
  c.set_irq = tep_find_event_by_name(c.tep, "kvm", "kvm_set_irq");
  if (c.set_irq != nullptr) {
    c.gsi = RequireField(status_fd, c.set_irq, "gsi", {4});
    c.level = RequireField(status_fd, c.set_irq, "level", {4});
    c.source = RequireField(status_fd, c.set_irq, "irq_source_id", {4});
  }
  c.inj = tep_find_event_by_name(c.tep, "kvm", "kvm_inj_virq");
  if (c.inj != nullptr) {
    if (tep_find_field(c.inj, "vector") != nullptr) {
      c.vector = RequireField(status_fd, c.inj, "vector", {4});
      c.soft = RequireField(status_fd, c.inj, "soft", {1});
      c.reinjected = RequireField(status_fd, c.inj, "reinjected", {1});
    } else {
      c.irq = RequireField(status_fd, c.inj, "irq", {4});
    }
  }
  if ((c.entry.ev = tep_find_event_by_name(c.tep, "kvm", "kvm_entry")) != nullptr) {
    c.entry.a = OptionalField(c.entry.ev, "vcpu_id", {4});
    c.entry.b = OptionalField(c.entry.ev, "rip", {8});
  }
  if ((c.ipi.ev = tep_find_event_by_name(c.tep, "kvm", "kvm_apic_ipi")) != nullptr) {
    c.ipi.a = OptionalField(c.ipi.ev, "icr_low", {4});
    c.ipi.b = OptionalField(c.ipi.ev, "dest_id", {4});
  }
  for (auto [t, name] : {std::pair{&c.accept, "kvm_apic_accept_irq"},
                         std::pair{&c.apicv_accept, "kvm_apicv_accept_irq"}}) {
    if ((t->ev = tep_find_event_by_name(c.tep, "kvm", name)) != nullptr) {
      t->a = OptionalField(t->ev, "apicid", {4});
      t->b = OptionalField(t->ev, "dm", {2});
      t->c = OptionalField(t->ev, "tm", {1, 2});
      t->d = OptionalField(t->ev, "vec", {1});
    }
  }
  for (auto [t, name] : {std::pair{&c.eoi, "kvm_eoi"}, std::pair{&c.pv_eoi, "kvm_pv_eoi"}}) {
    if ((t->ev = tep_find_event_by_name(c.tep, "kvm", name)) != nullptr) {
      t->a = OptionalField(t->ev, "apicid", {4});
      t->b = OptionalField(t->ev, "vector", {4});
    }
  }
  const int fd = dup(out_fd);
  c.out = fd < 0 ? nullptr : fdopen(fd, "w");
  if (c.out == nullptr) ChildFail(status_fd, "cannot write the converted text");
  static char buffer[1 << 16];
  std::setvbuf(c.out, buffer, _IOFBF, sizeof(buffer));
  if (tracecmd_iterate_events(h, nullptr, 0, OnRecord, &c) < 0) {
    ChildFail(status_fd, "corrupt trace.dat: libtracecmd could not read the event data");
  }
  if (std::fflush(c.out) != 0) ChildFail(status_fd, "cannot write the converted text");
  if (c.kvm_records == 0) {
    ChildFail(status_fd, "no kvm event records in this trace.dat (" + std::to_string(c.records) +
                             " records of other events)");
  }
  const std::string stats =
      "ok " + std::to_string(c.records) + " " + std::to_string(c.kvm_records) + "\n";
  ssize_t ignored = write(status_fd, stats.data(), stats.size());
  (void)ignored;
  _exit(0);
}

void Limit(int resource, rlim_t value) {
  rlimit rl{value, value};
  setrlimit(resource, &rl);
}

}  // namespace

std::optional<std::string> TraceDatToFtraceText(const std::string& path, int out_fd,
                                                TraceDatStats* stats,
                                                const TraceDatLimits& limits) {
  // The version string follows the magic: "6\0" or "7\0".
  {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::string("cannot open: ") + std::strerror(errno);
    char head[16] = {};
    const ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    if (n < static_cast<ssize_t>(kTraceDatMagic.size()) ||
        !HasTraceDatMagic(std::string_view(head, static_cast<size_t>(n)))) {
      return std::string("not a trace.dat (no trace-cmd magic)");
    }
    const std::string_view rest(head + kTraceDatMagic.size(),
                                static_cast<size_t>(n) - kTraceDatMagic.size());
    const size_t nul = rest.find('\0');
    const std::string version(rest.substr(0, nul));
    if (nul == std::string_view::npos || (version != "6" && version != "7")) {
      std::string shown;
      for (char ch : version.substr(0, 8)) {
        shown += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
      }
      return "trace.dat file version '" + shown + "' is not supported (6 and 7 are)";
    }
    if (stats) stats->file_version = static_cast<unsigned>(version[0] - '0');
  }

  int status[2], noise[2];
  if (pipe2(status, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  if (pipe2(noise, O_CLOEXEC) != 0) {
    close(status[0]);
    close(status[1]);
    return std::string("pipe: ") + std::strerror(errno);
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {status[0], status[1], noise[0], noise[1]}) close(fd);
    return std::string("fork: ") + std::strerror(errno);
  }
  if (pid == 0) {
    close(status[0]);
    close(noise[0]);
    // libtracecmd and libtraceevent print warnings on stderr: they go to the parent, which drops
    // them, so apicv's own stderr stays one line.
    dup2(noise[1], STDERR_FILENO);
    dup2(noise[1], STDOUT_FILENO);
    Limit(RLIMIT_CORE, 0);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // Sanitizer runtimes reserve terabytes of shadow address space: no RLIMIT_AS under them.
    Limit(RLIMIT_AS, limits.address_space);
#endif
    Limit(RLIMIT_CPU, limits.cpu_seconds);
    Limit(RLIMIT_FSIZE, limits.text_bytes);
    Limit(RLIMIT_NOFILE, 64);
    alarm(limits.wall_seconds);
    RunChild(path, out_fd, status[1]);
  }
  close(status[1]);
  close(noise[1]);
  std::string status_text, noise_text;
  // Drain both pipes so a chatty child never blocks on a full pipe.
  pollfd fds[2] = {{status[0], POLLIN, 0}, {noise[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        std::string& s = i == 0 ? status_text : noise_text;
        if (s.size() < 4096) s.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  const std::string first_line = status_text.substr(0, status_text.find('\n'));
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && first_line.starts_with("ok ")) {
    if (stats) {
      unsigned long long rec = 0, kvm = 0;
      std::sscanf(first_line.c_str(), "ok %llu %llu", &rec, &kvm);
      stats->records = rec;
      stats->kvm_records = kvm;
    }
    return std::nullopt;
  }
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 2 && !first_line.empty()) return first_line;
  if (WIFSIGNALED(ws)) {
    const int sig = WTERMSIG(ws);
    if (sig == SIGXCPU || sig == SIGALRM) {
      return std::string("reading the trace.dat took too long (limit ") +
             std::to_string(sig == SIGXCPU ? limits.cpu_seconds : limits.wall_seconds) +
             " s): corrupt or too large";
    }
    if (sig == SIGXFSZ) return std::string("trace.dat converts to more text than the limit");
    return std::string("corrupt trace.dat: the reader process died (") + strsignal(sig) +
           "; libtracecmd runs in a separate process for this reason)";
  }
  return "corrupt trace.dat: the reader process failed (status " +
         std::to_string(WIFEXITED(ws) ? WEXITSTATUS(ws) : -1) + ")";
}

}  // namespace apicv::trace
