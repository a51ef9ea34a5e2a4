// The CPUID leaves of apicv's software CPU (src/cpu): exactly what it implements, as the base set
// that platform::ApicvCpuid() then patches with apicv's own leaves (x2APIC, TSC-deadline, APIC
// IDs, the vPMU). Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E.
// Not advertised (the CPU raises #UD or #GP for them): x87/FPU, MMX, SSE and later, XSAVE,
// SYSENTER, MONITOR/MWAIT, VMX/SVM, PCID, SMEP/SMAP/UMIP, FSGSBASE, LA57, TSX, RDRAND.
#pragma once

#include <vector>

#include "cpu/cpu.h"
#include "platform/cpuid.h"

namespace apicv::emu {

enum class CpuVendor : uint8_t { kIntel, kAmd };

std::vector<platform::CpuidEntry> EmuBaseCpuid(CpuVendor vendor, const cpu::CpuFeatures& f);

}  // namespace apicv::emu
