/* Boot entry: multiboot v1 header, 32-bit protected mode -> long mode switch (identity map of
 * the low 4 GiB with 2 MiB pages), the AP real-mode trampoline, and the IDT stubs.
 * Multiboot Specification 0.6.96 section 3.1/3.2; SDM vol. 3A 9.8.5 (initializing IA-32e mode),
 * 8.4.4.1 (AP startup: real mode at vector * 0x1000), 6.14 (64-bit IDT, error-code vectors).
 * Not supported: memory above 4 GiB, loading above 2 GiB (code model small). */
#include "layout.h"

  .section .multiboot, "a"
  .align 4
  .long 0x1BADB002
  .long 0x00000003 /* page-align modules, memory info requested */
  .long -(0x1BADB002 + 0x00000003)

  .section .data
  .align 16
  .globl rt_gdt
rt_gdt:
  .quad 0
  .quad 0x00AF9A000000FFFF /* 0x08: 64-bit code */
  .quad 0x00CF92000000FFFF /* 0x10: flat data */
  .quad 0x00CF9A000000FFFF /* 0x18: 32-bit code (AP trampoline) */
rt_gdt_end:
  .align 8
rt_gdt_ptr:
  .word rt_gdt_end - rt_gdt - 1
  .quad rt_gdt

  /* Page tables are static data, so a reset that does not reload the image still finds them. */
  .section .data.pagetables, "aw"
  .align 4096
rt_pml4:
  .quad rt_pdpt + 0x3
  .fill 511, 8, 0
rt_pdpt:
  .quad rt_pd + 0x0000 + 0x3
  .quad rt_pd + 0x1000 + 0x3
  .quad rt_pd + 0x2000 + 0x3
  .quad rt_pd + 0x3000 + 0x3
  .fill 508, 8, 0
rt_pd:
  .set i, 0
  .rept 2048
  /* present, writable, 2 MiB page; PCD|PWT (uncached) on the 3-4 GiB window holding the APICs */
  .quad (i << 21) | 0x83 | ((i >= 1536) & 0x18)
  .set i, i + 1
  .endr

  .section .bss.stack, "aw", @nobits
  .align 16
  .globl rt_bsp_stack_top
rt_bsp_stack:
  .skip BSP_STACK_SIZE
rt_bsp_stack_top:

  .section .text
  .code32
  .globl _start
_start:
  cli
  movl %eax, rt_mb_magic
  movl %ebx, rt_mb_info
  xorl %esi, %esi /* esi = 0: bootstrap processor */
enter_long:
  lgdt rt_gdt_ptr
  movl $rt_pml4, %eax
  movl %eax, %cr3
  movl %cr4, %eax
  orl $0x20, %eax /* CR4.PAE */
  movl %eax, %cr4
  movl $0xC0000080, %ecx /* IA32_EFER */
  rdmsr
  orl $0x100, %eax /* LME */
  wrmsr
  movl %cr0, %eax
  orl $0x80000001, %eax /* PG | PE */
  movl %eax, %cr0
  ljmp $0x08, $long_entry

  .code64
long_entry:
  movw $0x10, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %ss
  xorw %ax, %ax
  movw %ax, %fs
  movw %ax, %gs
  testl %esi, %esi
  jnz ap_long
  movabsq $rt_bsp_stack_top, %rsp
  /* Zero .bss (minus the stack) ourselves: after a reset the loader may not reload the image. */
  movabsq $__bss_zero_start, %rdi
  movabsq $__bss_end, %rcx
  subq %rdi, %rcx
  shrq $3, %rcx
  xorl %eax, %eax
  rep stosq
  call rt_bsp_main
1:
  cli
  hlt
  jmp 1b

ap_long:
  movl $1, %eax
  lock xaddl %eax, rt_ap_next_slot
  movl %eax, %edi /* slot index, argument to rt_ap_main */
  incl %eax
  imull $AP_STACK_SIZE, %eax
  addl $AP_STACK_BASE, %eax
  movq %rax, %rsp
  call rt_ap_main
2:
  cli
  hlt
  jmp 2b

  /* AP trampoline, copied to AP_TRAMP_BASE (a SIPI vector page) before the INIT-SIPI-SIPI. */
  .code16
  .globl rt_ap_tramp_start, rt_ap_tramp_end
rt_ap_tramp_start:
  cli
  xorw %ax, %ax
  movw %ax, %ds
  lgdtl (AP_TRAMP_BASE + tramp_gdt_ptr - rt_ap_tramp_start)
  movl %cr0, %eax
  orl $1, %eax
  movl %eax, %cr0
  ljmpl $0x18, $(AP_TRAMP_BASE + tramp32 - rt_ap_tramp_start)
  .code32
tramp32:
  movw $0x10, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %ss
  movl $1, %esi
  movl $enter_long, %eax
  jmp *%eax
  .align 8
tramp_gdt_ptr:
  .word rt_gdt_end - rt_gdt - 1
  .long rt_gdt
rt_ap_tramp_end:

  /* IDT stubs: each pushes a dummy error code when the CPU does not push one, then the vector. */
  .code64
  .macro isr_stub n
  .align 16
isr_stub_\n:
  .if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
  .else
  pushq $0
  .endif
  pushq $\n
  jmp isr_common
  .endm

  .altmacro
  .set v, 0
  .rept 256
  isr_stub %v
  .set v, v + 1
  .endr

  .macro stub_addr n
  .quad isr_stub_\n
  .endm
  .section .rodata
  .align 8
  .globl rt_isr_stubs
rt_isr_stubs:
  .set v, 0
  .rept 256
  stub_addr %v
  .set v, v + 1
  .endr
  .noaltmacro

  .section .text
isr_common:
  pushq %rax
  pushq %rbx
  pushq %rcx
  pushq %rdx
  pushq %rsi
  pushq %rdi
  pushq %rbp
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, %rdi
  cld
  call rt_isr_dispatch
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rbp
  popq %rdi
  popq %rsi
  popq %rdx
  popq %rcx
  popq %rbx
  popq %rax
  addq $16, %rsp
  iretq
