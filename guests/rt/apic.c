/* Local APIC helpers (see apic.h). SDM vol. 3A 11.4, 11.6, 11.12. Not supported: ICR busy
 * polling in x2APIC mode (the x2APIC ICR has no delivery status, SDM 11.12.9). */
#include "apic.h"

volatile int apic_x2;
u64 apic_mmio_base = 0xFEE00000;

u32 apic_read(u32 reg) {
  if (apic_x2) return (u32)rdmsr(0x800 + (reg >> 4));
  return mmio_read32(apic_mmio_base + reg);
}

void apic_write(u32 reg, u32 v) {
  if (apic_x2) {
    wrmsr(0x800 + (reg >> 4), v);
  } else {
    mmio_write32(apic_mmio_base + reg, v);
  }
}

void apic_icr(u32 dest, u32 lo) {
  if (apic_x2) {
    wrmsr(0x830, ((u64)dest << 32) | lo);
    return;
  }
  /* xAPIC: wait for the previous IPI to be accepted (delivery status), bounded. */
  for (int i = 0; i < 100000 && (mmio_read32(apic_mmio_base + APIC_ICR) & ICR_BUSY); i++) {
  }
  mmio_write32(apic_mmio_base + APIC_ICR2, dest << 24);
  mmio_write32(apic_mmio_base + APIC_ICR, lo);
}

u32 apic_id(void) {
  u32 id = apic_read(APIC_ID);
  return apic_x2 ? id : id >> 24;
}

void apic_sw_enable(u8 spurious) {
  apic_write(APIC_SVR, 0x100u | spurious);
  apic_write(APIC_TPR, 0);
}

int apic_set_base_safe(u64 value) {
  return wrmsr_safe(MSR_APIC_BASE, value);
}

void apic_enable_x2apic_here(void) {
  u64 b = rdmsr(MSR_APIC_BASE);
  wrmsr(MSR_APIC_BASE, b | APIC_BASE_EN | APIC_BASE_EXTD);
}

int apic_vec_bit(u32 base, u8 vector) {
  u32 w = apic_read(base + 0x10 * (vector / 32));
  return (w >> (vector % 32)) & 1;
}

u32 cpuid_apic_id(void) {
  u32 a, b, c, d;
  cpuid(0, 0, &a, &b, &c, &d);
  if (a >= 0xB) {
    u32 max = a;
    cpuid(0xB, 0, &a, &b, &c, &d);
    if (max >= 0xB && b != 0) return d;
  }
  cpuid(1, 0, &a, &b, &c, &d);
  return b >> 24;
}
