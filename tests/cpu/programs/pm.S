# 32-bit protected mode privilege changes (SDM vol. 3A 5.8 "Privilege level checking when
# transferring program control", 6.12.1 "Exception- or interrupt-handler procedures", vol. 1
# 19.5 "I/O permission bit map"): far CALL/RETF at CPL 0, RETF to CPL 3, a TSS I/O bitmap that
# allows port 0xE9 only, INT to a DPL-3 trap gate (stack from SS0:ESP0), IRET to CPL 3 nulling DS
# (DPL 0), then #GP for OUT 0x81 (bitmap), CLI at CPL 3 (CPL > IOPL), INT to a DPL-0 gate, and
# HLT at CPL 3.
#
# Port output: 0x5A (OUT 0xE9 at CPL 3), then the result dump. Results: 0x600 d DS after the
# IRET to CPL 3, 0x604 d ESP at CPL 3, 0x610 d #GP count, 0x614.. d #GP error codes,
# 0x630 d ESP in the INT 0x81 handler, 0x634 w SS there, 0x638 d pushed CS, 0x63C d pushed SS,
# 0x640 d 0xD0E, 0x650 d CS pushed by the far CALL.
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
  mov dword ptr [0x4004], 0x9000
  mov dword ptr [0x4008], 0x10
  mov word ptr [0x4066], 0x68
  mov edi, 0x4068
  mov ecx, 0x2000
  mov al, 0xFF
  cld
  rep stosb
  mov byte ptr [0x4068 + 0xE9/8], 0xFD   # port 0xE9 allowed, everything else denied
  mov ax, 0x28
  ltr ax
  mov edi, 13
  mov esi, offset gp32
  mov edx, 0x8E00
  call set_gate
  mov edi, 0x81
  mov esi, offset int81
  mov edx, 0xEF00
  call set_gate
  mov edi, 0x82
  mov esi, offset int81
  mov edx, 0x8E00
  call set_gate
  lidt [idtr32]
  .byte 0x9A
  .long farfn
  .word 0x08
  mov [0x650], eax
  push 0x23
  push 0x6000
  push 0x1B
  push offset user32
  retf
farfn:
  mov eax, [esp+4]
  retf
user32:
  mov ax, 0x23
  mov ds, ax
  mov al, 0x5A
  out 0xE9, al
  int 0x81
  mov ax, ds
  mov ss:[0x600], eax
  mov eax, esp
  mov ss:[0x604], eax
  out 0x81, al
  cli
  int 0x82
  hlt
int81:
  mov [0x630], esp
  mov bx, ss
  mov [0x634], bx
  mov ebx, [esp+4]
  mov [0x638], ebx
  mov ebx, [esp+16]
  mov [0x63c], ebx
  mov bx, 0x10
  mov ds, bx
  iret
gp32:
  mov bx, 0x10
  mov ds, bx
  mov ebx, [0x610]
  inc dword ptr [0x610]
  pop eax
  mov [0x614 + ebx*4], eax
  cmp ebx, 3
  je finish
  movzx eax, byte ptr [lens + ebx]
  add [esp], eax
  iret
finish:
  mov dword ptr [0x640], 0xD0E
  mov ax, 0x10
  mov es, ax
  REPORT_AND_EXIT
lens:
  .byte 2, 1, 2
set_gate:
  shl edi, 3
  add edi, 0x4800
  mov [edi], si
  mov word ptr [edi+2], 0x08
  mov word ptr [edi+4], dx
  shr esi, 16
  mov [edi+6], si
  ret
.balign 8
gdt:
  .quad 0
  .quad 0x00CF9A000000FFFF
  .quad 0x00CF92000000FFFF
  .quad 0x00CFFA000000FFFF
  .quad 0x00CFF2000000FFFF
  .quad 0x0000890040002067
gdtr:
  .word 0x2F
  .long gdt
idtr32:
  .word 0x7FF
  .long 0x4800
