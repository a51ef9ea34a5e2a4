/* Guest "pit-extint": PIT channel 0 mode 2 at ~1 kHz -> master PIC IRQ0 (vector 0x20) -> BSP
 * LINT0 programmed ExtINT, the legacy path of seed 000. The main loop alternates cli sections
 * (pending ticks wait, so the host must open an interrupt window at the next sti) with
 * "sti; hlt". Command line: ticks=N (default 200).
 * 8254 datasheet (mode 2), 8259A datasheet (EOI), SDM vol. 3A 11.5.1 (LVT0 ExtINT: the vector
 * comes from the PIC, the LAPIC's ISR is not involved and no LAPIC EOI is sent).
 * Not supported: NMI on LINT1, PIC auto-EOI, PIT modes other than 2. */
#include "apic.h"
#include "legacy.h"
#include "rt.h"

const char guest_name[] = "pit-extint";

static volatile u64 ticks;
static volatile u64 isr_hits; /* LAPIC ISR bit 0x20 seen set inside the handler */

static void h_tick(struct rt_frame* f) {
  (void)f;
  ticks++;
  if (apic_vec_bit(APIC_ISR, 0x20)) isr_hits++;
  pic_eoi(0);
}

void guest_main(void) {
  u64 want = rt_cmdline_u64("ticks", 200);
  if (want == 0) want = 1;
  u64 khz = rt_tsc_khz();
  rt_set_handler(0x20, h_tick);
  apic_x2 = 0;
  apic_sw_enable(0xFF);
  apic_write(APIC_LVTT, LVT_MASKED);
  apic_write(APIC_LVT0, LVT_EXTINT); /* unmasked, ExtINT */
  apic_write(APIC_LVT1, LVT_MASKED);
  /* The IOAPIC also sees ISA IRQ0 (on pin 2): keep every pin masked so only ExtINT delivers. */
  ioapic_mask_all();
  pic_init(0x20, 0x28, 0xFE, 0xFF);
  pit_start_periodic(1193); /* 1193182 Hz / 1193 = 1000.15 Hz */
  rt_printf("counting %lu PIT ticks (tsc_khz=%lu)\n", want, khz);
  u64 t0 = rdtsc();
  u64 iters = 0, deadline = t0 + (want * 20 + 5000) * khz; /* 20x slack, +5 s */
  while (ticks < want) {
    cli();
    /* a cli section of ~200 instructions: ticks that arrive now need an interrupt window. The
     * guest halts only one iteration in eight, so most ticks meet IF=0, as in a busy guest. */
    for (volatile int i = 0; i < 40; i++) {
    }
    if (iters++ & 7) {
      sti_nop_cli();
    } else {
      sti_hlt();
    }
    cli();
    if (rdtsc() > deadline) {
      rt_fail("only %lu of %lu ticks before the deadline", ticks, want);
      break;
    }
  }
  u64 t1 = rdtsc();
  pit_stop();
  u64 us = (t1 - t0) * 1000 / khz;
  u64 rate = us ? ticks * 1000000 / us : 0;
  rt_printf("ticks=%lu in %lu us: %lu ticks/s\n", ticks, us, rate);
  CHECK_EQ(isr_hits, 0, "LAPIC ISR[0x20] set for an ExtINT interrupt");
  /* Nominal 1000/s; the bounds only catch a wrong mode or divisor, not host load. */
  CHECK(ticks < want || (rate >= 50 && rate <= 2000), "tick rate %lu/s far from 1000/s", rate);
  /* Masked at the PIC: no more ticks. */
  pic_init(0x20, 0x28, 0xFF, 0xFF);
  pit_start_periodic(1193);
  u64 before = ticks;
  rt_delay_us(20000);
  sti();
  rt_delay_us(20000);
  cli();
  pit_stop();
  CHECK_EQ(ticks - before, 0, "ticks with IRQ0 masked at the PIC");
}
