/* AP bring-up (INIT-SIPI-SIPI, SDM vol. 3A 8.4.4.1 / 11.6.1) and a command mailbox: APs sit in
 * "sti; hlt" and run a function when the BSP posts one and sends SMP_WAKE_VECTOR.
 * Not supported: starting individual APs, APs leaving the idle loop, more than RT_MAX_CPUS. */
#ifndef GUESTS_RT_SMP_H_
#define GUESTS_RT_SMP_H_
#include "rt.h"

#define SMP_WAKE_VECTOR 0xF0

typedef void (*smp_fn)(u32 apic_id, u64 arg);

extern volatile u64 smp_online;              /* APs that reached their idle loop */
extern volatile u32 smp_ap_ids[RT_MAX_CPUS]; /* slot -> APIC ID, slots [0, smp_online) */

/* Starts all APs with a broadcast INIT-SIPI-SIPI; APs enter apic_x2's mode. Returns the
 * number of APs online after waiting up to timeout_ms for `expected` of them. */
u64 smp_start_aps(u64 expected, u64 timeout_ms);
/* Runs fn(apic_id, arg) on every online AP (from its idle loop) and waits for all of them;
 * returns 1 if all acknowledged in time. */
int smp_run_on_aps(smp_fn fn, u64 arg, u64 timeout_ms);
/* Optional per-guest hook, run on each AP after its APIC is enabled, before it is counted: the
 * guest registers it (before smp_start_aps) instead of the runtime calling up into the guest. */
typedef void (*smp_ap_init_fn)(u32 apic_id);
void smp_set_ap_init(smp_ap_init_fn fn);

#endif
