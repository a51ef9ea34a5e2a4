# Mode walk (SDM vol. 3A 9.9 "Mode switching", 6.14 "Exception and interrupt handling in 64-bit
# mode", 5.8.8 "SYSCALL/SYSRET"): real mode INT/IRET through the IVT, protected mode with a #GP
# for a selector beyond the GDT limit, the switch to long mode (EFER.LMA follows CR0.PG), LTR of
# a 64-bit TSS, IRETQ to CPL 3, a pending external interrupt taken at the first CPL-3
# instruction boundary, INT 0x80 from CPL 3 (stack from TSS.RSP0, SS := null), SYSCALL/SYSRET,
# HLT at CPL 3 -> #GP(0) delivered on IST1.
#
# Results (see cpu_events_test.cc): 0x500 w AX after INT 0x40, 0x502 w FLAGS after IRET,
# 0x504 d #GP error code, 0x50C w FLAGS in the real-mode handler, 0x508 d EFER, 0x510 q RAX
# from INT 0x80, 0x518 w SS at CPL 3, 0x520 q RAX after SYSRET, 0x528 q R11 at SYSCALL,
# 0x530 q RSP in the INT 0x80 handler, 0x538 w SS there, 0x540 q pushed CS, 0x548 q pushed SS,
# 0x550 q RCX at SYSCALL - after_syscall, 0x558 w CS in the SYSCALL handler, 0x560 q RSP in the #GP handler,
# 0x568 q #GP error code, 0x570 q faulting RIP - user_hlt, 0x578 d 0xD0E, 0x580 q interrupts taken,
# 0x588 q CS they interrupted, 0x590 q RIP they interrupted - user64.
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
  mov word ptr [0x40*4], offset rm_handler
  mov word ptr [0x40*4+2], 0
  mov ax, 5
  sti
  int 0x40
  mov [0x500], ax
  pushf
  pop ax
  mov [0x502], ax
  cli
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0xEA
  .word pm32
  .word 0x08
rm_handler:
  pushf
  pop bx
  mov [0x50C], bx
  inc ax
  iret
.code32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  mov eax, offset gp32
  mov word ptr [0x4800 + 13*8], ax
  mov word ptr [0x4800 + 13*8 + 2], 0x08
  mov word ptr [0x4800 + 13*8 + 4], 0x8E00
  shr eax, 16
  mov word ptr [0x4800 + 13*8 + 6], ax
  lidt [idtr32]
  mov ax, 0x58
  mov ds, ax
  hlt
gp32:
  pop eax
  mov [0x504], eax
  add esp, 12
  mov ax, 0x10
  mov ds, ax
  # Vector 0x20 pending from here on (IF = 0 until the IRETQ to CPL 3).
  LAPIC_ENABLE
  SELF_IPI 0x20
  # Identity map of the first GiB with 2 MiB pages (P W U PS).
  cld
  mov edi, 0x1000
  xor eax, eax
  mov ecx, 0xC00
  rep stosd
  mov dword ptr [0x1000], 0x2007
  mov dword ptr [0x2000], 0x3007
  mov edi, 0x3000
  mov eax, 0x87
  mov ecx, 512
1:
  mov [edi], eax
  add eax, 0x200000
  add edi, 8
  loop 1b
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov eax, 0x1000
  mov cr3, eax
  mov ecx, 0xC0000080
  rdmsr
  or eax, 0x101
  wrmsr
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  .byte 0xEA
  .long lm64
  .word 0x18
.code64
lm64:
  mov ax, 0x20
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov rsp, 0x7000
  mov ecx, 0xC0000080
  rdmsr
  mov [0x508], eax
  mov qword ptr [0x4004], 0x9000
  mov qword ptr [0x4024], 0xA000
  mov ax, 0x38
  ltr ax
  mov edi, 13
  mov rsi, offset gp64
  mov edx, 0x8E01
  call set_gate
  mov edi, 0x80
  mov rsi, offset int80
  mov edx, 0xEE00
  call set_gate
  mov edi, 0x20
  mov rsi, offset ext20
  mov edx, 0x8E00
  call set_gate
  lidt [idtr64]
  mov ecx, 0xC0000081
  xor eax, eax
  mov edx, 0x00200018
  wrmsr
  mov ecx, 0xC0000082
  mov rax, offset syscall_entry
  mov rdx, rax
  shr rdx, 32
  wrmsr
  mov ecx, 0xC0000084
  mov eax, 0x200
  xor edx, edx
  wrmsr
  push 0x2B
  push 0x6000
  push 0x202
  push 0x33
  mov rax, offset user64
  push rax
  iretq
user64:
  mov rax, 0x11
  int 0x80
  mov [0x510], rax
  mov ax, ss
  mov [0x518], ax
  syscall
after_syscall:
  mov [0x520], rax
  mov [0x528], r11
user_hlt:
  hlt
int80:
  mov [0x530], rsp
  mov bx, ss
  mov [0x538], bx
  mov rbx, [rsp+8]
  mov [0x540], rbx
  mov rbx, [rsp+32]
  mov [0x548], rbx
  inc rax
  iretq
syscall_entry:
  push rcx
  mov rbx, offset after_syscall
  sub rcx, rbx
  mov [0x550], rcx
  pop rcx
  mov bx, cs
  mov [0x558], bx
  mov rax, 0x77
  sysretq
ext20:
  push rcx
  inc qword ptr [0x580]
  mov rbx, [rsp+16]
  mov [0x588], rbx
  mov rbx, [rsp+8]
  mov rcx, offset user64
  sub rbx, rcx
  mov [0x590], rbx
  pop rcx
  iretq
gp64:
  mov [0x560], rsp
  mov rbx, [rsp]
  mov [0x568], rbx
  mov rbx, [rsp+8]
  mov rcx, offset user_hlt
  sub rbx, rcx
  mov [0x570], rbx
  mov dword ptr [0x578], 0xD0E
  REPORT_AND_EXIT
set_gate:
  shl edi, 4
  add rdi, 0x4C00
  mov ax, si
  mov [rdi], ax
  mov word ptr [rdi+2], 0x18
  mov word ptr [rdi+4], dx
  mov rax, rsi
  shr rax, 16
  mov [rdi+6], ax
  shr rax, 16
  mov [rdi+8], eax
  mov dword ptr [rdi+12], 0
  ret
.balign 8
gdt:
  .quad 0
  .quad 0x00CF9A000000FFFF
  .quad 0x00CF92000000FFFF
  .quad 0x00AF9A000000FFFF
  .quad 0x00CF92000000FFFF
  .quad 0x00CFF2000000FFFF
  .quad 0x00AFFA000000FFFF
  .quad 0x0000890040000067
  .quad 0
gdtr:
  .word 0x47
  .long gdt
idtr32:
  .word 0x7FF
  .long 0x4800
idtr64:
  .word 0xFFF
  .quad 0x4C00
