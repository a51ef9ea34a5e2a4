/* Local APIC access for guests: xAPIC MMIO (default base 0xFEE00000) and x2APIC MSRs
 * (0x800 + offset/16), mode transitions through IA32_APIC_BASE, ICR, EOI.
 * SDM vol. 3A 11.4 (APIC base, SVR), 11.6 (ICR), 11.8.5 (EOI), 11.12 (x2APIC).
 * Not supported: mixing xAPIC and x2APIC CPUs while using these helpers (one global mode
 * flag), relocated APIC bases other than through apic_mmio_base. */
#ifndef GUESTS_RT_APIC_H_
#define GUESTS_RT_APIC_H_
#include "rt.h"

#define APIC_ID 0x20
#define APIC_LVR 0x30
#define APIC_TPR 0x80
#define APIC_PPR 0xA0
#define APIC_EOI 0xB0
#define APIC_LDR 0xD0
#define APIC_DFR 0xE0
#define APIC_SVR 0xF0
#define APIC_ISR 0x100
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR 0x300
#define APIC_ICR2 0x310
#define APIC_LVTT 0x320
#define APIC_LVTPC 0x340
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_LVTERR 0x370
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3E0
#define APIC_SELF_IPI 0x3F0

#define MSR_APIC_BASE 0x1B
#define MSR_TSC_DEADLINE 0x6E0
#define APIC_BASE_BSP (1u << 8)
#define APIC_BASE_EXTD (1u << 10)
#define APIC_BASE_EN (1u << 11)

#define ICR_FIXED 0x000
#define ICR_LOWEST 0x100
#define ICR_NMI 0x400
#define ICR_INIT 0x500
#define ICR_STARTUP 0x600
#define ICR_LOGICAL (1u << 11)
#define ICR_BUSY (1u << 12)
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_SELF (1u << 18)
#define ICR_ALL_INC (2u << 18)
#define ICR_ALL_EXC (3u << 18)

#define LVT_MASKED (1u << 16)
#define LVT_EXTINT 0x700
#define LVT_NMI 0x400
#define LVTT_PERIODIC (1u << 17)
#define LVTT_TSC_DEADLINE (2u << 17)

extern volatile int apic_x2; /* the mode every CPU using these helpers is in */
extern u64 apic_mmio_base;

u32 apic_read(u32 reg);
void apic_write(u32 reg, u32 v);
/* Sends an IPI: dest is an 8-bit xAPIC ID/logical mask or a 32-bit x2APIC destination. */
void apic_icr(u32 dest, u32 lo);
static inline void apic_eoi(void) {
  apic_write(APIC_EOI, 0);
}
/* APIC ID in the current mode (xAPIC: bits 31:24 of the ID register). */
u32 apic_id(void);
/* Software-enables the APIC with the given spurious vector, TPR 0. */
void apic_sw_enable(u8 spurious);
/* xAPIC -> x2APIC on the calling CPU (does not touch apic_x2). Returns the #GP vector or -1. */
int apic_set_base_safe(u64 value);
void apic_enable_x2apic_here(void);
/* Bit `vector` of the 256-bit ISR/IRR/TMR at `base` (APIC_ISR...). */
int apic_vec_bit(u32 base, u8 vector);
/* Reads the CPUID APIC ID of the calling CPU (x2APIC ID from leaf 0xB when available). */
u32 cpuid_apic_id(void);

#endif
