/* Fixed guest-physical layout shared by entry.S and C. Multiboot loaders (QEMU's, apicv's)
 * place the info block and command line low (QEMU: 0x9000); these areas avoid it. */
#ifndef GUESTS_RT_LAYOUT_H_
#define GUESTS_RT_LAYOUT_H_
#define BSP_STACK_SIZE 0x4000
#define AP_TRAMP_BASE 0x8000 /* SIPI vector 0x08 */
#define AP_STACK_BASE 0x400000
#define AP_STACK_SIZE 0x2000 /* RT_MAX_CPUS (1024) slots end at 0xC00000: guests need >= 16 MiB */
#define REBOOT_MAGIC_ADDR 0x90000
#endif
