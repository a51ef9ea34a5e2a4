/* Guest "pmu": counter overflows of "instructions retired" delivered as NMIs through LVTPC.
 * Default mode (seed 002): one overflow; counts the PMIs it produces (KVM delivered two before
 * 73554b29bd70) and whether LVTPC was masked when the PMI arrived (a16eb25b09c0).
 * "rounds=R" (PMI-heavy mode, `apicv bench pmi`): PMC0 re-armed at -n in the PMI handler, R
 * overflows in a row; prints overflows, PMIs and the TSC ticks the port-write loop took.
 * Intel SDM vol. 2A CPUID leaf 0AH; vol. 3B 20.2.1-20.2.2 (architectural PMU v1/v2:
 * IA32_PERFEVTSELx, IA32_PMCx and their 32-bit sign-extended writes,
 * IA32_PERF_GLOBAL_STATUS/CTRL/OVF_CTRL), 20.6.3.5.8 / 3A 11.5.1 (LVT performance counter
 * register, NMI delivery mode).
 * Reads CPUID leaf 0AH first: when it advertises an architectural PMU, the version must be >= 2,
 * there must be a GP counter of the 48 bits this guest assumes, and "instructions retired" must be
 * available, else the guest fails; a leaf reporting version 0 (no vPMU advertised) fails too.
 * How many instructions a port-write iteration retires depends on who counts: apicv's vPMU under
 * KVM sees only the instructions it emulates (port I/O, MSR, MMIO, HLT: kvm_pmu_trigger_event()),
 * one per iteration; under -accel emu (and on hardware) every instruction counts, the loop's own
 * and the PMI handler's. So the guest first measures the rate R (counted instructions per
 * iteration, PMC0 enabled without INT over CALIBRATE_ITERS iterations) and arms PMC0 at -(n * R):
 * the overflow then comes after about n port writes under either, which is checked.
 * Not supported: fixed counters, AMD PMUs. */
#include "apic.h"
#include "rt.h"

const char guest_name[] = "pmu";

#define MSR_PMC0 0xC1
#define MSR_PERFEVTSEL0 0x186
#define MSR_GLOBAL_STATUS 0x38E
#define MSR_GLOBAL_CTRL 0x38F
#define MSR_GLOBAL_OVF_CTRL 0x390

#define EVTSEL_INST_RETIRED 0xC0 /* event 0xC0, umask 0 */
#define EVTSEL_USR (1u << 16)
#define EVTSEL_OS (1u << 17)
#define EVTSEL_INT (1u << 20)
#define EVTSEL_EN (1u << 22)

#define PMC_MASK ((1ul << 48) - 1) /* counter width the host advertises */

#define CPUID_A_INST_RETIRED_NA (1u << 1) /* EBX bit 1: instructions retired unavailable */

static volatile u64 pmis;
static volatile u64 lvtpc_first; /* LVTPC as the first PMI handler found it */
static volatile u64 status_seen;
static volatile u64 outs_done; /* port writes completed by the main loop */
static volatile u64 outs_at_first_pmi;

#define CALIBRATE_ITERS 64

/* The measured and the armed loop: port 0x80 is unclaimed, each write exits to the hypervisor.
 * One function so that both retire the same instructions per iteration. */
static __attribute__((noinline)) void port_writes(u64 count) {
  for (u64 i = 0; i < count; i++) {
    outb(0x80, (u8)i);
    outs_done = i + 1;
  }
}

/* PMC0 (no INT) over port_writes(count), from the enabling WRMSR to the disabling one. */
static u64 count_port_writes(u64 count) {
  wrmsr(MSR_PERFEVTSEL0, 0);
  wrmsr(MSR_PMC0, 0);
  wrmsr(MSR_PERFEVTSEL0, EVTSEL_INST_RETIRED | EVTSEL_USR | EVTSEL_OS | EVTSEL_EN);
  wrmsr(MSR_GLOBAL_CTRL, 1);
  port_writes(count);
  wrmsr(MSR_GLOBAL_CTRL, 0);
  u64 counted = rdmsr(MSR_PMC0) & PMC_MASK;
  wrmsr(MSR_PERFEVTSEL0, 0);
  wrmsr(MSR_PMC0, 0);
  return counted;
}

/* Counted instructions per port_writes() iteration (1 when only exits count, the loop's length
 * when every instruction does) and the fixed cost around the loop (enabling WRMSR, call, return),
 * from two lengths. Returns 0 when PMC0 did not count linearly. */
static u64 instructions_per_write(u64* overhead) {
  u64 c1 = count_port_writes(CALIBRATE_ITERS);
  u64 c2 = count_port_writes(2 * CALIBRATE_ITERS);
  if (c2 <= c1 || (c2 - c1) % CALIBRATE_ITERS != 0 || c1 < (c2 - c1)) {
    rt_printf("PMC0 counted %lu over %u port writes and %lu over %u\n", c1, CALIBRATE_ITERS, c2,
              2 * CALIBRATE_ITERS);
    return 0;
  }
  u64 rate = (c2 - c1) / CALIBRATE_ITERS;
  *overhead = c1 - CALIBRATE_ITERS * rate;
  rt_printf("PMC0 counts %lu instruction(s) per port write, %lu around the loop\n", rate,
            *overhead);
  return rate;
}

/* Every access here exits to the hypervisor, so the handler is kept to four of them. It acks as
 * Linux's intel_pmu_handle_irq does: read status, clear it through OVF_CTRL, re-arm LVTPC. */
static void h_nmi(struct rt_frame* f) {
  (void)f;
  u32 lvtpc = apic_read(APIC_LVTPC);
  u64 status = rdmsr(MSR_GLOBAL_STATUS);
  if (pmis == 0) {
    lvtpc_first = lvtpc;
    outs_at_first_pmi = outs_done;
  }
  if (status & 1) {
    status_seen = 1;
    wrmsr(MSR_GLOBAL_OVF_CTRL, 1);
  }
  pmis++;
  apic_write(APIC_LVTPC, LVT_NMI); /* unmasks */
}

/* PMI-heavy mode state. */
static volatile u64 heavy_period;
static volatile u64 heavy_overflows; /* handler runs that found GLOBAL_STATUS bit 0 set */

/* PMI-heavy handler: ack, re-arm the period, unmask. Its own MSR/APIC accesses retire emulated
 * instructions too; the re-arm comes after the status accesses so the period starts there. */
static void h_nmi_heavy(struct rt_frame* f) {
  (void)f;
  u64 status = rdmsr(MSR_GLOBAL_STATUS);
  if (status & 1) {
    wrmsr(MSR_GLOBAL_OVF_CTRL, 1);
    wrmsr(MSR_PMC0, (u32)(0u - (u32)heavy_period));
    heavy_overflows++;
  }
  pmis++;
  apic_write(APIC_LVTPC, LVT_NMI); /* unmasks */
}

/* CPUID leaf 0AH against what this guest uses (PMC0, 48 bits, v2 global MSRs, event C0H).
 * Returns 0 when the guest must stop. */
static int check_cpuid_leaf_a(void) {
  u32 a, b, c, d;
  cpuid(0, 0, &a, &b, &c, &d);
  if (a < 0xA) {
    rt_printf("NOTE: CPUID max basic leaf 0x%x: no leaf 0AH\n", a);
    return 1;
  }
  cpuid(0xA, 0, &a, &b, &c, &d);
  u32 version = a & 0xFF, gp = (a >> 8) & 0xFF, width = (a >> 16) & 0xFF, ebx_len = a >> 24;
  rt_printf("CPUID.0AH: version %u, %u GP counters of %u bits, %u fixed of %u bits, EBX 0x%x\n",
            version, gp, width, d & 0x1F, (d >> 5) & 0xFF, b);
  if (version == 0) {
    rt_fail(
        "CPUID.0AH advertises no architectural PMU (version 0); this guest needs apicv's"
        " Intel-compatible vPMU (--irqchip apicv)");
    return 0;
  }
  if (version < 2 || gp < 1 || width != 48) {
    rt_fail(
        "CPUID.0AH (v%u, %u GP x %u bits) disagrees with the v2 PMU, PMC0 and 48-bit width"
        " this guest uses",
        version, gp, width);
    return 0;
  }
  if (ebx_len < 2 || (b & CPUID_A_INST_RETIRED_NA)) {
    rt_fail("CPUID.0AH:EBX says \"instructions retired\" is unavailable (EBX 0x%x, length %u)", b,
            ebx_len);
    return 0;
  }
  return 1;
}

/* R overflows of a period of about n port writes (n * rate counted instructions); the bench
 * compares host and guest counts. */
static void pmi_heavy(u64 n, u64 rate, u64 rounds) {
  heavy_period = n * rate;
  rt_set_handler(2, h_nmi_heavy);
  wrmsr(MSR_PERFEVTSEL0, 0);
  wrmsr(MSR_GLOBAL_OVF_CTRL, 1);
  apic_write(APIC_LVTPC, LVT_NMI);
  wrmsr(MSR_PMC0, (u32)(0u - (u32)heavy_period));
  wrmsr(MSR_PERFEVTSEL0, EVTSEL_INST_RETIRED | EVTSEL_USR | EVTSEL_OS | EVTSEL_INT | EVTSEL_EN);

  /* Bounded: a PMU that never overflows ends the loop after twice the expected writes. */
  const u64 limit = 2 * rounds * (n + 64);
  u64 writes = 0;
  u64 t0 = rdtsc();
  wrmsr(MSR_GLOBAL_CTRL, 1);
  while (heavy_overflows < rounds && writes < limit) {
    outb(0x80, (u8)writes);
    writes++;
  }
  wrmsr(MSR_GLOBAL_CTRL, 0);
  u64 t1 = rdtsc();
  /* A legacy second PMI for the last overflow arrives after the first handler's IRET. */
  for (u64 i = 0; i < 64; i++) outb(0x80, (u8)i);
  wrmsr(MSR_PERFEVTSEL0, 0);

  rt_printf("pmi-heavy: period %lu, overflows %lu, PMIs %lu\n", n, heavy_overflows, pmis);
  rt_printf("pmi-heavy: exit loop %lu port writes in %lu TSC ticks\n", writes, t1 - t0);
  CHECK(heavy_overflows == rounds, "%lu of %lu overflows after %lu port writes", heavy_overflows,
        rounds, writes);
  CHECK(pmis >= heavy_overflows, "fewer PMIs (%lu) than overflows (%lu)", pmis, heavy_overflows);
}

void guest_main(void) {
  u64 n = rt_cmdline_u64("n", 16);
  if (n < 2 || n > 1000000) n = 16;
  u64 rounds = rt_cmdline_u64("rounds", 0);
  if (rounds > 100000) rounds = 100000;

  if (rt_has_x2apic()) {
    apic_enable_x2apic_here();
    apic_x2 = 1;
  }
  apic_sw_enable(0xFF);
  rt_set_handler(2, h_nmi);

  /* Only probe with the safe accessor: an NMI must not land inside its fixup window, and none
   * can while nothing is armed. */
  if (wrmsr_safe(MSR_GLOBAL_CTRL, 0) >= 0) {
    rt_fail("IA32_PERF_GLOBAL_CTRL write faults: no architectural PMU v2");
    return;
  }
  if (!check_cpuid_leaf_a()) return;
  u64 overhead = 0;
  const u64 rate = instructions_per_write(&overhead);
  if (rate == 0) {
    rt_fail("PMC0 (instructions retired) did not count a fixed number per port write");
    return;
  }
  if (rounds > 0) {
    pmi_heavy(n, rate, rounds);
    return;
  }
  const u64 period = n * rate;
  wrmsr(MSR_PERFEVTSEL0, 0);
  wrmsr(MSR_GLOBAL_OVF_CTRL, 1);
  apic_write(APIC_LVTPC, LVT_NMI);
  /* A legacy IA32_PMCx write takes bits 31:0 sign-extended to the counter width. */
  wrmsr(MSR_PMC0, (u32)(0u - (u32)period));
  CHECK_EQ(rdmsr(MSR_PMC0), (0ul - period) & PMC_MASK, "IA32_PMC0 after writing -period");
  CHECK_EQ(rdmsr(MSR_GLOBAL_STATUS) & 1, 0, "GLOBAL_STATUS bit 0 before arming");
  wrmsr(MSR_PERFEVTSEL0, EVTSEL_INST_RETIRED | EVTSEL_USR | EVTSEL_OS | EVTSEL_INT | EVTSEL_EN);
  wrmsr(MSR_GLOBAL_CTRL, 1);

  /* The 64 writes beyond n leave room for a second (legacy) PMI, which arrives only after the
   * first handler's IRET. */
  outs_done = 0;
  port_writes(n + 64);

  wrmsr(MSR_GLOBAL_CTRL, 0);
  wrmsr(MSR_PERFEVTSEL0, 0);
  if (pmis == 0) lvtpc_first = apic_read(APIC_LVTPC);

  if (pmis != 0) {
    /* Part of the measured overhead (the enabling WRMSR, the call) retires before the first
     * write, and the PMI comes after the overflowing instruction, before or after that
     * iteration's store: between n - 1 - ceil(overhead / rate) and n writes. */
    u64 k = outs_at_first_pmi;
    u64 lo = n - 1 - (overhead + rate - 1) / rate;
    if (lo > n) lo = 0;
    rt_printf("first PMI after %lu port writes (counter armed at -%lu = -%lu x %lu)\n", k, period,
              n, rate);
    CHECK(k >= lo && k <= n, "first PMI after %lu port writes, expected %lu..%lu", k, lo, n);
  }
  rt_printf("PMIs per overflow: %lu\n", pmis);
  rt_printf("LVTPC masked after PMI: %s\n", (lvtpc_first & LVT_MASKED) ? "yes" : "no");
  rt_printf("GLOBAL_STATUS bit 0 seen: %s\n", status_seen ? "yes" : "no");
  CHECK(pmis >= 1, "no PMI arrived after %lu port writes with PMC0 armed at -%lu", n + 64, n);
  CHECK(status_seen, "the PMI handler never saw IA32_PERF_GLOBAL_STATUS bit 0");
}
