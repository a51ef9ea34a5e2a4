// Differential test, second oracle for 32-bit code: the freestanding i386 child
// (diff_child_i386.c) run under `qemu-i386` (QEMU user mode, Debian package qemu-user), for hosts
// whose kernel refuses 32-bit user code (no IA-32 emulation: the far jump to its 32-bit code
// segment faults, a 32-bit ELF gets "Exec format error"). QEMU's TCG executes the sequence in
// legacy 32-bit protected mode at CPL 3; it is an emulator, not hardware, so every difference it
// shows is triaged against the SDM (see qemu_masks in cpu_differential_test.cc).
//
// What QEMU 7.2 linux-user reports, read from its source (linux-user/i386/signal.c,
// linux-user/i386/cpu_loop.c, target/i386/tcg/user/excp_helper.c) and checked on this machine:
//   - sigcontext.trapno is cs->exception_index at frame set-up time, which cpu_exec has already
//     reset to -1: always 0xFFFFFFFF. The vector is derived from the signal instead:
//     SIGFPE -> #DE, SIGILL -> #UD, SIGSEGV with SEGV_MAPERR/SEGV_ACCERR -> #PF, SIGSEGV with
//     SI_KERNEL -> #GP (QEMU also sends that for #OF and #BR; INTO and BOUND are not generated),
//     SIGBUS -> #SS (QEMU sends it for #NP and #SS; only #SS is possible with flat segments),
//     SIGTRAP -> #BP (INT3; TF is never set). A trapno below 32 (a native i386 kernel, or a
//     QEMU that reports it) is used as is.
//   - sigcontext.err is the exception's error code (a #GP selector error code included); for
//     #PF it is rebuilt from the access type: U=1, P from SEGV_ACCERR, W only for a store.
//   - sigcontext.cr2 is the faulting linear address.
// Only for x86-64 Linux hosts (memfd_create, posix_spawn).
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "diff_i386_wire.h"
#include "diff_layout.h"

extern char** environ;

namespace apicv::cpu::difftest {

static_assert(DIFF_I386_CODE_VA == kCodeVa && DIFF_I386_CODE_SIZE == kCodeSize);
static_assert(DIFF_I386_SCRATCH_VA == kScratchVa && DIFF_I386_SCRATCH_SIZE == kScratchSize);
static_assert(kScratchVa + kScratchSize + 0x1000 <= (1ull << 32), "i386 needs the layout < 4 GiB");
static_assert(kMaxSeqBytes <= DIFF_I386_MAX_CODE);
static_assert(sizeof(DiffI386Result) == 17 * 4 && sizeof(DiffI386Input) == 10 * 4);

namespace qemu_detail {

inline bool write_all(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t r = ::write(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The exception vector of a reported fault (see the file header), or -1.
inline int vector_of(const DiffI386Result& r) {
  if (r.trapno < 32) return static_cast<int>(r.trapno);
  constexpr uint32_t kSigIll = 4, kSigTrap = 5, kSigBus = 7, kSigFpe = 8, kSigSegv = 11;
  constexpr uint32_t kSegvMaperr = 1, kSegvAccerr = 2, kSiKernel = 0x80;
  switch (r.signo) {
    case kSigFpe:
      return 0;
    case kSigIll:
      return 6;
    case kSigTrap:
      return 3;
    case kSigBus:
      return 12;
    case kSigSegv:
      if (r.sig_code == kSegvMaperr || r.sig_code == kSegvAccerr) return 14;
      if (r.sig_code == kSiKernel) return 13;
      return -1;
    default:
      return -1;
  }
}

}  // namespace qemu_detail

// The first `qemu-i386` on PATH, or "".
inline std::string find_qemu_i386() {
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/bin:/bin";
  size_t at = 0;
  while (at <= p.size()) {
    const size_t end = p.find(':', at);
    const std::string dir = p.substr(at, end == std::string::npos ? std::string::npos : end - at);
    const std::string exe = (dir.empty() ? "." : dir) + "/qemu-i386";
    if (::access(exe.c_str(), X_OK) == 0) return exe;
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return "";
}

// Runs the compat32 sequences `seqs` in `child` under `qemu`; fills `out`. Returns "" or what
// went wrong. Input and output go through memory files, so neither side can block the other.
inline std::string run_qemu_i386(const std::string& qemu, const std::string& child,
                                 const std::vector<Sequence>& seqs, std::vector<Outcome>& out) {
  const int in = memfd_create("apicv-diff-i386-in", MFD_CLOEXEC);
  const int res = memfd_create("apicv-diff-i386-out", MFD_CLOEXEC);
  auto fail = [&](const std::string& e) {
    if (in >= 0) ::close(in);
    if (res >= 0) ::close(res);
    return e;
  };
  if (in < 0 || res < 0) return fail("memfd_create failed");
  const DiffI386Batch b{DIFF_I386_MAGIC_IN, static_cast<uint32_t>(seqs.size())};
  std::vector<uint8_t> buf(reinterpret_cast<const uint8_t*>(&b),
                           reinterpret_cast<const uint8_t*>(&b) + sizeof b);
  for (const Sequence& s : seqs) {
    if (!s.compat32 || s.code.size() > DIFF_I386_MAX_CODE || s.scratch.size() != kScratchSize) {
      return fail("sequence " + std::to_string(s.seed) + " cannot run in the i386 child");
    }
    DiffI386Input d{};
    d.code_len = static_cast<uint32_t>(s.code.size());
    for (int r = 0; r < 8; ++r) d.gpr[r] = static_cast<uint32_t>(s.gpr[r]);
    d.eflags = static_cast<uint32_t>(s.rflags);
    const auto* p = reinterpret_cast<const uint8_t*>(&d);
    buf.insert(buf.end(), p, p + sizeof d);
    buf.insert(buf.end(), s.code.begin(), s.code.end());
    buf.insert(buf.end(), s.scratch.begin(), s.scratch.end());
  }
  // APICV_DIFF_I386_INPUT=<file>: also save the child's input (to rerun it by hand with
  // `qemu-i386 diff_child_i386 < file`).
  if (const char* save = std::getenv("APICV_DIFF_I386_INPUT")) {
    const int fd = ::open(save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !qemu_detail::write_all(fd, buf.data(), buf.size())) {
      if (fd >= 0) ::close(fd);
      return fail(std::string("cannot write ") + save);
    }
    ::close(fd);
  }
  if (!qemu_detail::write_all(in, buf.data(), buf.size()) || ::lseek(in, 0, SEEK_SET) != 0) {
    return fail("writing the child's input failed");
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in, 0);
  posix_spawn_file_actions_adddup2(&fa, res, 1);
  std::vector<char*> argv = {const_cast<char*>(qemu.c_str()), const_cast<char*>(child.c_str()),
                             nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, qemu.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return fail("posix_spawn " + qemu + " failed: " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return fail(qemu + " " + child + " failed (" +
                (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                   : "signal " + std::to_string(WTERMSIG(status))) +
                ")");
  }
  struct stat st {};
  const size_t rec = sizeof(DiffI386Result) + kScratchSize;
  const size_t want = rec * seqs.size() + 4;
  if (::fstat(res, &st) != 0 || static_cast<size_t>(st.st_size) != want) {
    return fail("the i386 child wrote " + std::to_string(st.st_size) + " bytes, expected " +
                std::to_string(want));
  }
  buf.resize(want);
  if (::pread(res, buf.data(), want, 0) != static_cast<ssize_t>(want)) {
    return fail("reading the child's output failed");
  }
  uint32_t end = 0;
  std::memcpy(&end, buf.data() + want - 4, 4);
  if (end != DIFF_I386_MAGIC_END) return fail("the i386 child's output has no end marker");
  out.assign(seqs.size(), Outcome{});
  for (size_t i = 0; i < seqs.size(); ++i) {
    DiffI386Result r;
    std::memcpy(&r, buf.data() + rec * i, sizeof r);
    Outcome& o = out[i];
    o.faulted = r.faulted != 0;
    if (o.faulted) {
      const int v = qemu_detail::vector_of(r);
      if (v < 0) {
        return fail("sequence " + std::to_string(seqs[i].seed) + ": signal " +
                    std::to_string(r.signo) + " code " + std::to_string(r.sig_code) +
                    " maps to no exception");
      }
      o.vector = static_cast<uint8_t>(v);
      o.error = (v == 8 || (v >= 10 && v <= 14) || v == 17) ? r.err : 0;
      o.cr2 = v == 14 ? r.cr2 : 0;
    }
    o.rip = r.eip;
    for (int g = 0; g < 8; ++g) o.gpr[g] = r.gpr[g];
    o.rflags = r.eflags;
    std::memcpy(o.scratch.data(), buf.data() + rec * i + sizeof r, kScratchSize);
  }
  ::close(in);
  ::close(res);
  return "";
}

}  // namespace apicv::cpu::difftest
