# A 64 KiB firmware image for `qemu-system-x86_64 -bios`: the reset vector (F000:FFF0) jumps to
# the test program, which QEMU's generic loader placed at 0x8000. The interpreter starts there
# directly (CS = 0, IP = 0x8000, real mode).
.code16
.globl _start
_start:
  .org 0xFFF0
  ljmp $0x0000, $0x8000
  .org 0x10000
