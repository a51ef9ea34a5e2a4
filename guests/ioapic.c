/* Guest "ioapic": IOAPIC pins driven by the test device (port 0x2000 + N sets ISA IRQ N to
 * !!value, QEMU pc-testdev convention): edge and level delivery, remote IRR set on delivery of a
 * level interrupt and cleared by the LAPIC EOI, re-delivery of a still-asserted level line after
 * EOI, masking (edge lost, level delivered on unmask), and TMR set for level vectors.
 * 82093AA IOAPIC datasheet 3.2.4 (redirection table), SDM vol. 3A 11.8.4 (TMR), 11.8.5 (EOI
 * broadcast to IOAPICs for level vectors). Not supported: active-low pins, logical destinations,
 * the IOAPIC EOI register (version 0x20), directed EOI. */
#include "apic.h"
#include "legacy.h"
#include "rt.h"

const char guest_name[] = "ioapic";

#define PIN_EDGE 10
#define PIN_LEVEL 11
#define V_EDGE 0x60
#define V_LEVEL 0x61

static volatile u64 edge_hits, level_hits;
static volatile u64 tmr_edge, tmr_level, rirr_in_handler, rirr_after_lower;
static volatile int level_lower_on; /* lower the line in the handler from this hit on */

static void h_edge(struct rt_frame* f) {
  (void)f;
  edge_hits++;
  tmr_edge = (u64)apic_vec_bit(APIC_TMR, V_EDGE);
  apic_eoi();
}

static void h_level(struct rt_frame* f) {
  (void)f;
  level_hits++;
  tmr_level = (u64)apic_vec_bit(APIC_TMR, V_LEVEL);
  rirr_in_handler = (ioapic_read_rte(PIN_LEVEL) & RTE_REMOTE_IRR) != 0;
  if ((int)level_hits >= level_lower_on) {
    testdev_set_irq(PIN_LEVEL, 0);
    rirr_after_lower = (ioapic_read_rte(PIN_LEVEL) & RTE_REMOTE_IRR) != 0;
  }
  apic_eoi();
}

static void settle(void) {
  sti();
  rt_delay_us(5000);
  cli();
}

void guest_main(void) {
  rt_tsc_khz();
  rt_set_handler(V_EDGE, h_edge);
  rt_set_handler(V_LEVEL, h_level);
  apic_x2 = 0;
  apic_sw_enable(0xFF);
  apic_write(APIC_LVT0, LVT_MASKED); /* the PIC (all lines masked) must not deliver via ExtINT */
  u32 bsp = apic_id();
  u32 ver = ioapic_read(1);
  rt_printf("IOAPIC version 0x%x, %u pins\n", ver & 0xFF, ioapic_pins());
  CHECK((ver & 0xFF) == 0x11 || (ver & 0xFF) == 0x20, "IOAPIC version 0x%x", ver & 0xFF);
  CHECK(ioapic_pins() >= 16, "only %u redirection entries", ioapic_pins());
  ioapic_mask_all();
  u64 dest = (u64)bsp << 56;
  ioapic_write_rte(PIN_EDGE, dest | V_EDGE);
  CHECK_EQ(ioapic_read_rte(PIN_EDGE), dest | V_EDGE, "RTE readback");

  rt_printf("edge\n");
  testdev_set_irq(PIN_EDGE, 1);
  settle();
  testdev_set_irq(PIN_EDGE, 0);
  CHECK_EQ(edge_hits, 1, "edge interrupts after one rising edge");
  CHECK_EQ(tmr_edge, 0, "TMR bit for an edge vector");
  testdev_set_irq(PIN_EDGE, 1);
  testdev_set_irq(PIN_EDGE, 0);
  settle();
  CHECK_EQ(edge_hits, 2, "edge interrupts after a pulse");
  /* masked edge is lost */
  ioapic_write_rte(PIN_EDGE, dest | V_EDGE | RTE_MASKED);
  testdev_set_irq(PIN_EDGE, 1);
  testdev_set_irq(PIN_EDGE, 0);
  settle();
  ioapic_write_rte(PIN_EDGE, dest | V_EDGE);
  settle();
  CHECK_EQ(edge_hits, 2, "edge interrupts after a masked pulse and unmask");

  rt_printf("level\n");
  level_lower_on = 1;
  ioapic_write_rte(PIN_LEVEL, dest | V_LEVEL | RTE_LEVEL);
  testdev_set_irq(PIN_LEVEL, 1);
  settle();
  CHECK(level_hits >= 1, "no level interrupt");
  rt_check_strict(level_hits, 1, "level interrupts");
  CHECK_EQ(tmr_level, 1, "TMR bit for a level vector");
  rt_check_strict(rirr_in_handler, 1, "remote IRR while the level interrupt is in service");
  rt_check_strict(rirr_after_lower, 1, "remote IRR after lowering the line, before EOI");
  CHECK_EQ(ioapic_read_rte(PIN_LEVEL) & RTE_REMOTE_IRR, 0, "remote IRR after EOI");

  rt_printf("level re-delivery while asserted\n");
  level_hits = 0;
  level_lower_on = 2; /* first EOI with the line still high */
  testdev_set_irq(PIN_LEVEL, 1);
  settle();
  CHECK(level_hits >= 2, "no re-delivery with the line high at EOI");
  rt_check_strict(level_hits, 2, "level interrupts when EOI comes with the line high");
  CHECK_EQ(ioapic_read_rte(PIN_LEVEL) & RTE_REMOTE_IRR, 0, "remote IRR after final EOI");

  rt_printf("level masking\n");
  level_hits = 0;
  level_lower_on = 1;
  ioapic_write_rte(PIN_LEVEL, dest | V_LEVEL | RTE_LEVEL | RTE_MASKED);
  testdev_set_irq(PIN_LEVEL, 1);
  settle();
  CHECK_EQ(level_hits, 0, "level interrupts while masked");
  ioapic_write_rte(PIN_LEVEL, dest | V_LEVEL | RTE_LEVEL);
  settle();
  CHECK(level_hits >= 1, "no delivery on unmask of an asserted level line");
  rt_check_strict(level_hits, 1, "level interrupts on unmask of an asserted line");
  CHECK_EQ(ioapic_read_rte(PIN_LEVEL) & RTE_REMOTE_IRR, 0, "remote IRR at the end");
  testdev_set_irq(PIN_LEVEL, 0);
  ioapic_mask_all();
}
