/* Guest "ipi-bench": measurements for `apicv bench ipi`.
 * Default mode: BSP <-> first AP fixed-IPI ping-pong (x2APIC when CPUID.1:ECX[21], else xAPIC),
 * n=N round trips (default 1000); each round trip in TSC ticks is written to port 0x2100.
 * "timer" mode: n=N 100 us one-shot LAPIC timers (TSC-deadline when CPUID.1:ECX[24], else TMICT
 * at KVM's 1 GHz APIC bus); each lateness (handler TSC - due TSC) is written to port 0x2100.
 * TSC rate: tsc_khz= on the command line, else PIT channel 2 calibration.
 * SDM vol. 3A 11.6.1 (ICR), 11.12.9 (x2APIC ICR), 11.5.4 (timer modes).
 * Not supported: more than one responder, samples above 2^32-1 ticks (clamped). */
#include "apic.h"
#include "legacy.h"
#include "rt.h"
#include "smp.h"

const char guest_name[] = "ipi-bench";

#define V_PING 0x50
#define V_PONG 0x51
#define V_TIMER 0x52

static volatile u64 pongs, timer_hits, timer_tsc;
static u32 bsp_id;

static void h_ping(struct rt_frame* f) {
  (void)f;
  apic_icr(bsp_id, V_PONG);
  apic_eoi();
}
static void h_pong(struct rt_frame* f) {
  (void)f;
  pongs++;
  apic_eoi();
}
static void h_timer(struct rt_frame* f) {
  (void)f;
  timer_tsc = rdtsc();
  timer_hits++;
  apic_eoi();
}

static void emit(u64 v, u64* mn, u64* mx, u64* sum) {
  if (v < *mn) *mn = v;
  if (v > *mx) *mx = v;
  *sum += v;
  bench_sample(v > 0xFFFFFFFFul ? 0xFFFFFFFFu : (u32)v);
}

static void bench_timer(u64 n, u64 khz) {
  int tscdl = rt_has_tsc_deadline();
  u64 period = khz / 10; /* 100 us in TSC ticks */
  rt_printf("timer: %lu x 100 us one-shot (%s)\n", n, tscdl ? "TSC-deadline" : "TMICT");
  apic_write(APIC_TDCR, 0xB);
  apic_write(APIC_LVTT, V_TIMER | (tscdl ? LVTT_TSC_DEADLINE : 0));
  u64 mn = ~0ul, mx = 0, sum = 0;
  for (u64 i = 0; i < n; i++) {
    u64 due;
    cli();
    if (tscdl) {
      due = rdtsc() + period;
      wrmsr(MSR_TSC_DEADLINE, due);
    } else {
      due = rdtsc() + period;
      apic_write(APIC_TMICT, 100000);
    }
    while (timer_hits <= i) sti_hlt(), cli();
    emit(timer_tsc > due ? timer_tsc - due : 0, &mn, &mx, &sum);
  }
  apic_write(APIC_LVTT, LVT_MASKED);
  if (n) rt_printf("timer lateness ticks: min %lu avg %lu max %lu\n", mn, sum / n, mx);
}

static void bench_ipi(u64 n, u64 khz) {
  u32 peer = smp_ap_ids[0];
  rt_printf("ipi: %lu round trips BSP %u <-> AP %u (%s)\n", n, bsp_id, peer,
            apic_x2 ? "x2APIC" : "xAPIC");
  u64 mn = ~0ul, mx = 0, sum = 0;
  for (u64 i = 0; i < n; i++) {
    cli();
    u64 t0 = rdtsc();
    apic_icr(peer, V_PING);
    u64 end = t0 + 2000 * khz;
    while (pongs <= i && rdtsc() < end) sti_hlt(), cli();
    u64 t1 = rdtsc();
    if (pongs <= i) {
      rt_fail("no pong for round trip %lu", i);
      return;
    }
    emit(t1 - t0, &mn, &mx, &sum);
  }
  if (n) {
    rt_printf("round trip ticks: min %lu avg %lu max %lu (avg %lu ns)\n", mn, sum / n, mx,
              sum / n * 1000000 / khz);
  }
}

void guest_main(void) {
  u64 n = rt_cmdline_u64("n", 1000);
  u64 khz = rt_tsc_khz();
  rt_printf("tsc_khz=%lu\n", khz);
  rt_set_handler(V_PING, h_ping);
  rt_set_handler(V_PONG, h_pong);
  rt_set_handler(V_TIMER, h_timer);
  apic_x2 = rt_has_x2apic();
  if (apic_x2) apic_enable_x2apic_here();
  apic_sw_enable(0xFF);
  apic_write(APIC_LVT0, LVT_MASKED);
  bsp_id = apic_id();
  if (rt_cmdline_flag("timer")) {
    bench_timer(n, khz);
    return;
  }
  u32 cpus = rt_fwcfg_cpu_count();
  if (cpus < 2) {
    rt_fail("ipi-bench needs 2 vCPUs (fw_cfg reports %u)", cpus);
    return;
  }
  if (smp_start_aps(1, 10000) < 1 || smp_online < 1) {
    rt_fail("AP did not come up");
    return;
  }
  bench_ipi(n, khz);
}
