# 64-bit interrupt stack frames (SDM vol. 3A 6.14.2 "64-bit mode stack frame", 6.14.4 "Stack
# switching in IA-32e mode", 6.14.5 "Interrupt stack table"): RSP is aligned down to 16 bytes
# before the frame is pushed, with and without a stack switch; an IST entry is used even without
# a privilege change, and again from the start when the same vector nests; a CPL 3 -> 0 change
# loads TSS.RSP0 and a null SS, and IRETQ returns to the CPL-3 stack.
#   0x500 q RSP in the handler, INT 0x50 (no IST) at CPL 0 with RSP = 0x7808
#   0x508 q saved RSP               0x510 q RSP after IRETQ
#   0x518 q RSP in the handler, INT 0x51 (IST1 = 0x7C08) at CPL 0 with RSP = 0x7800
#   0x520 q saved RSP               0x528 q RSP in the nested INT 0x51 handler
#   0x530 q saved RSP of the nested INT 0x51
#   0x538 q RSP in the handler, INT 0x52 from CPL 3 (RSP0 = 0x7F08, RSP = 0x103008)
#   0x540 q saved RSP  0x548 q saved SS  0x550 w SS in the handler
#   0x558 q RSP back at CPL 3       0x560 w SS back at CPL 3
#   0x568 q RSP in the handler, INT 0x53 (IST2 = 0x7A00) from CPL 3   0x570 q saved SS
.intel_syntax noprefix
.include "common.inc"

.macro PAGE_TABLES
  mov dword ptr [0x1000], 0x2007
  mov dword ptr [0x2000], 0x3007
  mov dword ptr [0x3000], 0x000087          # 0-4 MiB: P W U PS
  mov dword ptr [0x3008], 0x200087
.endm

.include "longmode.inc"

main64:
  mov qword ptr [0x5024], 0x7C08            # IST1 (not 16-byte aligned on purpose)
  mov qword ptr [0x502C], 0x7A00            # IST2
  mov edi, 0x50
  mov rsi, offset h50
  mov edx, 0x8E00
  call set_gate64
  mov edi, 0x51
  mov rsi, offset h51
  mov edx, 0x8E01
  call set_gate64
  mov edi, 0x52
  mov rsi, offset h52
  mov edx, 0xEE00
  call set_gate64
  mov edi, 0x53
  mov rsi, offset h53
  mov edx, 0xEE02
  call set_gate64

  mov rsp, 0x7808
  int 0x50
  mov [0x510], rsp
  mov rsp, 0x7800
  int 0x51
after_nested:
  mov rsp, 0x7800
  mov qword ptr [0x5004], 0x7F08            # RSP0
  push 0x2B
  push 0x103008
  push 0x2
  push 0x33
  mov rax, offset user
  push rax
  iretq
user:
  int 0x52
  mov [0x558], rsp
  mov ax, ss
  mov [0x560], ax
  int 0x53

h50:
  mov [0x500], rsp
  mov rax, [rsp+24]
  mov [0x508], rax
  iretq
h51:
  cmp qword ptr [0x700], 0
  jne 1f
  mov qword ptr [0x700], 1
  mov [0x518], rsp
  mov rax, [rsp+24]
  mov [0x520], rax
  int 0x51
1:
  mov [0x528], rsp
  mov rax, [rsp+24]
  mov [0x530], rax
  jmp after_nested
h52:
  mov [0x538], rsp
  mov rax, [rsp+24]
  mov [0x540], rax
  mov rax, [rsp+32]
  mov [0x548], rax
  mov ax, ss
  mov [0x550], ax
  iretq
h53:
  mov [0x568], rsp
  mov rax, [rsp+32]
  mov [0x570], rax
  mov rsp, 0x7800
  REPORT_AND_EXIT
