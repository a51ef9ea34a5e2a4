/* Guest "pit-extint": PIT channel 0 mode 2 at ~1 kHz -> master PIC IRQ0 (vector 0x20) -> BSP
 * LINT0 programmed ExtINT, the legacy path of seed 000. The main loop alternates cli sections
 * (pending ticks wait, so the host must open an interrupt window at the next sti) with
 * "sti; hlt". Command line: ticks=N (default 200); ioapic=M (default 0): afterwards mask IRQ0 at
 * the PIC, route the PIT through IOAPIC pin 2 (ISA IRQ0 -> GSI 2, the MP-table / MADT interrupt
 * source override convention) as fixed edge vector 0x22 to the BSP, and take M more ticks with
 * the same loop; the line "IRQ0 moves to IOAPIC pin 2" separates the phases on the serial port.
 * 8254 datasheet (mode 2), 8259A datasheet (EOI, OCW1 mask), 82093AA datasheet 3.2.4 (RTE),
 * SDM vol. 3A 11.5.1 (LVT0 ExtINT: the vector comes from the PIC, the LAPIC's ISR is not involved
 * and no LAPIC EOI is sent).
 * Not supported: NMI on LINT1, PIC auto-EOI, PIT modes other than 2, hosts whose GSI routing
 * sends ISA IRQ0 to IOAPIC pin 0 (KVM's default routing without QEMU's table: the ioapic phase
 * then fails after 200 ms without a tick). */
#include "apic.h"
#include "legacy.h"
#include "rt.h"

const char guest_name[] = "pit-extint";

#define V_PIC_IRQ0 0x20
#define V_IOAPIC_IRQ0 0x22
#define IRQ0_IOAPIC_PIN 2

static volatile u64 ticks;
static volatile u64 isr_hits; /* LAPIC ISR bit 0x20 seen set inside the handler */
static volatile u64 io_ticks;

static void h_tick(struct rt_frame* f) {
  (void)f;
  ticks++;
  if (apic_vec_bit(APIC_ISR, V_PIC_IRQ0)) isr_hits++;
  pic_eoi(0);
}

static void h_io_tick(struct rt_frame* f) {
  (void)f;
  io_ticks++;
  apic_eoi();
}

/* Runs the cli/sti loop until *counter reaches want; returns the elapsed microseconds. */
static u64 take_ticks(volatile u64* counter, u64 want, u64 khz, const char* what) {
  u64 t0 = rdtsc();
  u64 iters = 0, deadline = t0 + (want * 20 + 5000) * khz; /* 20x slack, +5 s */
  while (*counter < want) {
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
      rt_fail("%s: only %lu of %lu ticks before the deadline", what, *counter, want);
      break;
    }
  }
  return (rdtsc() - t0) * 1000 / khz;
}

/* The PIT (1193182 Hz / 1193 = 1000.15 Hz) cannot deliver more ticks than it generated since it
 * was started at TSC `pit_t0`: reinjection (lost_tick_policy=delay) catches up in bursts but never
 * adds ticks (1% slack for the clocks, +2 for the edges). This measures with the guest's TSC, which
 * on this project's nested host lags real time when the VMM is slow (seen under ASan on a loaded
 * machine: 300 ticks in 222 ms), so a mismatch is fatal only with 'strict', like the in-service
 * checks, and otherwise prints a NOTE line. */
static void check_not_more_than_generated(u64 got, u64 pit_t0, u64 khz, const char* what) {
  u64 us = (rdtsc() - pit_t0) * 1000 / khz;
  if (got <= us / 990 + 2) return;
  if (rt_cmdline_flag("strict")) {
    rt_fail("%s: %lu ticks in %lu us of guest TSC since the PIT started (more than generated)",
            what, got, us);
  } else {
    rt_printf(
        "NOTE: %s: %lu ticks in %lu us of guest TSC since the PIT started: more than the PIT "
        "generated, or the guest TSC lags (fatal with 'strict')\n",
        what, got, us);
  }
}

/* Phase 2: IRQ0 masked at the PIC (no ExtINT any more), the same ticks through the IOAPIC. */
static void ioapic_phase(u64 want, u64 khz) {
  /* Let a tick latched before pit_stop() arrive now, as ExtINT, then mask IRQ0 and let any
   * ExtINT still owed by the host drain before the marker line. */
  sti();
  rt_delay_us(3000);
  cli();
  outb(0x21, 0xFF); /* OCW1: every master line masked */
  sti();
  rt_delay_us(3000);
  cli();
  u64 before = ticks;
  rt_printf("IRQ0 moves to IOAPIC pin %d (PIC masked, ExtINT phase over)\n", IRQ0_IOAPIC_PIN);
  rt_set_handler(V_IOAPIC_IRQ0, h_io_tick);
  /* fixed, physical, edge, active high, to the BSP */
  ioapic_write_rte(IRQ0_IOAPIC_PIN, V_IOAPIC_IRQ0 | ((u64)apic_id() << 56));
  u64 pit_t0 = rdtsc();
  pit_start_periodic(1193);
  /* The loop below halts; without a first tick it would halt for good. */
  sti();
  int routed = rt_wait_ge(&io_ticks, 1, 200);
  cli();
  if (!routed) {
    ioapic_write_rte(IRQ0_IOAPIC_PIN, RTE_MASKED);
    pit_stop();
    rt_fail(
        "no PIT tick on IOAPIC pin %d in 200 ms: ISA IRQ0 is not routed to GSI %d (KVM's "
        "default routing, without QEMU's table, sends GSI 0 to pin 0)",
        IRQ0_IOAPIC_PIN, IRQ0_IOAPIC_PIN);
    return;
  }
  u64 us = take_ticks(&io_ticks, want, khz, "ioapic");
  ioapic_write_rte(IRQ0_IOAPIC_PIN, RTE_MASKED);
  pit_stop();
  sti();
  rt_delay_us(3000);
  cli();
  u64 rate = us ? io_ticks * 1000000 / us : 0;
  rt_printf("ioapic pin %d: ticks=%lu in %lu us (%lu per s)\n", IRQ0_IOAPIC_PIN, io_ticks, us,
            rate);
  CHECK_EQ(ticks - before, 0, "ExtINT ticks with IRQ0 masked at the PIC");
  check_not_more_than_generated(io_ticks, pit_t0, khz, "ioapic");
  CHECK(io_ticks < want || rate >= 50, "IOAPIC tick rate %lu/s far from 1000/s", rate);
}

void guest_main(void) {
  u64 want = rt_cmdline_u64("ticks", 200);
  if (want == 0) want = 1;
  u64 io_want = rt_cmdline_u64("ioapic", 0);
  u64 khz = rt_tsc_khz();
  rt_set_handler(V_PIC_IRQ0, h_tick);
  apic_x2 = 0;
  apic_sw_enable(0xFF);
  apic_write(APIC_LVTT, LVT_MASKED);
  apic_write(APIC_LVT0, LVT_EXTINT); /* unmasked, ExtINT */
  apic_write(APIC_LVT1, LVT_MASKED);
  /* The IOAPIC also sees ISA IRQ0 (on pin 2): keep every pin masked so only ExtINT delivers. */
  ioapic_mask_all();
  pic_init(V_PIC_IRQ0, 0x28, 0xFE, 0xFF);
  u64 pit_t0 = rdtsc();
  pit_start_periodic(1193); /* 1193182 Hz / 1193 = 1000.15 Hz */
  rt_printf("counting %lu PIT ticks (tsc_khz=%lu)\n", want, khz);
  u64 us = take_ticks(&ticks, want, khz, "ExtINT");
  check_not_more_than_generated(ticks, pit_t0, khz, "ExtINT");
  pit_stop();
  u64 rate = us ? ticks * 1000000 / us : 0;
  rt_printf("ticks=%lu in %lu us: %lu ticks/s\n", ticks, us, rate);
  CHECK_EQ(isr_hits, 0, "LAPIC ISR[0x20] set for an ExtINT interrupt");
  /* Nominal 1000/s. Over the counting loop alone a reinjection burst can exceed it, so the upper
   * bound is check_not_more_than_generated(); this lower one only catches a stopped PIT. */
  CHECK(ticks < want || rate >= 50, "tick rate %lu/s far from 1000/s", rate);
  if (io_want) ioapic_phase(io_want, khz);
  /* Masked at the PIC: no more ticks. */
  pic_init(V_PIC_IRQ0, 0x28, 0xFF, 0xFF);
  pit_start_periodic(1193);
  u64 before = ticks;
  rt_delay_us(20000);
  sti();
  rt_delay_us(20000);
  cli();
  pit_stop();
  CHECK_EQ(ticks - before, 0, "ticks with IRQ0 masked at the PIC");
}
