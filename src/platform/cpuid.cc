// CPUID construction; see cpuid.h.
#include "platform/cpuid.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

#include "devices/pmu/pmu.h"

namespace apicv::platform {

namespace {

CpuidEntry* FindLeaf(std::vector<CpuidEntry>& entries, uint32_t fn) {
  for (CpuidEntry& e : entries) {
    if (e.function == fn) return &e;
  }
  return nullptr;
}

}  // namespace

GuestPmu GuestPmuFor(bool apicv_irqchip, const virt::VmConfig& config) {
  GuestPmu p;
  if (!apicv_irqchip) return p;
  // ApicvVm builds its Pmu devices from pmu_vendor alone (no core extension, no full-width
  // writes); advertise exactly that.
  p.kind = config.pmu_vendor == virt::PmuVendor::kIntel ? GuestPmu::Kind::kIntelV2
                                                        : GuestPmu::Kind::kAmd;
  return p;
}

void PatchCpuidForVcpu(std::vector<CpuidEntry>& entries, uint32_t apic_id) {
  for (CpuidEntry& e : entries) {
    if (e.function == 1) {
      e.ecx |= kCpuid1EcxX2Apic | kCpuid1EcxTscDeadline | kCpuid1EcxHypervisor;
      // The initial APIC ID field is 8 bits; larger IDs are only visible through leaf 0xB.
      e.ebx = (e.ebx & 0x00FFFFFFu) | ((apic_id & 0xFFu) << 24);
    } else if (e.function == 0xB || e.function == 0x1F) {
      e.edx = apic_id;  // x2APIC ID of the current logical processor
    }
  }
}

void PatchCpuidForPmu(std::vector<CpuidEntry>& entries, const GuestPmu& pmu) {
  if (pmu.kind == GuestPmu::Kind::kKeep) return;
  PmuConfig pc;
  pc.model = pmu.kind == GuestPmu::Kind::kIntelV2 ? PmuModel::kIntelV2 : PmuModel::kAmd;
  pc.amd_core_ext = pmu.kind == GuestPmu::Kind::kAmd && pmu.amd_core_ext;
  // The device states what it implements; the platform only copies it into the guest's view.
  const Pmu model(pc);
  const CpuidLeaf a = model.CpuidLeafA();

  CpuidEntry* leaf_a = FindLeaf(entries, kCpuidLeafArchPerfmon);
  if (leaf_a == nullptr && pmu.kind == GuestPmu::Kind::kIntelV2) {
    CpuidEntry e;
    e.function = kCpuidLeafArchPerfmon;
    entries.push_back(e);
    leaf_a = &entries.back();
  }
  if (leaf_a != nullptr) {
    leaf_a->eax = a.eax;
    leaf_a->ebx = a.ebx;
    leaf_a->ecx = a.ecx;
    leaf_a->edx = a.edx;
  }
  if (pmu.kind == GuestPmu::Kind::kIntelV2) {
    // A guest reads leaf 0AH only when leaf 0 says it exists.
    if (CpuidEntry* l0 = FindLeaf(entries, 0); l0 != nullptr && l0->eax < 0xA) {
      l0->eax = kCpuidLeafArchPerfmon;
    }
  }
  if (CpuidEntry* ext = FindLeaf(entries, kCpuidExtFeatures); ext != nullptr) {
    ext->ecx &=
        ~(kCpuidExtEcxPerfCtrExtCore | kCpuidExtEcxPerfCtrExtNb | kCpuidExtEcxPerfCtrExtLlc);
    ext->ecx |= model.amd_cpuid_ext_ecx_bits();
  }
  if (CpuidEntry* v2 = FindLeaf(entries, kCpuidExtPerfmonDebug); v2 != nullptr) {
    v2->eax = v2->ebx = v2->ecx = v2->edx = 0;
  }
}

void PatchCpuidForVcpu(std::vector<CpuidEntry>& entries, uint32_t apic_id, const GuestPmu& pmu) {
  PatchCpuidForVcpu(entries, apic_id);
  PatchCpuidForPmu(entries, pmu);
}

std::vector<CpuidEntry> ApicvCpuid(std::vector<CpuidEntry> base, uint32_t apic_id,
                                   const GuestPmu& pmu) {
  PatchCpuidForVcpu(base, apic_id, pmu);
  return base;
}

void PatchCpuidForCpuModel(std::vector<CpuidEntry>& entries, const virt::VmConfig& config) {
  const char* vendor = config.pmu_vendor == virt::PmuVendor::kAmd ? "AuthenticAMD" : "GenuineIntel";
  for (CpuidEntry& e : entries) {
    if (e.function == 1) {
      if (!config.x2apic) e.ecx &= ~kCpuid1EcxX2Apic;
      if (!config.tsc_deadline) e.ecx &= ~kCpuid1EcxTscDeadline;
    } else if (!config.pmu && e.function == kCpuidLeafArchPerfmon) {
      e.eax = e.ebx = e.ecx = e.edx = 0;
    } else if (!config.pmu && e.function == kCpuidExtFeatures) {
      e.ecx &= ~(kCpuidExtEcxPerfCtrExtCore | kCpuidExtEcxPerfCtrExtNb | kCpuidExtEcxPerfCtrExtLlc);
    } else if (!config.pmu && e.function == kCpuidExtPerfmonDebug) {
      e.eax = e.ebx = e.ecx = e.edx = 0;
    }
    if (config.cpuid_vendor && (e.function == 0 || e.function == 0x80000000)) {
      // EBX, EDX, ECX hold the 12 characters in that order.
      std::memcpy(&e.ebx, vendor, 4);
      std::memcpy(&e.edx, vendor + 4, 4);
      std::memcpy(&e.ecx, vendor + 8, 4);
    }
  }
}

const CpuidEntry* FindCpuid(std::span<const CpuidEntry> entries, uint32_t function,
                            uint32_t index) {
  for (const CpuidEntry& e : entries) {
    if (e.function != function) continue;
    if ((e.flags & kCpuidFlagSignificantIndex) && e.index != index) continue;
    return &e;
  }
  return nullptr;
}

std::vector<CpuidEntry> HostCpuid() {
  std::vector<CpuidEntry> out;
  auto add = [&](uint32_t fn, uint32_t idx, bool indexed) {
    CpuidEntry e;
    e.function = fn;
    e.index = idx;
    e.flags = indexed ? kCpuidFlagSignificantIndex : 0;
    __cpuid_count(fn, idx, e.eax, e.ebx, e.ecx, e.edx);
    out.push_back(e);
  };
  uint32_t a, b, c, d;
  __cpuid(0, a, b, c, d);
  const uint32_t max_basic = std::min<uint32_t>(a, 0x1F);
  for (uint32_t fn = 0; fn <= max_basic; ++fn) {
    switch (fn) {
      case 4:
        for (uint32_t i = 0; i < 8; ++i) add(fn, i, true);
        break;
      case 7:
      case 0xB:
      case 0xD:
      case 0x1F:
        for (uint32_t i = 0; i < 4; ++i) add(fn, i, true);
        break;
      default:
        add(fn, 0, false);
    }
  }
  __cpuid(0x80000000, a, b, c, d);
  const uint32_t max_ext = std::min<uint32_t>(a, 0x80000021);
  for (uint32_t fn = 0x80000000; fn <= max_ext; ++fn) add(fn, 0, false);
  for (CpuidEntry& e : out) {
    if (e.function == 1) {
      e.ecx &= ~((1u << 3) | (1u << 5));  // no MONITOR (faults here), no nested VMX
    }
  }
  return out;
}

}  // namespace apicv::platform
