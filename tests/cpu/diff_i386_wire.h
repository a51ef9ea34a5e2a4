/* Differential test, 32-bit oracle under QEMU user mode (tests/cpu/diff_qemu_i386.h): the byte
 * format between the test and the freestanding i386 child (tests/cpu/diff_child_i386.c). Plain C
 * so both sides include it; little-endian, no padding (every field is 4 bytes).
 *
 * stdin of the child:  DiffI386Batch, then per sequence DiffI386Input, code_len code bytes and
 *                      DIFF_I386_SCRATCH_SIZE bytes of initial scratch memory.
 * stdout of the child: per sequence DiffI386Result and the final scratch memory, then
 *                      DIFF_I386_MAGIC_END (so a child that died half-way is detected).
 * The addresses are those of diff_layout.h (checked there with static_assert): all below 4 GiB,
 * as an i386 process needs. */
#ifndef APICV_TESTS_CPU_DIFF_I386_WIRE_H
#define APICV_TESTS_CPU_DIFF_I386_WIRE_H

#include <stdint.h>

#define DIFF_I386_CODE_VA 0x10000000u
#define DIFF_I386_CODE_SIZE 0x1000u
#define DIFF_I386_SCRATCH_VA 0x10010000u
#define DIFF_I386_SCRATCH_SIZE 0x2000u
#define DIFF_I386_GUARD_VA (DIFF_I386_SCRATCH_VA + DIFF_I386_SCRATCH_SIZE)
/* Room left after the sequence's bytes for the 5-byte JMP back to the child. */
#define DIFF_I386_MAX_CODE (DIFF_I386_CODE_SIZE - 16u)

#define DIFF_I386_MAGIC_IN 0x69333836u  /* "683i" */
#define DIFF_I386_MAGIC_END 0x646E6533u /* "3end" */

struct DiffI386Batch {
  uint32_t magic;
  uint32_t count;
};

struct DiffI386Input {
  uint32_t code_len;
  uint32_t gpr[8]; /* EAX ECX EDX EBX ESP EBP ESI EDI (hardware order) */
  uint32_t eflags;
};

struct DiffI386Result {
  uint32_t faulted; /* 0: reached the end of the sequence */
  /* When faulted: the signal, its si_code and si_addr, and the i386 sigcontext's trapno, err,
   * cr2 as the kernel (or QEMU) filled them in. */
  uint32_t signo;
  uint32_t sig_code;
  uint32_t fault_addr;
  uint32_t trapno;
  uint32_t err;
  uint32_t cr2;
  uint32_t eip; /* of the faulting instruction, or the end of the sequence */
  uint32_t gpr[8];
  uint32_t eflags;
};

#endif
