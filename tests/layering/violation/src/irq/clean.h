// Fixture for the layering check's own test: an irq header with only downward includes.
#pragma once
#include "x86/interrupt.h"
