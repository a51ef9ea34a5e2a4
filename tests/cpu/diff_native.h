// Differential test: runs sequences natively at ring 3 in a forked child (the host CPU is the
// oracle). The child maps the code and scratch pages at the fixed addresses of diff_layout.h,
// and for each sequence loads all 16 GPRs and RFLAGS (diff_enter), runs the bytes, and either
// reaches the trampoline appended after them (diff_exit saves the GPRs and RFLAGS) or faults: a
// SIGFPE/SIGSEGV/SIGBUS/SIGILL/SIGTRAP handler on an alternate stack (the guest's RSP points into
// the compared scratch memory) records the registers and the exception vector, error code and
// CR2 from the signal's ucontext (Linux reports the hardware's trap number, error code and CR2)
// and siglongjmps back. Results go to the parent through a shared anonymous mapping.
// Compatibility-mode sequences are entered by a far JMP to Linux's 32-bit user code segment
// (0x23) from a 64-bit stub in the code page and leave by a far JMP back to 0x33.
// Only for x86-64 Linux hosts.
#pragma once

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "diff_layout.h"

extern "C" {
struct DiffRegs {
  uint64_t gpr[16];
  uint64_t rflags;
  uint64_t entry;
};
__attribute__((visibility("hidden"))) DiffRegs diff_in;
__attribute__((visibility("hidden"))) DiffRegs diff_out;
void diff_enter();
void diff_exit();
}

// diff_enter: save the callee-saved registers and RSP, load DS/ES with SS (a 64-bit Linux process
// runs with null DS/ES, which compatibility-mode code cannot use), load RFLAGS and the 16 GPRs
// from diff_in (RSP last), jump to diff_in.entry. diff_exit: store the 16 GPRs, switch to a private
// stack (LEA changes no flags), save RFLAGS, restore the host stack and return from diff_enter.
asm(R"(
  .pushsection .text
  .globl diff_enter
  .hidden diff_enter
  .type diff_enter, @function
diff_enter:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  mov %rsp, diff_host_rsp(%rip)
  mov %ss, %eax
  mov %eax, %ds
  mov %eax, %es
  pushq diff_in+128(%rip)
  popfq
  mov diff_in+0(%rip), %rax
  mov diff_in+8(%rip), %rcx
  mov diff_in+16(%rip), %rdx
  mov diff_in+24(%rip), %rbx
  mov diff_in+40(%rip), %rbp
  mov diff_in+48(%rip), %rsi
  mov diff_in+56(%rip), %rdi
  mov diff_in+64(%rip), %r8
  mov diff_in+72(%rip), %r9
  mov diff_in+80(%rip), %r10
  mov diff_in+88(%rip), %r11
  mov diff_in+96(%rip), %r12
  mov diff_in+104(%rip), %r13
  mov diff_in+112(%rip), %r14
  mov diff_in+120(%rip), %r15
  mov diff_in+32(%rip), %rsp
  jmp *diff_in+136(%rip)
  .size diff_enter, .-diff_enter

  .globl diff_exit
  .hidden diff_exit
  .type diff_exit, @function
diff_exit:
  mov %rax, diff_out+0(%rip)
  mov %rcx, diff_out+8(%rip)
  mov %rdx, diff_out+16(%rip)
  mov %rbx, diff_out+24(%rip)
  mov %rsp, diff_out+32(%rip)
  mov %rbp, diff_out+40(%rip)
  mov %rsi, diff_out+48(%rip)
  mov %rdi, diff_out+56(%rip)
  mov %r8, diff_out+64(%rip)
  mov %r9, diff_out+72(%rip)
  mov %r10, diff_out+80(%rip)
  mov %r11, diff_out+88(%rip)
  mov %r12, diff_out+96(%rip)
  mov %r13, diff_out+104(%rip)
  mov %r14, diff_out+112(%rip)
  mov %r15, diff_out+120(%rip)
  lea diff_exit_stack_top(%rip), %rsp
  pushfq
  popq diff_out+128(%rip)
  cld
  mov diff_host_rsp(%rip), %rsp
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
  .size diff_exit, .-diff_exit
  .popsection

  .pushsection .bss
  .balign 16
diff_host_rsp:
  .zero 16
diff_exit_stack:
  .zero 256
diff_exit_stack_top:
  .popsection
)");

namespace apicv::cpu::difftest {

namespace native_detail {

inline sigjmp_buf g_jmp;
inline Outcome* g_out = nullptr;

// ucontext greg index of each GPR in apicv's (hardware) order.
inline constexpr int kGregOf[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
                                    REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                    REG_R12, REG_R13, REG_R14, REG_R15};

inline bool has_error_code(unsigned v) {
  return v == 8 || (v >= 10 && v <= 14) || v == 17;
}

inline void on_signal(int, siginfo_t*, void* ctx) {
  const auto* uc = static_cast<const ucontext_t*>(ctx);
  const greg_t* g = uc->uc_mcontext.gregs;
  Outcome& o = *g_out;
  o.faulted = true;
  o.vector = static_cast<uint8_t>(g[REG_TRAPNO]);
  o.error = has_error_code(o.vector) ? static_cast<uint64_t>(g[REG_ERR]) : 0;
  o.cr2 = o.vector == 14 ? static_cast<uint64_t>(g[REG_CR2]) : 0;
  o.rip = static_cast<uint64_t>(g[REG_RIP]);
  o.rflags = static_cast<uint64_t>(g[REG_EFL]);
  for (int r = 0; r < 16; ++r) o.gpr[r] = static_cast<uint64_t>(g[kGregOf[r]]);
  siglongjmp(g_jmp, 1);
}

// Child body: never returns. Exit status 0 = all sequences ran; `progress` counts them.
[[noreturn]] inline void child_main(const std::vector<Sequence>& seqs, Outcome* out,
                                    volatile uint64_t* progress) {
  auto die = [](int code) { _exit(code); };
  void* code = mmap(reinterpret_cast<void*>(kCodeVa), kCodeSize, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (code != reinterpret_cast<void*>(kCodeVa)) die(10);
  void* scratch = mmap(reinterpret_cast<void*>(kScratchVa), kScratchSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (scratch != reinterpret_cast<void*>(kScratchVa)) die(11);
  // The guard page must be unmapped (the #PF probes rely on it).
  void* guard = mmap(reinterpret_cast<void*>(kGuardVa), 0x1000, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (guard != reinterpret_cast<void*>(kGuardVa)) die(12);
  munmap(guard, 0x1000);

  static uint8_t altstack[1 << 16];
  stack_t ss{};
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  if (sigaltstack(&ss, nullptr) != 0) die(13);
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGFPE, SIGSEGV, SIGBUS, SIGILL, SIGTRAP}) {
    if (sigaction(sig, &sa, nullptr) != 0) die(14);
  }

  auto* cp = static_cast<uint8_t*>(code);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = seqs[i];
    Outcome& o = out[i];
    o.faulted = false;
    std::memcpy(cp, s.code.data(), s.code.size());
    // jmp qword [rip+0]; .quad diff_exit
    const uint8_t jmp[] = {0xFF, 0x25, 0, 0, 0, 0};
    const uint64_t target = reinterpret_cast<uint64_t>(&diff_exit);
    uint8_t* t = cp + (s.compat32 ? kLeave32Off : s.code.size());
    std::memcpy(t, jmp, sizeof jmp);
    std::memcpy(t + sizeof jmp, &target, 8);
    if (s.compat32) {
      // Enter: jmp far [rip+0] with m16:32 = kCodeVa:USER32_CS. Leave: jmp far USER_CS:kLeave32Off.
      const uint8_t enter[] = {0xFF, 0x2D, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
      std::memcpy(cp + kEnter32Off, enter, sizeof enter);
      const uint32_t entry32 = static_cast<uint32_t>(kCodeVa);
      std::memcpy(cp + kEnter32Off + 6, &entry32, 4);
      std::memcpy(cp + kEnter32Off + 10, &kLinuxUser32Cs, 2);
      uint8_t* e = cp + s.code.size();
      e[0] = 0xEA;
      const uint32_t leave = static_cast<uint32_t>(kCodeVa + kLeave32Off);
      std::memcpy(e + 1, &leave, 4);
      std::memcpy(e + 5, &kLinuxUserCs, 2);
    }
    std::memcpy(scratch, s.scratch.data(), kScratchSize);
    for (int r = 0; r < 16; ++r) diff_in.gpr[r] = s.gpr[r];
    diff_in.rflags = s.rflags;
    diff_in.entry = kCodeVa + (s.compat32 ? kEnter32Off : 0);
    g_out = &o;
    if (sigsetjmp(g_jmp, 1) == 0) {
      diff_enter();
      o.faulted = false;
      o.rip = kCodeVa + s.code.size();
      for (int r = 0; r < 16; ++r) o.gpr[r] = diff_out.gpr[r];
      o.rflags = diff_out.rflags;
    }
    std::memcpy(o.scratch.data(), scratch, kScratchSize);
    *progress = i + 1;
  }
  _exit(0);
}

}  // namespace native_detail

// Runs `seqs` in a forked child; fills `out` (one Outcome each). Returns "" or what went wrong.
inline std::string run_native(const std::vector<Sequence>& seqs, std::vector<Outcome>& out) {
  const size_t bytes = sizeof(Outcome) * seqs.size() + 64;
  void* shm = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm == MAP_FAILED) return "mmap of the result area failed";
  auto* progress = static_cast<volatile uint64_t*>(shm);
  auto* results = reinterpret_cast<Outcome*>(static_cast<uint8_t*>(shm) + 64);
  *progress = 0;
  const pid_t pid = fork();
  if (pid < 0) {
    munmap(shm, bytes);
    return "fork failed";
  }
  if (pid == 0) native_detail::child_main(seqs, results, progress);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  std::string err;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    err = "native child failed (" +
          (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                             : "signal " + std::to_string(WTERMSIG(status))) +
          ") after " + std::to_string(*progress) + " of " + std::to_string(seqs.size()) +
          " sequences";
  } else {
    out.assign(results, results + seqs.size());
  }
  munmap(shm, bytes);
  return err;
}

}  // namespace apicv::cpu::difftest
