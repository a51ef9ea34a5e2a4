/* Fixture: rt calls down into legacy and up into the guest program (both depend on rt). */
#include "rt.h"

#include "legacy.h"

void guest_main(void);
void rt_bsp_main(void);

void rt_putc(char c) {
  (void)c;
}

void rt_bsp_main(void) {
  pic_init();
  guest_main();
}
