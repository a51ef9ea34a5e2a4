# Interrupt and debug-exception shadows in 32-bit protected mode (SDM vol. 3A 6.8.3 "Masking
# exceptions and interrupts when switching stacks", 6.9 "Priority among simultaneous exceptions
# and interrupts", STI in vol. 2B; vol. 3B 17.3.1.4 "Single-step trap"). A self-IPI (vector 0x40)
# is made pending with IF = 0; STI then holds it off for exactly one instruction, and STI; HLT
# takes it with the saved EIP after the HLT. With EFLAGS.TF set by POPF, single-step traps
# follow every instruction except MOV SS and POP SS, whose trap is taken after the next one.
#   0x500 d saved EIP - a2 for "sti; a1: nop; a2: nop"      (0: taken after a1)
#   0x504 d saved EIP - b1 for "sti; hlt; b1:"              (0)
#   0x508 d interrupts taken
#   0x510.. d #DB saved EIP - t0, in order; 0x540 d #DB count; 0x544 d DR6.BS seen (0x4000)
#   t0: nop; t1: mov ss, ax; t2: nop; t3: push ss; t4: pop ss; t5: nop; t6: nop; t7:
#   (offsets 0 1 3 4 5 6 7 8): traps expected at 1, 4, 5, 7, 8.
.intel_syntax noprefix
.include "common.inc"
.code16
.globl _start
_start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0xEA
  .word pm32
  .word 0x08
.code32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  mov edi, 1
  mov esi, offset db_handler
  call set_gate
  mov edi, 0x40
  mov esi, offset irq_handler
  call set_gate
  lidt [idtr]
  LAPIC_ENABLE

  SELF_IPI 0x40
  nop
  nop
  sti
a1:
  nop
a2:
  nop
  cli
  sub dword ptr [0x500], offset a2

  SELF_IPI 0x40
  nop
  nop
  sti
  hlt
b1:
  cli
  sub dword ptr [0x504], offset b1

  mov ax, ss
  pushfd
  or dword ptr [esp], 0x100
  popfd
t0:
  nop
t1:
  mov ss, ax
t2:
  nop
t3:
  push ss
t4:
  pop ss
t5:
  nop
t6:
  nop
t7:
  nop
  REPORT_AND_EXIT

irq_handler:
  push eax
  push ebx
  mov eax, [0x508]
  mov ebx, [esp+8]
  mov [0x500 + eax*4], ebx
  inc dword ptr [0x508]
  LAPIC_EOI
  pop ebx
  pop eax
  iret

db_handler:
  push eax
  push ebx
  mov eax, [0x540]
  mov ebx, [esp+8]
  sub ebx, offset t0
  mov [0x510 + eax*4], ebx
  inc dword ptr [0x540]
  cmp ebx, t7 - t0
  jae 1f
  cmp eax, 10
  jb 2f
1:
  and dword ptr [esp+16], ~0x100
2:
  mov eax, dr6
  and eax, 0x4000
  or [0x544], eax
  pop ebx
  pop eax
  iret

# 32-bit interrupt gate (CS 0x08, DPL 0) for vector EDI to ESI.
set_gate:
  shl edi, 3
  add edi, 0x4800
  mov [edi], si
  mov word ptr [edi+2], 0x08
  mov word ptr [edi+4], 0x8E00
  shr esi, 16
  mov [edi+6], si
  ret
.balign 8
gdt:
  .quad 0
  .quad 0x00CF9A000000FFFF
  .quad 0x00CF92000000FFFF
gdtr:
  .word 0x17
  .long gdt
idtr:
  .word 0x7FF
  .long 0x4800
