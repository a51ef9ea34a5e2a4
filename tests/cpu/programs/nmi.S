# NMI blocking (SDM vol. 3A 6.7.1 "Handling multiple NMIs"): an NMI is taken with IF = 0; while
# its handler runs, a second NMI stays pending (NMIs are blocked until the next IRET), then is
# taken after the IRET. Both NMIs are self-IPIs with delivery mode NMI.
#   0x500 d NMIs taken (2)   0x508 d deepest NMI nesting (1)
#   0x510 d NMIs taken when the first handler is about to IRET, its second NMI pending (1)
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
  mov eax, offset nmi_handler
  mov word ptr [0x4800 + 2*8], ax
  mov word ptr [0x4800 + 2*8 + 2], 0x08
  mov word ptr [0x4800 + 2*8 + 4], 0x8E00
  shr eax, 16
  mov word ptr [0x4800 + 2*8 + 6], ax
  lidt [idtr]
  LAPIC_ENABLE
  mov dword ptr [0xFEE00300], 0x40400     # self, delivery mode NMI
  mov ecx, 1000000
1:
  cmp dword ptr [0x500], 2
  je 2f
  dec ecx
  jnz 1b
2:
  REPORT_AND_EXIT

nmi_handler:
  push eax
  push ecx
  inc dword ptr [0x500]
  inc dword ptr [0x504]
  mov eax, [0x504]
  cmp eax, [0x508]
  jbe 3f
  mov [0x508], eax
3:
  cmp dword ptr [0x500], 1
  jne 5f
  mov dword ptr [0xFEE00300], 0x40400     # a second NMI: pending until the IRET
  mov ecx, 20000
4:
  dec ecx
  jnz 4b
  mov eax, [0x500]
  mov [0x510], eax
5:
  dec dword ptr [0x504]
  pop ecx
  pop eax
  iret

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
