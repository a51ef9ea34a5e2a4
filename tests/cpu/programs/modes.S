# Mode switches not covered by boot.S (SDM vol. 3A 9.9.2 "Switching back to real-address mode",
# 5.2.1 / 3.4.5 code-segment D and L flags, 9.8.5 "Initializing IA-32e mode", vol. 1 3.6.1
# "Operand size and address size in 64-bit mode"): 32-bit -> 16-bit protected mode, back to real
# mode (CR0.PE = 0) with a working IVT, real -> protected -> long mode a second time, 64-bit ->
# compatibility mode by RETFQ and back by a far JMP. Each mode reports the size of a PUSH imm
# (the default operand / stack size) and what identifies it.
#   0x500 w PUSH size in 16-bit protected mode (2)   0x502 w CS in real mode again (0)
#   0x504 w 0x4141 from INT 0x41 in real mode again  0x506 w PUSH size in real mode (2)
#   0x508 d PUSH size in 64-bit mode (8)             0x50C d EFER in 64-bit mode (0x500)
#   0x510 d PUSH size in compatibility mode (4)      0x514 d EFER in compatibility mode (0x500)
#   0x518 d EAX after "mov eax, 5; 0x48" in compatibility mode (4: 0x48 is DEC EAX there)
#   0x51C d CS back in 64-bit mode (0x18)            0x520 q RAX after "mov rax, -1; 0x48 ff c0"
#   in 64-bit mode (0: 0x48 is REX.W, INC RAX wraps)
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
  .byte 0x66, 0xEA
  .long pm32
  .word 0x08
.code32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  .byte 0xEA
  .long pm16
  .word 0x28
.code16
pm16:
  mov bx, sp
  push 0x1234
  mov cx, sp
  pop ax
  sub bx, cx
  mov [0x500], bx
  mov ax, 0x30
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov eax, cr0
  and eax, ~1
  mov cr0, eax
  .byte 0xEA
  .word real2
  .word 0x0000
real2:
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  mov ax, cs
  mov [0x502], ax
  mov word ptr [0x41*4], offset int41
  mov word ptr [0x41*4+2], 0
  int 0x41
  mov bx, sp
  push 0x1234
  mov cx, sp
  pop ax
  sub bx, cx
  mov [0x506], bx
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0x66, 0xEA
  .long pm32b
  .word 0x08
int41:
  mov word ptr [0x504], 0x4141
  iret
.code32
pm32b:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  cld
  mov edi, 0x1000
  xor eax, eax
  mov ecx, 0xC00
  rep stosd
  mov dword ptr [0x1000], 0x2003
  mov dword ptr [0x2000], 0x3003
  mov edi, 0x3000
  mov eax, 0x83
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
  or eax, 0x100
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
  mov rbx, rsp
  push 0x1234
  mov rcx, rsp
  pop rax
  sub rbx, rcx
  mov [0x508], ebx
  mov ecx, 0xC0000080
  rdmsr
  mov [0x50C], eax
  push 0x08
  mov rax, offset compat
  push rax
  retfq
.code32
compat:
  mov ebx, esp
  push 0x12345678
  mov ecx, esp
  pop eax
  sub ebx, ecx
  mov [0x510], ebx
  mov ecx, 0xC0000080
  rdmsr
  mov [0x514], eax
  mov eax, 5
  .byte 0x48                      # DEC EAX outside 64-bit mode
  mov [0x518], eax
  .byte 0xEA
  .long lm64b
  .word 0x18
.code64
lm64b:
  mov ax, cs
  movzx eax, ax
  mov [0x51C], eax
  mov rax, -1
  .byte 0x48, 0xFF, 0xC0          # REX.W INC RAX
  mov [0x520], rax
  REPORT_AND_EXIT

.balign 8
gdt:
  .quad 0
  .quad 0x00CF9A000000FFFF   # 0x08 32-bit code
  .quad 0x00CF92000000FFFF   # 0x10 data
  .quad 0x00AF9A000000FFFF   # 0x18 64-bit code
  .quad 0x00CF92000000FFFF   # 0x20 data
  .quad 0x00009A000000FFFF   # 0x28 16-bit code, limit 64 KiB
  .quad 0x000092000000FFFF   # 0x30 16-bit data, limit 64 KiB
gdtr:
  .word 0x37
  .long gdt
