// Fixture for the layering check's own test: a trace header that includes the virtualization layer.
#pragma once
#include "virt/apicv_vm.h"
