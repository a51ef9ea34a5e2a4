/* Differential test, 32-bit oracle: a freestanding i386 Linux program (no libc; built with
 * `-m32 -ffreestanding -nostdlib -static`, see diff_child_i386.cmake) that runs the test's 32-bit
 * sequences at ring 3 in 32-bit protected mode and reports the state they end in. It runs under
 * `qemu-i386` (QEMU user mode) on hosts whose kernel has no IA-32 emulation, and would run
 * natively on a host that has it.
 *
 * Protocol: tests/cpu/diff_i386_wire.h (stdin: sequences and initial state; stdout: results).
 * For each sequence: copy the bytes to the code page and append `JMP diff_exit`, copy the
 * scratch memory, load EFLAGS and the 8 GPRs (ESP last) and jump to the code (diff_enter). The
 * sequence either reaches diff_exit, which stores the GPRs and EFLAGS, or faults: SIGFPE /
 * SIGSEGV / SIGBUS / SIGILL / SIGTRAP arrive on an alternate stack (ESP points into the compared
 * scratch memory), diff_on_signal records the i386 sigcontext (GPRs, EFLAGS, EIP, trapno, err,
 * cr2) and the siginfo, and diff_resume returns from diff_enter. SA_NODEFER: the handler is left
 * without sigreturn, so its signal must not stay blocked.
 * Linux i386 system calls through INT 0x80: read, write, mmap2, munmap, rt_sigaction,
 * sigaltstack, exit_group. Exit status: 0 done, 2 bad input, 10-19 set-up failures. */
#include <stdint.h>

#include "diff_i386_wire.h"

enum {
  kNrRead = 3,
  kNrWrite = 4,
  kNrMunmap = 91,
  kNrRtSigaction = 174,
  kNrSigaltstack = 186,
  kNrMmap2 = 192,
  kNrExitGroup = 252,
};
enum { kProtRead = 1, kProtWrite = 2, kProtExec = 4 };
enum {
  kMapPrivate = 0x02,
  kMapAnonymous = 0x20,
  kMapFixedNoreplace = 0x100000,
};
#define SA_SIGINFO_ 0x00000004u
#define SA_ONSTACK_ 0x08000000u
#define SA_NODEFER_ 0x40000000u

static long sys3(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "0"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return r;
}

static long sys4(long nr, long a, long b, long c, long d) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "0"(nr), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
  return r;
}

/* mmap2(addr, len, prot, flags, fd = -1, pgoff = 0): EBP carries pgoff. */
static long map_fixed(uint32_t addr, uint32_t len, long prot) {
  long r;
  __asm__ volatile(
      "push %%ebp\n\t"
      "xor %%ebp, %%ebp\n\t"
      "int $0x80\n\t"
      "pop %%ebp"
      : "=a"(r)
      : "0"(kNrMmap2), "b"(addr), "c"(len), "d"(prot),
        "S"(kMapPrivate | kMapAnonymous | kMapFixedNoreplace), "D"(-1)
      : "memory");
  return r;
}

__attribute__((noreturn)) static void quit(int code) {
  for (;;) sys3(kNrExitGroup, code, 0, 0);
}

static void read_all(void* p, uint32_t n) {
  uint8_t* b = (uint8_t*)p;
  while (n > 0) {
    const long r = sys3(kNrRead, 0, (long)b, (long)n);
    if (r <= 0) quit(2);
    b += r;
    n -= (uint32_t)r;
  }
}

static void write_all(const void* p, uint32_t n) {
  const uint8_t* b = (const uint8_t*)p;
  while (n > 0) {
    const long r = sys3(kNrWrite, 1, (long)b, (long)n);
    if (r <= 0) quit(3);
    b += r;
    n -= (uint32_t)r;
  }
}

/* GCC may emit calls to memcpy/memset even in freestanding code (struct copies): both are
 * defined here, as REP MOVSB / REP STOSB so that they cannot be turned back into calls. */
void* memcpy(void* dst, const void* src, uint32_t n) {
  void* d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void* memset(void* dst, int v, uint32_t n) {
  void* d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(v) : "memory");
  return dst;
}

static void copy(void* dst, const void* src, uint32_t n) {
  memcpy(dst, src, n);
}

/* The register file diff_enter loads and diff_exit stores: 8 GPRs, EFLAGS, entry. */
struct Regs {
  uint32_t gpr[8];
  uint32_t eflags;
  uint32_t entry;
};
struct Regs diff_in, diff_out;
uint32_t diff_host_esp;
uint8_t diff_exit_stack[256] __attribute__((aligned(16)));

int diff_enter(void);
void diff_exit(void);
__attribute__((noreturn)) void diff_resume(void);
void diff_on_signal(void);

/* diff_enter returns 0 when the sequence reached diff_exit, 1 through diff_resume after a
 * fault. diff_exit changes no flag before PUSHFL (MOV, and MOV to ESP of an immediate). */
__asm__(
    ".text\n"
    ".globl diff_enter\n"
    "diff_enter:\n"
    "  push %ebx\n"
    "  push %esi\n"
    "  push %edi\n"
    "  push %ebp\n"
    "  mov %esp, diff_host_esp\n"
    "  pushl diff_in+32\n"
    "  popfl\n"
    "  mov diff_in+0, %eax\n"
    "  mov diff_in+4, %ecx\n"
    "  mov diff_in+8, %edx\n"
    "  mov diff_in+12, %ebx\n"
    "  mov diff_in+20, %ebp\n"
    "  mov diff_in+24, %esi\n"
    "  mov diff_in+28, %edi\n"
    "  mov diff_in+16, %esp\n"
    "  jmp *diff_in+36\n"
    ".globl diff_exit\n"
    "diff_exit:\n"
    "  mov %eax, diff_out+0\n"
    "  mov %ecx, diff_out+4\n"
    "  mov %edx, diff_out+8\n"
    "  mov %ebx, diff_out+12\n"
    "  mov %esp, diff_out+16\n"
    "  mov %ebp, diff_out+20\n"
    "  mov %esi, diff_out+24\n"
    "  mov %edi, diff_out+28\n"
    "  mov $diff_exit_stack+256, %esp\n"
    "  pushfl\n"
    "  popl diff_out+32\n"
    "  cld\n"
    "  xor %eax, %eax\n"
    "  jmp 1f\n"
    ".globl diff_resume\n"
    "diff_resume:\n"
    "  mov $1, %eax\n"
    "1:\n"
    "  mov diff_host_esp, %esp\n"
    "  pop %ebp\n"
    "  pop %edi\n"
    "  pop %esi\n"
    "  pop %ebx\n"
    "  ret\n"
    /* Signal entry (rt frame: return address, sig, siginfo*, ucontext*): the sequence may have
     * left DF set, which the C code below must not see. */
    ".globl diff_on_signal\n"
    "diff_on_signal:\n"
    "  cld\n"
    "  jmp diff_record\n");

/* The i386 ucontext as Linux (arch/x86/include/uapi/asm/sigcontext.h) lays it out. */
struct SigContext32 {
  uint32_t gs, fs, es, ds;
  uint32_t edi, esi, ebp, esp, ebx, edx, ecx, eax;
  uint32_t trapno, err, eip, cs, eflags, esp_at_signal, ss, fpstate, oldmask, cr2;
};
struct UContext32 {
  uint32_t flags, link;
  uint32_t ss_sp, ss_flags, ss_size;
  struct SigContext32 mc;
};
struct SigInfo32 {
  int32_t signo, err, code;
  uint32_t addr;
};

static struct DiffI386Result g_result;

__attribute__((noreturn, used)) void diff_record(int sig, const struct SigInfo32* info,
                                                 const struct UContext32* uc) {
  const struct SigContext32* m = &uc->mc;
  struct DiffI386Result* o = &g_result;
  o->faulted = 1;
  o->signo = (uint32_t)sig;
  o->sig_code = (uint32_t)info->code;
  o->fault_addr = info->addr;
  o->trapno = m->trapno;
  o->err = m->err;
  o->cr2 = m->cr2;
  o->eip = m->eip;
  o->eflags = m->eflags;
  const uint32_t g[8] = {m->eax, m->ecx, m->edx, m->ebx, m->esp, m->ebp, m->esi, m->edi};
  copy(o->gpr, g, sizeof g);
  diff_resume();
}

struct KSigaction {
  void (*handler)(void);
  uint32_t flags;
  void (*restorer)(void);
  uint32_t mask[2];
};

static uint8_t g_altstack[1 << 16] __attribute__((aligned(16)));
static uint8_t g_code_in[DIFF_I386_CODE_SIZE];

static void set_up(void) {
  if (map_fixed(DIFF_I386_CODE_VA, DIFF_I386_CODE_SIZE, kProtRead | kProtWrite | kProtExec) !=
      (long)DIFF_I386_CODE_VA) {
    quit(10);
  }
  if (map_fixed(DIFF_I386_SCRATCH_VA, DIFF_I386_SCRATCH_SIZE, kProtRead | kProtWrite) !=
      (long)DIFF_I386_SCRATCH_VA) {
    quit(11);
  }
  /* The guard page after the scratch pages must be unmapped (the #PF probes aim at it). */
  if (map_fixed(DIFF_I386_GUARD_VA, 0x1000, 0) != (long)DIFF_I386_GUARD_VA) quit(12);
  if (sys3(kNrMunmap, DIFF_I386_GUARD_VA, 0x1000, 0) != 0) quit(12);

  const uint32_t ss[3] = {(uint32_t)g_altstack, 0, sizeof g_altstack};
  if (sys3(kNrSigaltstack, (long)ss, 0, 0) != 0) quit(13);
  struct KSigaction sa = {diff_on_signal, SA_SIGINFO_ | SA_ONSTACK_ | SA_NODEFER_, 0, {0, 0}};
  static const int kSignals[] = {4 /* ILL */, 5 /* TRAP */, 7 /* BUS */, 8 /* FPE */,
                                 11 /* SEGV */};
  for (unsigned i = 0; i < sizeof kSignals / sizeof kSignals[0]; ++i) {
    if (sys4(kNrRtSigaction, kSignals[i], (long)&sa, 0, 8) != 0) quit(14);
  }
}

__attribute__((noreturn, used)) void diff_main(void) {
  set_up();
  struct DiffI386Batch b;
  read_all(&b, sizeof b);
  if (b.magic != DIFF_I386_MAGIC_IN) quit(2);
  uint8_t* const code = (uint8_t*)DIFF_I386_CODE_VA;
  uint8_t* const scratch = (uint8_t*)DIFF_I386_SCRATCH_VA;
  for (uint32_t i = 0; i < b.count; ++i) {
    struct DiffI386Input in;
    read_all(&in, sizeof in);
    if (in.code_len > DIFF_I386_MAX_CODE) quit(2);
    read_all(g_code_in, in.code_len);
    read_all(scratch, DIFF_I386_SCRATCH_SIZE);
    copy(code, g_code_in, in.code_len);
    /* JMP rel32 to diff_exit, right after the sequence. */
    uint8_t* j = code + in.code_len;
    const uint32_t rel = (uint32_t)diff_exit - (DIFF_I386_CODE_VA + in.code_len + 5);
    j[0] = 0xE9;
    copy(j + 1, &rel, 4);

    copy(diff_in.gpr, in.gpr, sizeof in.gpr);
    diff_in.eflags = in.eflags;
    diff_in.entry = DIFF_I386_CODE_VA;
    struct DiffI386Result* o = &g_result;
    memset(o, 0, sizeof *o);
    if (diff_enter() == 0) {
      o->faulted = 0;
      o->eip = DIFF_I386_CODE_VA + in.code_len;
      copy(o->gpr, diff_out.gpr, sizeof o->gpr);
      o->eflags = diff_out.eflags;
    }
    write_all(o, sizeof *o);
    write_all(scratch, DIFF_I386_SCRATCH_SIZE);
  }
  const uint32_t end = DIFF_I386_MAGIC_END;
  write_all(&end, sizeof end);
  quit(0);
}

__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %esp\n"
    "  call diff_main\n"
    "  hlt\n");
