# 4-level paging faults and their error codes (SDM vol. 3A 4.7 "Page-fault exceptions", 4.6
# "Access rights", 4.8 "Accessed and dirty flags", 4.10.4.1 INVLPG). Each probe records the #PF
# error code and CR2 (or 0xEEEE: no fault) in an 8-byte slot: error code (d), CR2 (d).
#   0x500 CPL0 read, not present            0x508 CPL0 write, not present
#   0x510 CPL0 write, read-only, WP=1       0x518 CPL0 write, read-only, WP=0 (no fault)
#   0x520 CPL0 fetch from an NX page        0x528 CPL0 read, PTE bit 51 (reserved) set
#   0x530 CPL0 write, PTE bit 51 set        0x538 CPL0 read, 2 MiB PDE bit 13 (reserved) set
#   0x540 CPL0 fetch, not present           0x550 read after clearing P and INVLPG
#   0x560 CPL3 read of a supervisor page    0x568 CPL3 write to a supervisor read-only page
#   0x570 CPL3 write, user read-only, WP=0  0x578 CPL3 read, not present
#   0x580 CPL3 write to a user RW page (no fault)
# 0x548 d PTE[6:5] (D, A) after a read, 0x54C d after a write; 0x5F0 d value written with WP=0.
.intel_syntax noprefix
.include "common.inc"

.macro PAGE_TABLES
  mov dword ptr [0x1000], 0x2007
  mov dword ptr [0x2000], 0x3007
  mov dword ptr [0x3000], 0x4007            # 0-2 MiB: 4 KiB pages in the PT at 0x4000
  mov dword ptr [0x3008], 0x200087          # 2-4 MiB: a 2 MiB page, P W U PS
  mov dword ptr [0x3010], 0x402083          # 4-6 MiB: 2 MiB page, P W PS, reserved bit 13
  mov edi, 0x4000
  mov eax, 7                                # P W U
  mov ecx, 512
1:
  mov [edi], eax
  add eax, 0x1000
  add edi, 8
  loop 1b
  mov dword ptr [0x4000 + 0x100*8], 0       # 0x100000: not present
  mov dword ptr [0x4000 + 0x101*8], 0x101001  # 0x101000: P, read-only, supervisor
  mov dword ptr [0x4000 + 0x103*8], 0x103003  # 0x103000: P W, supervisor, NX
  mov dword ptr [0x4000 + 0x103*8 + 4], 0x80000000
  mov dword ptr [0x4000 + 0x104*8], 0x104003  # 0x104000: P W, bit 51 set
  mov dword ptr [0x4000 + 0x104*8 + 4], 0x00080000
  mov dword ptr [0x4000 + 0x105*8], 0x105005  # 0x105000: P U, read-only
.endm

# Records the fault of one instruction into `slot`; the #PF handler resumes after it.
.macro PROBE slot, insn:vararg
  mov dword ptr [\slot], 0xEEEE
  mov dword ptr [\slot+4], 0
  mov qword ptr [0x700], \slot
  mov qword ptr [0x708], offset 1f
  \insn
1:
.endm

.include "longmode.inc"

main64:
  mov edi, 14
  mov rsi, offset pf_handler
  mov edx, 0x8E00
  call set_gate64
  mov edi, 0x81
  mov rsi, offset back_to_ring0
  mov edx, 0xEE00
  call set_gate64
  mov byte ptr [0x103000], 0xC3             # ret (never executed: NX)

  PROBE 0x500, mov eax, [0x100000]
  PROBE 0x508, mov dword ptr [0x100010], 1
  PROBE 0x510, mov dword ptr [0x101008], 0x11
  mov rax, cr0
  and eax, ~0x10000                         # CR0.WP = 0
  mov cr0, rax
  PROBE 0x518, mov dword ptr [0x101008], 0x22
  mov eax, [0x101008]
  mov [0x5F0], eax
  mov rax, cr0
  or eax, 0x10000                           # CR0.WP = 1
  mov cr0, rax
  mov ebx, 0x103000
  PROBE 0x520, jmp rbx
  PROBE 0x528, mov eax, [0x104000]
  PROBE 0x530, mov dword ptr [0x104000], 1
  PROBE 0x538, mov eax, [0x400123]
  mov ebx, 0x100000
  PROBE 0x540, jmp rbx
  mov eax, [0x106000]
  mov eax, [0x4000 + 0x106*8]
  and eax, 0x60
  mov [0x548], eax
  mov dword ptr [0x106004], 5
  mov eax, [0x4000 + 0x106*8]
  and eax, 0x60
  mov [0x54C], eax
  mov qword ptr [0x4000 + 0x106*8], 0
  invlpg [0x106000]
  PROBE 0x550, mov eax, [0x106000]

  # CPL 3 with CR0.WP = 0 (user accesses are checked regardless of WP).
  mov rax, cr0
  and eax, ~0x10000
  mov cr0, rax
  push 0x2B
  push 0x103000
  push 0x2
  push 0x33
  mov rax, offset user
  push rax
  iretq
user:
  PROBE 0x560, mov eax, [0x101000]
  PROBE 0x568, mov dword ptr [0x101000], 1
  PROBE 0x570, mov dword ptr [0x105000], 1
  PROBE 0x578, mov eax, [0x100000]
  PROBE 0x580, mov dword ptr [0x102000], 1
  int 0x81
back_to_ring0:
  mov rsp, 0x7800
  REPORT_AND_EXIT

pf_handler:
  push rax
  push rbx
  mov rbx, [0x700]
  mov eax, [rsp+16]
  mov [rbx], eax
  mov rax, cr2
  mov [rbx+4], eax
  mov rax, [0x708]
  mov [rsp+24], rax
  pop rbx
  pop rax
  add rsp, 8
  iretq
