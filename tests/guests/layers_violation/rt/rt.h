/* Fixture for guests/check_layers.sh: the guest runtime as it was before issue 11 gave it a
 * direction (rt.c called into legacy.c and into the guest program, which both depend on rt). */
#ifndef FIXTURE_RT_H_
#define FIXTURE_RT_H_
void rt_putc(char c);
#endif
