/* Guest "apic": local APIC behaviour on the BSP, first in xAPIC then in x2APIC mode.
 * SDM vol. 3A: 11.4.4 (IA32_APIC_BASE), 11.4.6 (ID), 11.4.8 (version), 11.5.4 (timer,
 * TSC-deadline), 11.8.3.1 (TPR/PPR), 11.8.4-11.8.5 (IRR/ISR, EOI), 11.9 (SVR, spurious),
 * 11.12 (x2APIC: MSR interface, state transitions 11.12.5, LDR 11.12.10.2, SELF IPI 11.12.11),
 * 10.8.6 / 2.5 (CR8 mirrors TPR[7:4]).
 * Not supported: relocating the APIC base, checking reserved-bit #GP on every register, error
 * interrupts (ESR). x2APIC checks print "SKIP" when CPUID.1:ECX[21] is clear. */
#include "apic.h"

#include "rt.h"

const char guest_name[] = "apic";

static volatile u64 hits[256];
static volatile u8 order[16];
static volatile u64 norder;
static volatile int nest_send; /* vector to self-IPI from inside the 0x40 handler */
static volatile u64 isr_seen_0x40_in_0x60;
static volatile u64 ppr_in_0x50;
static volatile u64 timer_tsc;

static void self_ipi(u8 vector) {
  if (apic_x2) {
    wrmsr(0x83F, vector); /* SELF IPI register */
  } else {
    apic_icr(0, ICR_SELF | ICR_FIXED | vector);
  }
}

static void record(u8 v) {
  if (norder < sizeof(order)) order[norder] = v;
  norder++;
  hits[v]++;
}

static void h_generic(struct rt_frame* f) {
  record((u8)f->vector);
  apic_eoi();
}
static void h_0x40(struct rt_frame* f) {
  record((u8)f->vector);
  if (nest_send) {
    self_ipi((u8)nest_send);
    sti(); /* higher class must preempt us now */
    for (int i = 0; i < 1000 && hits[nest_send] == 0; i++) barrier();
    cli();
  }
  apic_eoi();
}
static void h_0x60(struct rt_frame* f) {
  record((u8)f->vector);
  isr_seen_0x40_in_0x60 = (u64)apic_vec_bit(APIC_ISR, 0x40);
  apic_eoi();
}
static void h_0x50(struct rt_frame* f) {
  record((u8)f->vector);
  ppr_in_0x50 = apic_read(APIC_PPR);
  apic_eoi();
}
static void h_timer(struct rt_frame* f) {
  timer_tsc = rdtsc();
  record((u8)f->vector);
  apic_eoi();
}

static void reset_records(void) {
  for (int i = 0; i < 256; i++) hits[i] = 0;
  norder = 0;
  order[0] = order[1] = 0;
}

/* Lets pending interrupts in, for a bounded time. */
static void open_window_ms(u64 ms) {
  u64 end = rdtsc() + ms * rt_tsc_khz();
  sti();
  while (rdtsc() < end) barrier();
  cli();
}

static void test_registers(const char* mode) {
  rt_printf("[%s] registers\n", mode);
  u32 lvr = apic_read(APIC_LVR);
  CHECK((lvr & 0xFF) >= 0x10 && (lvr & 0xFF) <= 0x15, "%s: version 0x%x not an integrated APIC",
        mode, lvr);
  CHECK(((lvr >> 16) & 0xFF) >= 4, "%s: max LVT entry %u < 4", mode, (lvr >> 16) & 0xFF);
  CHECK_EQ(apic_id(), cpuid_apic_id() & (apic_x2 ? 0xFFFFFFFFu : 0xFFu), "APIC ID vs CPUID");
  apic_write(APIC_TPR, 0xFF);
  CHECK_EQ(apic_read(APIC_TPR), 0xFF, "TPR readback");
  apic_write(APIC_TPR, 0);
  apic_write(APIC_SVR, 0x1FF);
  CHECK_EQ(apic_read(APIC_SVR) & 0x1FF, 0x1FF, "SVR readback");
  /* Software disable forces every LVT mask bit and keeps it set (SDM 11.4.7.2). */
  apic_write(APIC_LVTT, 0x70);
  apic_write(APIC_SVR, 0x0FF);
  CHECK(apic_read(APIC_LVTT) & LVT_MASKED, "%s: LVTT not masked when software-disabled", mode);
  apic_write(APIC_LVTT, 0x70);
  CHECK(apic_read(APIC_LVTT) & LVT_MASKED, "%s: LVTT unmasked while software-disabled", mode);
  apic_write(APIC_SVR, 0x1FF);
  apic_write(APIC_LVTT, 0x70);
  CHECK_EQ(apic_read(APIC_LVTT), 0x70, "LVTT readback when enabled");
  apic_write(APIC_LVTT, LVT_MASKED);
  apic_write(APIC_TDCR, 0xB);
  CHECK_EQ(apic_read(APIC_TDCR) & 0xB, 0xB, "TDCR readback");
}

static void test_tpr_ppr(const char* mode) {
  rt_printf("[%s] TPR/PPR masking\n", mode);
  reset_records();
  apic_write(APIC_TPR, 0x20);
  self_ipi(0x25); /* class 2 <= TPR class 2: held in IRR */
  open_window_ms(20);
  CHECK_EQ(hits[0x25], 0, "vector 0x25 delivered with TPR 0x20");
  CHECK_EQ(apic_vec_bit(APIC_IRR, 0x25), 1, "IRR bit of masked 0x25");
  CHECK_EQ(apic_read(APIC_PPR) & 0xF0, 0x20, "PPR follows TPR");
  apic_write(APIC_TPR, 0x10);
  open_window_ms(20);
  CHECK_EQ(hits[0x25], 1, "vector 0x25 after lowering TPR");
  CHECK_EQ(apic_vec_bit(APIC_IRR, 0x25), 0, "IRR bit after delivery");
  /* CR8 is TPR[7:4] (64-bit mode). */
  write_cr8(3);
  CHECK_EQ(apic_read(APIC_TPR) & 0xF0, 0x30, "TPR after CR8=3");
  apic_write(APIC_TPR, 0x50);
  CHECK_EQ(read_cr8(), 5, "CR8 after TPR=0x50");
  self_ipi(0x45);
  open_window_ms(20);
  CHECK_EQ(hits[0x45], 0, "vector 0x45 delivered with CR8=5");
  write_cr8(0);
  open_window_ms(20);
  CHECK_EQ(hits[0x45], 1, "vector 0x45 after CR8=0");
  /* PPR while servicing 0x50 with TPR 0: ISRV class. */
  apic_write(APIC_TPR, 0);
  self_ipi(0x50);
  open_window_ms(20);
  CHECK_EQ(hits[0x50], 1, "vector 0x50 delivered");
  rt_check_strict(ppr_in_0x50 & 0xF0, 0x50, "PPR inside 0x50 handler");
}

static void test_eoi_order(const char* mode) {
  rt_printf("[%s] priority and EOI order\n", mode);
  reset_records();
  nest_send = 0;
  self_ipi(0x40);
  self_ipi(0x60);
  CHECK_EQ(apic_vec_bit(APIC_IRR, 0x40) + apic_vec_bit(APIC_IRR, 0x60), 2, "both pending in IRR");
  open_window_ms(20);
  CHECK(norder == 2 && order[0] == 0x60 && order[1] == 0x40,
        "%s: pending 0x40+0x60 delivered as %lu: 0x%x 0x%x (want 0x60 0x40)", mode, norder,
        order[0], order[1]);
  /* Nesting: 0x60 preempts the 0x40 handler; its EOI clears only the highest ISR bit. */
  reset_records();
  isr_seen_0x40_in_0x60 = 0;
  nest_send = 0x60;
  self_ipi(0x40);
  open_window_ms(20);
  nest_send = 0;
  CHECK(norder == 2 && order[0] == 0x40 && order[1] == 0x60,
        "%s: nested delivery order 0x%x 0x%x (want 0x40 0x60)", mode, order[0], order[1]);
  rt_check_strict(isr_seen_0x40_in_0x60, 1, "ISR[0x40] while nested 0x60 runs");
  CHECK_EQ(apic_vec_bit(APIC_ISR, 0x40) | apic_vec_bit(APIC_ISR, 0x60), 0, "ISR empty after EOIs");
  /* A lower class does not preempt: 0x30 sent from inside 0x40 waits for its EOI. */
  reset_records();
  nest_send = 0x30;
  self_ipi(0x40);
  /* 0x30 arrives at the first window after 0x40's EOI; on an emulating host the handler's spin
   * alone can take several ms, so wait long enough for that window. */
  open_window_ms(50);
  nest_send = 0;
  CHECK(norder == 2 && order[0] == 0x40 && order[1] == 0x30,
        "%s: lower vector order (%lu delivered) 0x%x 0x%x (want 0x40 0x30)", mode, norder,
        order[0], order[1]);
}

static void test_timers(const char* mode) {
  rt_printf("[%s] timers\n", mode);
  u64 khz = rt_tsc_khz();
  reset_records();
  /* One-shot, divide by 1, 200 us at the 1 GHz bus clock KVM models (any rate must fire). */
  apic_write(APIC_TDCR, 0xB);
  apic_write(APIC_LVTT, 0x70);
  apic_write(APIC_TMICT, 200000);
  u32 cc = apic_read(APIC_TMCCT);
  /* 0 is right only if the timer already expired (a descheduled vCPU thread on a loaded host):
   * then its vector is pending or was taken. */
  CHECK((cc > 0 && cc <= 200000) ||
            (cc == 0 && (apic_vec_bit(APIC_IRR, 0x70) || hits[0x70] > 0)),
        "%s: one-shot TMCCT 0x%x out of range", mode, cc);
  rt_wait_ge(&hits[0x70], 1, 2000);
  open_window_ms(20);
  cli();
  CHECK_EQ(hits[0x70], 1, "one-shot timer interrupts");
  CHECK_EQ(apic_read(APIC_TMCCT), 0, "TMCCT after one-shot expiry");
  /* Periodic: at least 5 ticks, and none after TMICT = 0 stops it. */
  reset_records();
  apic_write(APIC_LVTT, 0x71 | LVTT_PERIODIC);
  apic_write(APIC_TMICT, 500000);
  CHECK(rt_wait_ge(&hits[0x71], 5, 3000), "%s: periodic timer gave %lu ticks", mode, hits[0x71]);
  cli();
  apic_write(APIC_TMICT, 0);
  u64 n = hits[0x71];
  open_window_ms(20);
  CHECK_EQ(hits[0x71] - n > 1, 0, "periodic ticks after stop");
  apic_write(APIC_LVTT, LVT_MASKED);
  /* Masked one-shot: counts down but never interrupts. */
  reset_records();
  apic_write(APIC_LVTT, 0x72 | LVT_MASKED);
  apic_write(APIC_TMICT, 100000);
  open_window_ms(20);
  CHECK_EQ(hits[0x72], 0, "masked one-shot delivered");
  if (!rt_has_tsc_deadline()) {
    rt_printf("SKIP: [%s] TSC-deadline timer (CPUID.1:ECX[24] clear)\n", mode);
    return;
  }
  reset_records();
  apic_write(APIC_LVTT, 0x73 | LVTT_TSC_DEADLINE);
  apic_write(APIC_TMICT, 12345); /* ignored in TSC-deadline mode */
  CHECK_EQ(apic_read(APIC_TMICT), 0, "TMICT write in TSC-deadline mode");
  u64 deadline = rdtsc() + khz / 2; /* 500 us */
  wrmsr(MSR_TSC_DEADLINE, deadline);
  CHECK(rt_wait_ge(&hits[0x73], 1, 2000), "%s: TSC-deadline timer did not fire", mode);
  cli();
  CHECK(timer_tsc >= deadline, "%s: TSC-deadline fired %lu ticks early", mode,
        deadline - timer_tsc);
  CHECK_EQ(rdmsr(MSR_TSC_DEADLINE), 0, "IA32_TSC_DEADLINE after firing");
  /* Disarm by writing 0. */
  wrmsr(MSR_TSC_DEADLINE, rdtsc() + khz);
  wrmsr(MSR_TSC_DEADLINE, 0);
  open_window_ms(3);
  CHECK_EQ(hits[0x73], 1, "TSC-deadline fired after disarm");
  apic_write(APIC_LVTT, LVT_MASKED);
}

static void run_all(const char* mode) {
  test_registers(mode);
  test_tpr_ppr(mode);
  test_eoi_order(mode);
  test_timers(mode);
}

static void test_x2apic(void) {
  if (!rt_has_x2apic()) {
    rt_printf("SKIP: x2APIC tests (CPUID.1:ECX[21] clear)\n");
    return;
  }
  rt_printf("[x2apic] IA32_APIC_BASE transitions\n");
  u64 base = rdmsr(MSR_APIC_BASE) & ~(u64)(APIC_BASE_EN | APIC_BASE_EXTD);
  /* Reserved bit 9 set: #GP. */
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN | (1u << 9)), 13, "#GP for APIC_BASE bit 9");
  /* EXTD without EN is an invalid state: #GP. */
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EXTD), 13, "#GP for EXTD without EN");
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN | APIC_BASE_EXTD), -1, "xAPIC -> x2APIC");
  apic_x2 = 1;
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN), 13, "#GP for x2APIC -> xAPIC");
  CHECK_EQ(apic_set_base_safe(base), -1, "x2APIC -> disabled");
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN | APIC_BASE_EXTD), 13,
           "#GP for disabled -> x2APIC");
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN), -1, "disabled -> xAPIC");
  CHECK_EQ(apic_set_base_safe(base | APIC_BASE_EN | APIC_BASE_EXTD), -1, "xAPIC -> x2APIC again");
  CHECK_EQ(rdmsr(MSR_APIC_BASE) & (APIC_BASE_EN | APIC_BASE_EXTD), APIC_BASE_EN | APIC_BASE_EXTD,
           "APIC_BASE mode bits in x2APIC");
  apic_sw_enable(0xFF);
  rt_printf("[x2apic] MSR interface\n");
  u32 id = apic_id();
  CHECK_EQ(id, cpuid_apic_id(), "x2APIC ID vs CPUID.0xB");
  CHECK_EQ(apic_read(APIC_LDR), ((id >> 4) << 16) | (1u << (id & 0xF)),
           "x2APIC LDR derived from ID");
  u64 v;
  CHECK_EQ(wrmsr_safe(0x80D, 0), 13, "#GP on write to read-only LDR");
  CHECK_EQ(rdmsr_safe(0x80E, &v), 13, "#GP on read of DFR (absent in x2APIC)");
  CHECK_EQ(rdmsr_safe(0x831, &v), 13, "#GP on read of ICR2 (absent in x2APIC)");
  CHECK_EQ(wrmsr_safe(0x808, 1ul << 32), 13, "#GP on TPR write with bits 63:32 set");
  run_all("x2apic");
}

void guest_main(void) {
  for (int v = 0x20; v < 0xFF; v++) rt_set_handler((u8)v, h_generic);
  rt_set_handler(0x40, h_0x40);
  rt_set_handler(0x50, h_0x50);
  rt_set_handler(0x60, h_0x60);
  for (int v = 0x70; v < 0x74; v++) rt_set_handler((u8)v, h_timer);
  rt_tsc_khz();

  rt_printf("[xapic] IA32_APIC_BASE\n");
  u64 b = rdmsr(MSR_APIC_BASE);
  CHECK(b & APIC_BASE_BSP, "BSP flag clear in IA32_APIC_BASE 0x%lx", b);
  CHECK(b & APIC_BASE_EN, "APIC globally disabled at boot: 0x%lx", b);
  CHECK_EQ(b & 0xFFFFF000ul, 0xFEE00000ul, "APIC base address");
  if (b & APIC_BASE_EXTD) {
    rt_printf("note: booted in x2APIC mode; going through disabled to xAPIC\n");
    wrmsr(MSR_APIC_BASE, b & ~(u64)(APIC_BASE_EN | APIC_BASE_EXTD));
    wrmsr(MSR_APIC_BASE, (b & ~(u64)APIC_BASE_EXTD) | APIC_BASE_EN);
  }
  apic_x2 = 0;
  apic_sw_enable(0xFF);
  apic_write(APIC_LVT0, LVT_MASKED);
  apic_write(APIC_LVT1, LVT_MASKED);
  run_all("xapic");
  test_x2apic();
}
