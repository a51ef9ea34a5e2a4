// -cpu parsing; see cpu_model.h.
#include "platform/cpu_model.h"

#include <vector>

namespace apicv::platform {

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

bool* FeatureFlag(CpuModel& m, const std::string& name) {
  if (name == "x2apic") return &m.x2apic;
  if (name == "tsc-deadline") return &m.tsc_deadline;
  return nullptr;
}

bool OnOff(const std::string& item, const std::string& v) {
  if (v == "on") return true;
  if (v == "off") return false;
  throw CpuModelError("'" + item + "': expected on or off");
}

}  // namespace

CpuModel ParseCpuModel(const std::string& spec) {
  const std::vector<std::string> items = Split(spec);
  CpuModel m;
  m.name = items[0];
  if (m.name == "max") {
    // Everything apicv implements: the default.
  } else if (m.name == "host") {
    m.needs_kvm = true;
  } else if (m.name == "qemu64") {
    // QEMU's default model under TCG: AMD vendor, neither x2APIC nor TSC-deadline, and QEMU
    // turns the PMU on only for `host` / `max` (kvm-unit-tests add +x2apic,+tsc-deadline).
    m.x2apic = false;
    m.tsc_deadline = false;
    m.pmu = false;
    m.vendor = virt::PmuVendor::kAmd;
  } else if (m.name.empty()) {
    throw CpuModelError("missing model (-cpu help)");
  } else {
    throw CpuModelError("unknown model '" + m.name + "' (-cpu help)");
  }
  for (size_t i = 1; i < items.size(); ++i) {
    const std::string& it = items[i];
    if (it.empty()) throw CpuModelError("empty feature in '" + spec + "'");
    if (it[0] == '+' || it[0] == '-') {
      bool* f = FeatureFlag(m, it.substr(1));
      if (f == nullptr) {
        throw CpuModelError("unknown feature '" + it.substr(1) +
                            "' (apicv models x2apic and tsc-deadline; -cpu help)");
      }
      *f = it[0] == '+';
      continue;
    }
    const size_t eq = it.find('=');
    if (eq == std::string::npos) {
      throw CpuModelError("'" + it + "': expected +feature, -feature or name=value (-cpu help)");
    }
    const std::string key = it.substr(0, eq), val = it.substr(eq + 1);
    if (bool* f = FeatureFlag(m, key)) {
      *f = OnOff(it, val);
    } else if (key == "pmu") {
      m.pmu = OnOff(it, val);
    } else if (key == "vendor") {
      if (val == "GenuineIntel") {
        m.vendor = virt::PmuVendor::kIntel;
      } else if (val == "AuthenticAMD") {
        m.vendor = virt::PmuVendor::kAmd;
      } else {
        throw CpuModelError("vendor: expected GenuineIntel or AuthenticAMD, got '" + val + "'");
      }
    } else {
      throw CpuModelError("unknown property '" + key + "' (-cpu help)");
    }
  }
  return m;
}

const char* CpuModelHelp() {
  return R"(Available CPU models (-cpu MODEL[,+feature|-feature|feature=on|off][,pmu=on|off][,vendor=V]):
  max       every feature apicv implements (the default): x2apic, tsc-deadline, pmu=on;
            vendor GenuineIntel under -accel emu, the host's under -accel kvm
  host      -accel kvm only: KVM's supported CPUID with apicv's leaves (as max)
  qemu64    QEMU's default TCG model: vendor AuthenticAMD, -x2apic, -tsc-deadline, pmu=off
Features and properties:
  x2apic          CPUID.1:ECX[21]; off: IA32_APIC_BASE.EXTD is reserved (#GP), xAPIC only
  tsc-deadline    CPUID.1:ECX[24]; off: LVTT has no TSC-deadline mode
  pmu=on|off      the vPMU (CPUID leaf 0AH on Intel, PerfCtr MSRs on AMD); off: PMU MSRs #GP
  vendor=GenuineIntel|AuthenticAMD   CPUID vendor string; also selects the vPMU model)";
}

void ApplyCpuModel(const CpuModel& model, virt::VmConfig& config) {
  config.x2apic = model.x2apic;
  config.tsc_deadline = model.tsc_deadline;
  config.pmu = model.pmu;
  if (model.vendor) {
    config.pmu_vendor = *model.vendor;
    config.cpuid_vendor = true;
  }
}

}  // namespace apicv::platform
