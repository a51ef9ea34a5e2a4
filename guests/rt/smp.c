/* AP bring-up and mailbox (see smp.h). SDM vol. 3A 8.4.4.1 (INIT-SIPI-SIPI), 11.6.1 (ICR).
 * Not supported: INIT level de-assert in x2APIC mode (SDM 11.12.9 drops it). */
#include "smp.h"

#include "apic.h"
#include "layout.h"

volatile u64 smp_online;
volatile u32 smp_ap_ids[RT_MAX_CPUS];
volatile u32 rt_ap_next_slot __attribute__((section(".data")));

static smp_ap_init_fn ap_init;
static volatile smp_fn cmd_fn;
static volatile u64 cmd_arg;
static volatile u64 cmd_seq;
static volatile u64 cmd_acks;

extern const char rt_ap_tramp_start[], rt_ap_tramp_end[];

/* An AP can take a wake-up after a command switched it to x2APIC while the global apic_x2 still
 * says xAPIC; the MMIO page is gone in x2APIC mode (SDM vol. 3A 11.12.1.2), an MMIO EOI would be
 * dropped and 0xF0 would stay in service, blocking every later IPI through PPR. So the EOI follows
 * this CPU's own mode. */
static void wake_handler(struct rt_frame* f) {
  (void)f;
#ifdef RT_REVERT_X2APIC_EOI_FIX
  /* Test-only build (smp-eoi-race, tests/explore): the handler before commits d50f271/ea325ec,
   * EOI through the global apic_x2, so the late wake-up race is back for `apicv explore`. */
  apic_eoi();
#else
  if (rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD) {
    wrmsr(0x800 + (APIC_EOI >> 4), 0);
  } else {
    mmio_write32(apic_mmio_base + APIC_EOI, 0);
  }
#endif
}

void smp_set_ap_init(smp_ap_init_fn fn) {
  ap_init = fn;
}

void rt_ap_main(u32 slot);
void rt_ap_main(u32 slot) {
  rt_load_idt();
  if (apic_x2) apic_enable_x2apic_here();
  apic_sw_enable(0xFF);
  u32 id = apic_id();
  if (slot < RT_MAX_CPUS) smp_ap_ids[slot] = id;
  if (ap_init) ap_init(id);
  u64 seen = cmd_seq;
  __atomic_fetch_add(&smp_online, 1, __ATOMIC_RELEASE);
  for (;;) {
    cli();
    u64 s = __atomic_load_n(&cmd_seq, __ATOMIC_ACQUIRE);
    if (s != seen) {
      seen = s;
      cmd_fn(id, cmd_arg);
      __atomic_fetch_add(&cmd_acks, 1, __ATOMIC_RELEASE);
      continue;
    }
    sti_hlt();
  }
}

u64 smp_start_aps(u64 expected, u64 timeout_ms) {
  rt_set_handler(SMP_WAKE_VECTOR, wake_handler);
  smp_online = 0;
  rt_ap_next_slot = 0;
  if (expected == 0) return 0;
  memcpy((void*)(u64)AP_TRAMP_BASE, rt_ap_tramp_start,
         (size_t)(rt_ap_tramp_end - rt_ap_tramp_start));
  barrier();
  apic_icr(0, ICR_ALL_EXC | ICR_INIT | ICR_ASSERT | ICR_LEVEL);
  if (!apic_x2) apic_icr(0, ICR_ALL_EXC | ICR_INIT | ICR_LEVEL);
  rt_delay_us(10000);
  apic_icr(0, ICR_ALL_EXC | ICR_STARTUP | (AP_TRAMP_BASE >> 12));
  rt_delay_us(200);
  apic_icr(0, ICR_ALL_EXC | ICR_STARTUP | (AP_TRAMP_BASE >> 12));
  rt_wait_ge(&smp_online, expected, timeout_ms);
  return smp_online;
}

int smp_run_on_aps(smp_fn fn, u64 arg, u64 timeout_ms) {
  u64 n = smp_online;
  cmd_acks = 0;
  cmd_fn = fn;
  cmd_arg = arg;
  __atomic_fetch_add(&cmd_seq, 1, __ATOMIC_RELEASE);
  apic_icr(0, ICR_ALL_EXC | SMP_WAKE_VECTOR);
  return rt_wait_ge(&cmd_acks, n, timeout_ms);
}
