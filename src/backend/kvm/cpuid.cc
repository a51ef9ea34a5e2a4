// KVM's CPUID lists merged with apicv's leaves; see cpuid.h.
#include "backend/kvm/cpuid.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace apicv::kvm {

namespace {

// Runs a platform patch on a KVM list, writing the results back in place.
template <typename Patch>
void ApplyPatch(std::vector<kvm_cpuid_entry2>& entries, Patch patch) {
  std::vector<platform::CpuidEntry> p = ToPlatform(entries);
  patch(p);
  for (size_t i = 0; i < p.size(); ++i) {
    if (i == entries.size()) entries.push_back(kvm_cpuid_entry2{});
    kvm_cpuid_entry2& e = entries[i];
    e.function = p[i].function;
    e.index = p[i].index;
    e.flags = p[i].flags;
    e.eax = p[i].eax;
    e.ebx = p[i].ebx;
    e.ecx = p[i].ecx;
    e.edx = p[i].edx;
  }
}

}  // namespace

std::vector<platform::CpuidEntry> ToPlatform(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<platform::CpuidEntry> out;
  out.reserve(entries.size());
  for (const kvm_cpuid_entry2& e : entries) {
    out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
  }
  return out;
}

std::vector<kvm_cpuid_entry2> FromPlatform(const std::vector<platform::CpuidEntry>& entries) {
  std::vector<kvm_cpuid_entry2> out;
  ApplyPatch(out, [&](std::vector<platform::CpuidEntry>& p) { p = entries; });
  return out;
}

void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id) {
  ApplyPatch(entries, [&](std::vector<platform::CpuidEntry>& p) {
    platform::PatchCpuidForVcpu(p, apic_id);
  });
}

void PatchCpuidForPmu(std::vector<kvm_cpuid_entry2>& entries, const GuestPmu& pmu) {
  ApplyPatch(entries,
             [&](std::vector<platform::CpuidEntry>& p) { platform::PatchCpuidForPmu(p, pmu); });
}

void PatchCpuidForVcpu(std::vector<kvm_cpuid_entry2>& entries, uint32_t apic_id,
                       const GuestPmu& pmu) {
  ApplyPatch(entries, [&](std::vector<platform::CpuidEntry>& p) {
    platform::PatchCpuidForVcpu(p, apic_id, pmu);
  });
}

void PatchCpuidForCpuModel(std::vector<kvm_cpuid_entry2>& entries, const virt::VmConfig& config) {
  ApplyPatch(entries, [&](std::vector<platform::CpuidEntry>& p) {
    platform::PatchCpuidForCpuModel(p, config);
  });
}

std::vector<kvm_cpuid_entry2> HostCpuid() {
  return FromPlatform(platform::HostCpuid());
}

std::vector<kvm_cpuid_entry2> GetSupportedCpuid(int kvm_fd) {
  // Fall back to the host's CPUID, itself what the outer hypervisor exposes.
  std::vector<kvm_cpuid_entry2> from_kvm = GetSupportedCpuidFromKvm(kvm_fd);
  return from_kvm.empty() ? HostCpuid() : from_kvm;
}

std::vector<kvm_cpuid_entry2> GetSupportedCpuidFromKvm(int kvm_fd) {
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(KvmCpuid2Header) + n * sizeof(kvm_cpuid_entry2), 0);
    KvmCpuid2Header h{n, 0};
    std::memcpy(buf.data(), &h, sizeof h);
    if (ioctl(kvm_fd, kIoctlGetSupportedCpuid, buf.data()) == 0) {
      std::memcpy(&h, buf.data(), sizeof h);
      std::vector<kvm_cpuid_entry2> out(std::min(h.nent, n));
      std::memcpy(out.data(), buf.data() + sizeof h, out.size() * sizeof(kvm_cpuid_entry2));
      return out;
    }
    if (errno != E2BIG) return {};
  }
  return {};
}

std::vector<uint8_t> EncodeCpuid2(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(sizeof(KvmCpuid2Header) + entries.size() * sizeof(kvm_cpuid_entry2), 0);
  const KvmCpuid2Header h{static_cast<uint32_t>(entries.size()), 0};
  std::memcpy(buf.data(), &h, sizeof h);
  if (!entries.empty()) {
    std::memcpy(buf.data() + sizeof h, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  }
  return buf;
}

}  // namespace apicv::kvm
