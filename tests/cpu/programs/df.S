# Exceptions during event delivery (SDM vol. 3A 6.15 "Interrupt 8: double fault", table 6-5
# "Conditions for generating a double fault"): contributory + contributory and page fault +
# (contributory or page fault) become #DF(0); contributory + page fault and benign + anything
# are delivered serially (the second exception is taken). Each probe records the event that
# reached a handler in a 16-byte slot: vector (b), events (b), error code (d at +4), CR2 (q at +8).
#   0x500 #DE whose gate is not present (#NP)           -> #DF(0)
#   0x510 #PF whose IST stack is not mapped (#PF)        -> #DF(0), CR2 = the first push
#   0x520 #PF whose gate is not present (#NP)            -> #DF(0), CR2 = the first fault
#   0x530 #GP whose IST stack is not mapped (#PF)        -> #PF(W), serially
#   0x540 #UD whose gate is not present (#NP)            -> #NP(vector 6, IDT, EXT), serially
#   0x550 #UD whose IST stack is not mapped (#PF)        -> #PF(W), serially
.intel_syntax noprefix
.include "common.inc"

.macro PAGE_TABLES
  mov dword ptr [0x1000], 0x2007
  mov dword ptr [0x2000], 0x3007
  mov dword ptr [0x3000], 0x000083          # 0-6 MiB mapped (2 MiB pages); 6 MiB up unmapped
  mov dword ptr [0x3008], 0x200083
  mov dword ptr [0x3010], 0x400083
.endm

.macro PROBE slot, insn:vararg
  mov qword ptr [0x700], \slot
  mov qword ptr [0x708], offset 1f
  \insn
1:
.endm

.include "longmode.inc"

main64:
  mov qword ptr [0x5024], 0x7C00            # IST1: the #DF stack
  mov edi, 8
  mov rsi, offset df_stub
  mov edx, 0x8E01
  call set_gate64
  mov edi, 11
  mov rsi, offset np_stub
  mov edx, 0x8E00
  call set_gate64
  mov edi, 13
  mov rsi, offset gp_stub
  mov edx, 0x8E00
  call set_gate64
  mov edi, 14
  mov rsi, offset pf_stub
  mov edx, 0x8E00
  call set_gate64
  mov edi, 6
  mov rsi, offset ud_stub
  mov edx, 0x8E00
  call set_gate64

  # #DE: gate 0 stays not present.
  xor ecx, ecx
  PROBE 0x500, div ecx

  # #PF delivered on IST2 = 9 MiB (unmapped).
  mov qword ptr [0x502C], 0x900000
  mov byte ptr [0x6000 + 14*16 + 4], 2
  PROBE 0x510, mov eax, [0x700000]
  mov byte ptr [0x6000 + 14*16 + 4], 0

  # #PF with its gate not present.
  and byte ptr [0x6000 + 14*16 + 5], 0x7F
  PROBE 0x520, mov eax, [0x700008]
  or byte ptr [0x6000 + 14*16 + 5], 0x80

  # #GP(0x100) delivered on IST2 (unmapped).
  mov byte ptr [0x6000 + 13*16 + 4], 2
  mov ax, 0x100
  PROBE 0x530, mov ds, ax
  mov byte ptr [0x6000 + 13*16 + 4], 0

  # #UD with its gate not present.
  and byte ptr [0x6000 + 6*16 + 5], 0x7F
  PROBE 0x540, ud2
  or byte ptr [0x6000 + 6*16 + 5], 0x80

  # #UD delivered on IST2 (unmapped).
  mov byte ptr [0x6000 + 6*16 + 4], 2
  PROBE 0x550, ud2
  mov byte ptr [0x6000 + 6*16 + 4], 0

  REPORT_AND_EXIT

df_stub:
  push 8
  jmp record
np_stub:
  push 11
  jmp record
gp_stub:
  push 13
  jmp record
pf_stub:
  push 14
  jmp record
ud_stub:
  push 0                                     # #UD pushes no error code: make one
  push 6
  jmp record
# Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
record:
  push rax
  push rbx
  mov rbx, [0x700]
  mov al, [rsp+16]
  mov [rbx], al
  inc byte ptr [rbx+1]
  mov eax, [rsp+24]
  mov [rbx+4], eax
  mov rax, cr2
  mov [rbx+8], rax
  mov rax, [0x708]
  mov [rsp+32], rax
  pop rbx
  pop rax
  add rsp, 16
  iretq
