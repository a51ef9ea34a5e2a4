#include "backend/emu/emu_cpuid.h"

#include <cstring>

namespace apicv::emu {

namespace {

void vendor_regs(CpuVendor v, uint32_t* ebx, uint32_t* edx, uint32_t* ecx) {
  const char* s = v == CpuVendor::kIntel ? "GenuineIntel" : "AuthenticAMD";
  std::memcpy(ebx, s, 4);
  std::memcpy(edx, s + 4, 4);
  std::memcpy(ecx, s + 8, 4);
}

}  // namespace

std::vector<platform::CpuidEntry> EmuBaseCpuid(CpuVendor vendor, const cpu::CpuFeatures& f) {
  std::vector<platform::CpuidEntry> e;
  platform::CpuidEntry l0{0, 0, 0, 0xB, 0, 0, 0};
  vendor_regs(vendor, &l0.ebx, &l0.edx, &l0.ecx);
  e.push_back(l0);
  // Leaf 1: family 6 (Intel) / 0x17 (AMD), one logical processor per package.
  platform::CpuidEntry l1{1, 0, 0, 0, 0, 0, 0};
  l1.eax = vendor == CpuVendor::kIntel ? 0x000506E3 : 0x00800F12;
  l1.ebx = 0x00010800;  // CLFLUSH line 8 * 8 bytes, 1 logical processor
  l1.edx = (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9) | (1u << 13) |
           (1u << 15) | (1u << 16) | (1u << 19);  // PSE TSC MSR PAE CX8 APIC PGE CMOV PAT CLFSH
  l1.ecx = (f.cx16 ? (1u << 13) : 0) | (f.popcnt ? (1u << 23) : 0);
  e.push_back(l1);
  // Leaf 0xB: one SMT level and one core level, shifts 0 (x2APIC ID in EDX is patched per vCPU).
  e.push_back({0xB, 0, platform::kCpuidFlagSignificantIndex, 0, 1, 0x100, 0});
  e.push_back({0xB, 1, platform::kCpuidFlagSignificantIndex, 0, 1, 0x201, 0});
  e.push_back({0xB, 2, platform::kCpuidFlagSignificantIndex, 0, 0, 2, 0});
  platform::CpuidEntry x0{0x80000000, 0, 0, 0x80000008, 0, 0, 0};
  vendor_regs(vendor, &x0.ebx, &x0.edx, &x0.ecx);
  e.push_back(x0);
  platform::CpuidEntry x1{0x80000001, 0, 0, 0, 0, 0, 0};
  x1.ecx = 1u | (f.lzcnt_tzcnt ? (1u << 5) : 0);  // LAHF/SAHF in 64-bit mode, ABM
  x1.edx = (f.syscall ? (1u << 11) : 0) | (f.nx ? (1u << 20) : 0) | (f.pdpe1gb ? (1u << 26) : 0) |
           (f.rdtscp ? (1u << 27) : 0) | (1u << 29);  // LM
  e.push_back(x1);
  e.push_back({0x80000008, 0, 0, 0x3028, 0, 0, 0});  // 40 physical, 48 linear address bits
  return e;
}

}  // namespace apicv::emu
