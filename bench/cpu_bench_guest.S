# Guest side of `apicv bench cpu` (bench/cpu_bench.cc): a flat binary linked at 0x8000 and
# entered in real mode at 0000:8000 (by the interpreter directly, by QEMU through the reset.S
# firmware). It switches to 64-bit mode with 4 KiB pages identity-mapping 0..64 MiB, writes a
# marker byte to port 0xE9 (the interpreter starts its clock there), runs one loop for the
# iteration count in the parameter block, and ends with an OUT to port 0xF4 (QEMU:
# isa-debug-exit). Parameter block at 0x8008: loop id (q), iterations (q).
#   0 register:  8 instructions per iteration, registers only
#   1 memory:    8 per iteration: 2 loads, a read-modify-write and a store within one page
#   2 page walk: 6 per iteration: one load per iteration from the next 4 KiB page, cycling over
#                15360 pages (60 MiB), far more than the interpreter's 256-entry TLB holds
.intel_syntax noprefix
.code16
.globl _start
_start:
  jmp start16
.org 8
loop_id:
  .quad 0
iterations:
  .quad 0
start16:
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
  cld
  mov edi, 0x1000
  xor eax, eax
  mov ecx, 0xC00
  rep stosd
  mov dword ptr [0x1000], 0x2003
  mov dword ptr [0x2000], 0x3003
  # PD entries 0..31 -> page tables at 0x100000 + i * 0x1000
  mov edi, 0x3000
  mov eax, 0x100003
  mov ecx, 32
1:
  mov [edi], eax
  mov dword ptr [edi+4], 0
  add eax, 0x1000
  add edi, 8
  loop 1b
  # 16384 PTEs: 0..64 MiB, P W
  mov edi, 0x100000
  mov eax, 3
  mov ecx, 16384
2:
  mov [edi], eax
  mov dword ptr [edi+4], 0
  add eax, 0x1000
  add edi, 8
  loop 2b
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
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov rsp, 0x7000
  mov rcx, [iterations]
  mov r8d, [loop_id]
  xor eax, eax
  xor ebx, ebx
  xor edx, edx
  xor esi, esi
  xor edi, edi
  mov edx, 0xE9
  mov al, 1
  out dx, al
  xor edx, edx
  test rcx, rcx
  jz done
  cmp r8d, 1
  je mem_loop
  cmp r8d, 2
  je walk_loop
reg_loop:
  add rax, rbx
  xor rdx, rax
  lea rsi, [rsi + rax*2]
  shl rdi, 1
  or rdi, rdx
  inc rbx
  dec rcx
  jnz reg_loop
  jmp done
mem_loop:
  mov ebx, 0x200000
1:
  mov rax, [rbx]
  add [rbx+8], rax
  mov [rbx+16], rdx
  add rdx, [rbx+24]
  add ebx, 8
  and ebx, 0x200FF8
  dec rcx
  jnz 1b
  jmp done
walk_loop:
  mov ebx, 0x400000
  mov esi, 0x400000
1:
  mov rax, [rbx]
  add rbx, 0x1000
  cmp rbx, 0x4000000
  cmovae rbx, rsi
  dec rcx
  jnz 1b
done:
  mov edx, 0xF4
  xor eax, eax
  out dx, al
3:
  cli
  hlt
  jmp 3b

.balign 8
gdt:
  .quad 0
  .quad 0x00CF9A000000FFFF   # 0x08 32-bit code
  .quad 0x00CF92000000FFFF   # 0x10 data
  .quad 0x00AF9A000000FFFF   # 0x18 64-bit code
gdtr:
  .word 0x1F
  .long gdt
