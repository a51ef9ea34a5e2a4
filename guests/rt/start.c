/* The runtime's top layer: the BSP's C entry (rt_bsp_main, jumped to by entry.S) sets up the
 * runtime and the legacy devices, then runs the guest program. The only runtime file that calls
 * into the guest program; every other runtime file depends only on layers below it
 * (rt <- apic, legacy <- smp <- start; guests/check_layers.sh, the guest_runtime_layers ctest). */
#include "legacy.h"
#include "rt.h"

void rt_bsp_main(void);
void rt_bsp_main(void) {
  rt_boot_cmdline();
  /* A BIOS may have left the PIC at vector base 0x08 with the PIT running (SeaBIOS does):
   * move it away from the exception vectors and mask every line. */
  pic_init(0x20, 0x28, 0xFF, 0xFF);
  rt_boot_idt(guest_name);
  guest_main();
  rt_exit();
}
