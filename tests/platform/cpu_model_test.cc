// -cpu MODEL[,features] (platform/cpu_model.h): parsing, the CPUID the guest then sees (SDM vol. 2A
// CPUID leaves 0, 1, 0AH; AMD APM vol. 3 Fn8000_0001) and what apicv's irqchip enforces from it as
// KVM does (EXTD reserved without x2APIC, no TSC-deadline LVTT mode, PMU MSRs #GP with pmu=off).
#include "platform/cpu_model.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "devices/clock.h"
#include "platform/cpuid.h"
#include "virt/apicv_vm.h"
#include "virt/timer_service.h"

namespace apicv::platform {
namespace {

std::vector<CpuidEntry> Base() {
  std::vector<CpuidEntry> e;
  CpuidEntry l0{0, 0, 0, 0xD, 0, 0, 0};
  std::memcpy(&l0.ebx, "Genu", 4);
  std::memcpy(&l0.edx, "ineI", 4);
  std::memcpy(&l0.ecx, "ntel", 4);
  e.push_back(l0);
  e.push_back({1, 0, 0, 0x506E3, 0, 0, 0});
  e.push_back({0x80000000, 0, 0, 0x80000008, 0, 0, 0});
  e.push_back({0x80000001, 0, 0, 0, 0, kCpuidExtEcxPerfCtrExtCore, 0});
  return e;
}

std::string Vendor(const std::vector<CpuidEntry>& e, uint32_t fn) {
  const CpuidEntry* l = FindCpuid(e, fn, 0);
  char s[13] = {};
  std::memcpy(s, &l->ebx, 4);
  std::memcpy(s + 4, &l->edx, 4);
  std::memcpy(s + 8, &l->ecx, 4);
  return s;
}

std::vector<CpuidEntry> GuestCpuid(const std::string& spec) {
  virt::VmConfig cfg;
  ApplyCpuModel(ParseCpuModel(spec), cfg);
  std::vector<CpuidEntry> e = ApicvCpuid(Base(), 0, GuestPmuFor(true, cfg));
  PatchCpuidForCpuModel(e, cfg);
  return e;
}

TEST(CpuModel, MaxKeepsEverythingApicvAdvertises) {
  const auto e = GuestCpuid("max");
  const uint32_t ecx = FindCpuid(e, 1, 0)->ecx;
  EXPECT_TRUE(ecx & kCpuid1EcxX2Apic);
  EXPECT_TRUE(ecx & kCpuid1EcxTscDeadline);
  EXPECT_EQ(FindCpuid(e, 0xA, 0)->eax & 0xFF, 2u);  // architectural PMU v2
  EXPECT_EQ(Vendor(e, 0), "GenuineIntel");
}

TEST(CpuModel, MinusFeaturesClearTheirBits) {
  const auto e = GuestCpuid("max,-x2apic,tsc-deadline=off,pmu=off");
  const uint32_t ecx = FindCpuid(e, 1, 0)->ecx;
  EXPECT_FALSE(ecx & kCpuid1EcxX2Apic);
  EXPECT_FALSE(ecx & kCpuid1EcxTscDeadline);
  EXPECT_TRUE(ecx & kCpuid1EcxHypervisor);  // untouched
  const CpuidEntry* a = FindCpuid(e, 0xA, 0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->eax | a->ebx | a->ecx | a->edx, 0u);
}

TEST(CpuModel, Qemu64IsAmdWithoutX2apicTscDeadlineOrPmuAndFeaturesComeBack) {
  auto e = GuestCpuid("qemu64");
  EXPECT_EQ(Vendor(e, 0), "AuthenticAMD");
  EXPECT_EQ(Vendor(e, 0x80000000), "AuthenticAMD");
  EXPECT_FALSE(FindCpuid(e, 1, 0)->ecx & kCpuid1EcxX2Apic);
  EXPECT_FALSE(FindCpuid(e, 1, 0)->ecx & kCpuid1EcxTscDeadline);
  EXPECT_FALSE(FindCpuid(e, 0x80000001, 0)->ecx & kCpuidExtEcxPerfCtrExtCore);
  // kvm-unit-tests' spelling for the apic tests.
  e = GuestCpuid("qemu64,+x2apic,+tsc-deadline");
  EXPECT_TRUE(FindCpuid(e, 1, 0)->ecx & kCpuid1EcxX2Apic);
  EXPECT_TRUE(FindCpuid(e, 1, 0)->ecx & kCpuid1EcxTscDeadline);
  EXPECT_EQ(Vendor(GuestCpuid("qemu64,vendor=GenuineIntel"), 0), "GenuineIntel");
}

TEST(CpuModel, HostNeedsKvm) {
  EXPECT_TRUE(ParseCpuModel("host").needs_kvm);
  EXPECT_FALSE(ParseCpuModel("max").needs_kvm);
}

TEST(CpuModel, BadInputIsRefusedWithItsReason) {
  auto msg = [](const std::string& spec) {
    try {
      ParseCpuModel(spec);
    } catch (const CpuModelError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(msg("pentium"), "unknown model 'pentium' (-cpu help)");
  EXPECT_EQ(msg(""), "missing model (-cpu help)");
  EXPECT_NE(msg("max,+avx").find("unknown feature 'avx'"), std::string::npos);
  EXPECT_NE(msg("max,x2apic").find("expected +feature"), std::string::npos);
  EXPECT_EQ(msg("max,pmu=maybe"), "'pmu=maybe': expected on or off");
  EXPECT_NE(msg("max,vendor=CyrixInstead").find("GenuineIntel or AuthenticAMD"), std::string::npos);
  EXPECT_NE(msg("max,,+x2apic").find("empty feature"), std::string::npos);
  EXPECT_NE(msg("max,level=13").find("unknown property 'level'"), std::string::npos);
}

// What the guest's CPUID says is what the irqchip allows (kvm_vcpu_after_set_cpuid).
TEST(CpuModel, IrqchipEnforcesTheModel) {
  MonotonicClock clock;
  virt::ManualTimerService timers;  // no timer thread
  auto vm_for = [&](const std::string& spec) {
    virt::VmConfig cfg;
    ApplyCpuModel(ParseCpuModel(spec), cfg);
    return std::make_unique<virt::ApicvVm>(cfg, clock, nullptr, &timers);
  };
  constexpr uint32_t kApicBase = 0x1B, kLvtt = 0x832, kPerfEvtSel0 = 0x186;
  constexpr uint64_t kEn = 1u << 11, kExtd = 1u << 10, kBsp = 1u << 8;
  const uint64_t base = 0xFEE00000u | kBsp | kEn;
  {
    auto vm = vm_for("max");
    EXPECT_EQ(vm->wrmsr(0, kApicBase, base | kExtd), virt::AccessResult::kHandled);
    // x2APIC now: LVTT accepts the TSC-deadline mode (bits 18:17 = 10b).
    EXPECT_EQ(vm->wrmsr(0, kLvtt, 0x40 | (2u << 17)), virt::AccessResult::kHandled);
    uint64_t v = 0;
    EXPECT_EQ(vm->rdmsr(0, kLvtt, &v), virt::AccessResult::kHandled);
    EXPECT_EQ((v >> 17) & 3, 2u);
    EXPECT_EQ(vm->rdmsr(0, kPerfEvtSel0, &v), virt::AccessResult::kHandled);
  }
  {
    auto vm = vm_for("max,-x2apic");
    EXPECT_EQ(vm->wrmsr(0, kApicBase, base | kExtd), virt::AccessResult::kGp);
  }
  {
    auto vm = vm_for("max,-tsc-deadline");
    EXPECT_EQ(vm->wrmsr(0, kApicBase, base | kExtd), virt::AccessResult::kHandled);
    EXPECT_EQ(vm->wrmsr(0, kLvtt, 0x40 | (2u << 17)), virt::AccessResult::kHandled);
    uint64_t v = 0;
    EXPECT_EQ(vm->rdmsr(0, kLvtt, &v), virt::AccessResult::kHandled);
    EXPECT_EQ((v >> 17) & 3, 0u);  // mode mask 1 << 17: one-shot
  }
  {
    auto vm = vm_for("max,pmu=off");
    uint64_t v = 0;
    EXPECT_EQ(vm->rdmsr(0, kPerfEvtSel0, &v), virt::AccessResult::kGp);
    EXPECT_EQ(vm->wrmsr(0, 0x38F, 0), virt::AccessResult::kGp);  // IA32_PERF_GLOBAL_CTRL
  }
}

}  // namespace
}  // namespace apicv::platform
