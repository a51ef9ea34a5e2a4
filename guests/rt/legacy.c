/* Legacy devices (see legacy.h). 8259A datasheet (ICW/OCW), 8254 datasheet (control word
 * 00 11 010 0 = channel 0, lobyte/hibyte, mode 2, binary), 82093AA IOAPIC datasheet 3.2.
 * Not supported: see legacy.h. */
#include "legacy.h"

void pic_init(u8 master_base, u8 slave_base, u8 master_mask, u8 slave_mask) {
  outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 needed */
  outb(0x21, master_base);
  outb(0x21, 0x04); /* ICW3: slave on IRQ2 */
  outb(0x21, 0x01); /* ICW4: 8086 mode, normal EOI */
  outb(0xA0, 0x11);
  outb(0xA1, slave_base);
  outb(0xA1, 0x02); /* ICW3: slave identity 2 */
  outb(0xA1, 0x01);
  outb(0x21, master_mask);
  outb(0xA1, slave_mask);
}

void pic_eoi(int irq) {
  if (irq >= 8) outb(0xA0, 0x20);
  outb(0x20, 0x20);
}

u8 pic_read_reg(u8 which) {
  outb(0x20, which);
  return inb(0x20);
}

u32 ioapic_read(u32 index) {
  mmio_write32(IOAPIC_BASE, index);
  return mmio_read32(IOAPIC_BASE + 0x10);
}

void ioapic_write(u32 index, u32 v) {
  mmio_write32(IOAPIC_BASE, index);
  mmio_write32(IOAPIC_BASE + 0x10, v);
}

u64 ioapic_read_rte(u32 pin) {
  u64 lo = ioapic_read(0x10 + 2 * pin);
  u64 hi = ioapic_read(0x11 + 2 * pin);
  return lo | (hi << 32);
}

void ioapic_write_rte(u32 pin, u64 v) {
  /* Mask first so a half-written entry never delivers. */
  ioapic_write(0x10 + 2 * pin, (u32)RTE_MASKED);
  ioapic_write(0x11 + 2 * pin, (u32)(v >> 32));
  ioapic_write(0x10 + 2 * pin, (u32)v);
}

u32 ioapic_pins(void) {
  return ((ioapic_read(1) >> 16) & 0xFF) + 1;
}

void ioapic_mask_all(void) {
  u32 n = ioapic_pins();
  for (u32 pin = 0; pin < n && pin < 240; pin++) ioapic_write_rte(pin, RTE_MASKED);
}

void pit_start_periodic(u16 divisor) {
  outb(0x43, 0x34);
  outb(0x40, (u8)divisor);
  outb(0x40, (u8)(divisor >> 8));
}

void pit_stop(void) {
  /* Mode 0 with no count written: OUT stays low, no further edges. */
  outb(0x43, 0x30);
}
