# INIT and start-up IPIs (SDM vol. 3A 8.4.4 "MP initialization example", 10.4.7.3 "Local APIC
# state after an INIT reset (wait-for-SIPI state)", table 10-1 "Processor states following
# power-up, reset, or INIT"). Two CPUs: the BSP (this code) sends INIT + SIPI 0x09 to APIC ID 1,
# which starts in real mode at 0900:0000, records its state after INIT, and walks the
# trampoline to long mode (the built-in guests' AP path). A SIPI to the AP while it is halted
# (not waiting for SIPI) is ignored. INIT + SIPI 0x0B then restarts it from long mode.
#   0x500 w AP CS at its first instruction (0x0900)   0x504 d EFLAGS (0x2)
#   0x508 d CR0 (0x60000010)                           0x50C w SP (0)
#   0x510 w CS after the second INIT/SIPI (0x0B00)     0x514 d CR0 (0x60000010)
#   0x518 d EFER (low half) after INIT from long mode  0x51C d EFLAGS (0x2)
#   0x520 d 0x1234 from the AP in long mode            0x524 d 0xBAD if the ignored SIPI ran
#   0x528 d RBX popped in long mode (0x1234)          0x530 d 0x5678: second start done
#   0x540 d AP starts
.intel_syntax noprefix
.include "common.inc"

.macro SEND_IPI low
  mov dword ptr [0xFEE00310], 1 << 24
  mov dword ptr [0xFEE00300], \low
.endm
# Waits until the dword at `addr` equals `value` (bounded: the result shows a timeout).
.macro WAIT_FOR addr, value
  mov ecx, 50000000
1:
  cmp dword ptr [\addr], \value
  je 2f
  pause
  dec ecx
  jnz 1b
2:
.endm

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
  .long bsp32
  .word 0x18
.code32
bsp32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  LAPIC_ENABLE
  SEND_IPI 0x4500            # INIT, level assert
  SEND_IPI 0x4609            # SIPI, vector 0x09
  WAIT_FOR 0x520, 0x1234
  SEND_IPI 0x460A            # SIPI while the AP is halted in long mode: ignored
  mov ecx, 200000
3:
  pause
  dec ecx
  jnz 3b
  SEND_IPI 0x4500
  SEND_IPI 0x460B
  WAIT_FOR 0x530, 0x5678
  REPORT_AND_EXIT

.balign 8
gdt:
  .quad 0
  .quad 0x00AF9A000000FFFF   # 0x08 64-bit code
  .quad 0x00CF92000000FFFF   # 0x10 data
  .quad 0x00CF9A000000FFFF   # 0x18 32-bit code
gdtr:
  .word 0x1F
  .long gdt

# The AP's first start: real mode at 0900:0000 (addresses are absolute; DS = 0).
.org 0x1000
.code16
ap_start:
  pushfd
  pop edx
  mov ax, cs
  xor bx, bx
  mov ds, bx
  mov [0x500], ax
  mov [0x504], edx
  mov eax, cr0
  mov [0x508], eax
  mov [0x50C], sp
  lock inc dword ptr [0x540]
  lgdt [gdtr]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0x66, 0xEA
  .long ap32
  .word 0x18
.code32
ap32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  # Identity map of the first GiB with 2 MiB pages.
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
4:
  mov [edi], eax
  add eax, 0x200000
  add edi, 8
  loop 4b
  mov eax, 0x1000
  mov cr3, eax
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov ecx, 0xC0000080
  rdmsr
  or eax, 0x100
  wrmsr
  mov eax, cr0
  or eax, 0x80000001
  mov cr0, eax
  .byte 0xEA
  .long ap64
  .word 0x08
.code64
ap64:
  mov ax, 0x10
  mov ds, ax
  mov ss, ax
  mov rsp, 0x7C00
  push 0x1234
  pop rbx
  mov [0x528], ebx
  mov dword ptr [0x520], 0x1234
5:
  cli
  hlt
  jmp 5b

# Must never run: SIPI 0x0A arrives while the AP is not waiting for SIPI.
.org 0x2000
.code16
  xor bx, bx
  mov ds, bx
  mov dword ptr [0x524], 0xBAD
6:
  cli
  hlt
  jmp 6b

# The AP after INIT from long mode: real mode at 0B00:0000.
.org 0x3000
.code16
  pushfd
  pop esi
  mov ax, cs
  xor bx, bx
  mov ds, bx
  mov [0x510], ax
  mov [0x51C], esi
  mov eax, cr0
  mov [0x514], eax
  mov ecx, 0xC0000080
  rdmsr
  mov [0x518], eax
  lock inc dword ptr [0x540]
  mov dword ptr [0x530], 0x5678
7:
  cli
  hlt
  jmp 7b
