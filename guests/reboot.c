/* Guest "reboot" (seed 004): first boot enables x2APIC and resets the machine through 0xCF9
 * (falling back to the keyboard controller, 0x64 <- 0xFE); the second boot must find the APIC
 * in xAPIC mode (reset state, SDM vol. 3A 11.4.7.1 / 11.12.5: RESET puts the APIC in xAPIC mode
 * with base 0xFEE00000) and takes LAPIC timer and self-IPI interrupts there.
 * The boot count survives the reset in RAM at REBOOT_MAGIC_ADDR (0x90000): the host must not
 * clear guest RAM on reset (QEMU does not; reloading the image is fine, the page is outside it).
 * Not supported: detecting a host that wipes RAM on reset (the guest would reboot forever and
 * the test time out). */
#include "apic.h"
#include "layout.h"
#include "rt.h"
#include "smp.h"

const char guest_name[] = "reboot";

#define MAGIC 0x5245424F4F543031ul /* "REBOOT01" */

static volatile u64 timer_ticks, ipis;

static void h_timer(struct rt_frame* f) {
  (void)f;
  timer_ticks++;
  apic_eoi();
}
static void h_ipi(struct rt_frame* f) {
  (void)f;
  ipis++;
  apic_eoi();
}

static void first_boot(volatile u64* magic) {
  rt_printf("boot 1: enabling x2APIC, then reset\n");
  if (rt_has_x2apic()) {
    apic_enable_x2apic_here();
    apic_x2 = 1;
    apic_sw_enable(0xFF);
    CHECK_EQ(rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD, APIC_BASE_EXTD, "x2APIC enabled before reset");
    /* As a Linux guest does: every AP comes up in x2APIC mode too (seed 004 needs vCPUs other
     * than 0 in x2APIC mode at the reset). */
    u32 ncpus = rt_fwcfg_cpu_count();
    if (ncpus > 1) {
      u64 online = smp_start_aps(ncpus - 1, 10000 + 200 * (u64)ncpus);
      CHECK_EQ(online, (u64)(ncpus - 1), "APs online in x2APIC mode before reset");
    }
  } else {
    rt_printf("SKIP: x2APIC (CPUID.1:ECX[21] clear); resetting from xAPIC mode\n");
  }
  if (rt_failures()) return;
  *magic = MAGIC;
  outb(0xCF9, 0x02);
  outb(0xCF9, 0x06); /* hard reset */
  rt_delay_us(100000);
  outb(0x64, 0xFE); /* keyboard controller pulse reset line */
  rt_delay_us(100000);
  *magic = 0;
  rt_fail("still running after reset requests to 0xCF9 and 0x64");
}

static void second_boot(void) {
  rt_printf("boot 2: checking xAPIC mode after reset\n");
  u64 b = rdmsr(MSR_APIC_BASE);
  CHECK_EQ(b & (APIC_BASE_EN | APIC_BASE_EXTD), APIC_BASE_EN, "APIC_BASE EN/EXTD after reset");
  CHECK_EQ(b & 0xFFFFF000ul, 0xFEE00000ul, "APIC base after reset");
  CHECK(b & APIC_BASE_BSP, "BSP flag after reset");
  if (b & APIC_BASE_EXTD) return; /* xAPIC MMIO would not decode */
  apic_x2 = 0;
  apic_sw_enable(0xFF);
  u32 lvr = apic_read(APIC_LVR);
  CHECK((lvr & 0xFF) >= 0x10 && (lvr & 0xFF) <= 0x15, "xAPIC version 0x%x after reset", lvr);
  CHECK_EQ(apic_id(), cpuid_apic_id() & 0xFF, "xAPIC ID after reset");
  u64 want = rt_cmdline_u64("ticks", 100);
  rt_set_handler(0x30, h_timer);
  rt_set_handler(0x31, h_ipi);
  apic_write(APIC_TDCR, 0xB);
  apic_write(APIC_LVTT, 0x30 | LVTT_PERIODIC);
  apic_write(APIC_TMICT, 1000000); /* 1 ms at KVM's 1 GHz APIC bus */
  u64 sent = 0, last = ~0ul;
  u64 t0 = rdtsc();
  u64 deadline = t0 + (want * 50 + 5000) * rt_tsc_khz();
  while (timer_ticks < want && rdtsc() < deadline) {
    if (timer_ticks != last) { /* one self-IPI per tick */
      last = timer_ticks;
      apic_icr(0, ICR_SELF | 0x31);
      sent++;
    }
    sti_hlt();
    cli();
  }
  u64 us = (rdtsc() - t0) * 1000 / rt_tsc_khz();
  apic_write(APIC_TMICT, 0);
  apic_write(APIC_LVTT, LVT_MASKED);
  sti();
  rt_delay_us(2000);
  cli();
  /* The rate is the progress figure `apicv repro seed-004` reports (LAPIC timer ticks per
   * second after the reboot, nominally 1000). */
  rt_printf("xAPIC after reset: %lu timer ticks, %lu/%lu self-IPIs in %lu us: %lu ticks/s\n",
            timer_ticks, ipis, sent, us, us ? timer_ticks * 1000000 / us : 0);
  CHECK(timer_ticks >= want, "only %lu LAPIC timer ticks", timer_ticks);
  CHECK_EQ(ipis, sent, "self-IPIs delivered");
}

void guest_main(void) {
  volatile u64* magic = (volatile u64*)(u64)REBOOT_MAGIC_ADDR;
  if (*magic == MAGIC) {
    *magic = 0;
    second_boot();
  } else {
    first_boot(magic);
  }
}
