/* Fixture: a device layer above rt that rt.c includes back (an include cycle). */
#ifndef FIXTURE_LEGACY_H_
#define FIXTURE_LEGACY_H_
#include "rt.h"
void pic_init(void);
#endif
