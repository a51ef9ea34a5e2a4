/* Legacy platform devices for guests: 8259A PIC (ICW1-4, OCW1-3), 8254 PIT channel 0,
 * IOAPIC at 0xFEC00000 (82093AA datasheet: IOREGSEL +0x00, IOWIN +0x10, RTE at 0x10 + 2*pin),
 * the pc-testdev IRQ lines at ports 0x2000 + N and the benchmark sample port 0x2100.
 * Not supported: PIC special mask / rotate modes, PIT channels 1-2 (channel 2 is used only by
 * rt_tsc_khz), IOAPIC relocation. */
#ifndef GUESTS_RT_LEGACY_H_
#define GUESTS_RT_LEGACY_H_
#include "rt.h"

#define IOAPIC_BASE 0xFEC00000ul
#define RTE_MASKED (1ul << 16)
#define RTE_LEVEL (1ul << 15)
#define RTE_REMOTE_IRR (1ul << 14)
#define RTE_ACTIVE_LOW (1ul << 13)
#define RTE_DELIVS (1ul << 12)

/* Initialises both PICs (edge, cascade on IRQ2, 8086 mode) with the given vector bases/masks. */
void pic_init(u8 master_base, u8 slave_base, u8 master_mask, u8 slave_mask);
/* Non-specific EOI to the master (and the slave for irq >= 8). */
void pic_eoi(int irq);
/* OCW3 read of the master's IRR (which = 0x0A) or ISR (which = 0x0B). */
u8 pic_read_reg(u8 which);

u32 ioapic_read(u32 index);
void ioapic_write(u32 index, u32 v);
u64 ioapic_read_rte(u32 pin);
void ioapic_write_rte(u32 pin, u64 v);
/* Number of redirection entries (IOAPIC version register bits 23:16, plus one). */
u32 ioapic_pins(void);
void ioapic_mask_all(void);

/* Channel 0, mode 2 (rate generator), lobyte/hibyte. */
void pit_start_periodic(u16 divisor);
void pit_stop(void);

static inline void testdev_set_irq(int line, int level) {
  outb((u16)(0x2000 + line), (u8)(level ? 1 : 0));
}
static inline void bench_sample(u32 v) {
  outl(0x2100, v);
}

#endif
