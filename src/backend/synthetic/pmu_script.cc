// The scripted pmu guest (see pmu_script.h for what is modelled and what is not).
#include "backend/synthetic/pmu_script.h"

#include <cstdio>
#include <stdexcept>

#include "devices/clock.h"
#include "virt/apicv_vm.h"
#include "x86/apic_defs.h"
#include "x86/pmu_defs.h"

namespace apicv::synthetic {
namespace {

constexpr uint32_t kMsrSpiv = x86::X2ApicMsrFromOffset(0xF0);
constexpr uint32_t kMsrLvtpc = x86::X2ApicMsrFromOffset(x86::kApicLvtPc);
// IA32_APIC_BASE: base 0xFEE00000, EN (bit 11), EXTD (bit 10), BSP (bit 8).
constexpr uint64_t kApicBaseX2Apic = 0xFEE00000ull | (1u << 11) | (1u << 10) | (1u << 8);
constexpr uint64_t kSpivEnable = 0x1FF;  // APIC software enable, spurious vector 0xFF
constexpr uint64_t kLvtNmi = 0x400;      // delivery mode NMI, unmasked
constexpr uint16_t kUnclaimedPort = 0x80;
constexpr uint32_t kTailWrites = 64;  // room after the overflow for a second (legacy) PMI
constexpr uint64_t kPmcMask = (1ull << 48) - 1;
constexpr uint64_t kEvtSelInstRetired =
    0xC0 | x86::kEvtSelUsr | x86::kEvtSelOs | x86::kEvtSelInt | x86::kEvtSelEn;
// A fixed TSC rate: the VM would otherwise calibrate the host's, and nothing here counts cycles.
constexpr uint64_t kTscKhz = 1000000;

virt::VmConfig MakeVmConfig(const PmuScriptConfig& c) {
  virt::VmConfig v;
  v.nr_vcpus = 1;
  v.pmi_delivery = c.delivery;
  v.pmu_vendor = c.vendor;
  v.tsc_khz = kTscKhz;
  return v;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

class Script {
 public:
  explicit Script(const PmuScriptConfig& c)
      : cfg_(c), amd_(c.vendor == virt::PmuVendor::kAmd), vm_(MakeVmConfig(c), clock_, nullptr) {
    vm_.set_kick([](int) {});  // one vCPU, run on this thread: there is nobody to kick
  }

  PmuScriptResult Run() {
    const uint64_t n = cfg_.period;
    const uint32_t evtsel = amd_ ? x86::kMsrK7PerfEvtSel0 : x86::kMsrIa32PerfEvtSel0;
    const uint32_t pmc = amd_ ? x86::kMsrK7PerfCtr0 : x86::kMsrIa32Pmc0;
    Wrmsr(x86::kMsrApicBase, kApicBaseX2Apic);
    Wrmsr(kMsrSpiv, kSpivEnable);
    // Intel: the guest's PMU probe leaves every counter disabled globally (RESET sets bits 3:0).
    if (!amd_) Wrmsr(x86::kMsrIa32PerfGlobalCtrl, 0);
    Wrmsr(evtsel, 0);
    if (!amd_) Wrmsr(x86::kMsrIa32PerfGlobalOvfCtrl, 1);
    Wrmsr(kMsrLvtpc, kLvtNmi);
    // Intel: a legacy IA32_PMCx write takes bits 31:0 sign-extended; AMD takes 48 bits as is.
    Wrmsr(pmc, amd_ ? ((0 - n) & kPmcMask) : static_cast<uint32_t>(0u - static_cast<uint32_t>(n)));
    const uint64_t armed = Rdmsr(pmc);
    if (armed != ((0 - n) & kPmcMask))
      Fail("PMC0 after writing -n is " + Hex(armed) + ", expected " + Hex((0 - n) & kPmcMask));
    if (!amd_ && (Rdmsr(x86::kMsrIa32PerfGlobalStatus) & 1))
      Fail("GLOBAL_STATUS bit 0 set before arming");
    Wrmsr(evtsel, kEvtSelInstRetired);
    if (!amd_) Wrmsr(x86::kMsrIa32PerfGlobalCtrl, 1);

    for (uint64_t i = 0; i < n + kTailWrites; ++i) {
      Out(kUnclaimedPort, static_cast<uint8_t>(i));
      outs_done_ = i + 1;
    }

    if (!amd_) Wrmsr(x86::kMsrIa32PerfGlobalCtrl, 0);
    Wrmsr(evtsel, 0);
    if (r_.pmis == 0) lvtpc_first_ = Rdmsr(kMsrLvtpc);
    // The last port write's exit may leave a (legacy) NMI queued: one more entry takes it, as the
    // real guest's next instruction would.
    if (!entered_) Enter();
    vm_.vcpu_exit(0);
    entered_ = false;

    r_.lvtpc_masked_after_pmi = (lvtpc_first_ & x86::kLvtMasked) != 0;
    r_.overflows = vm_.pmu(0).overflow_count();
    r_.lvtpc_deliveries = vm_.stats().pmis;
    if (r_.pmis == 0) Fail("no PMI arrived after the port writes with PMC0 armed at -n");
    if (!r_.global_status_seen) Fail("the PMI handler never saw the counter's overflow");
    if (r_.unexpected_vectors != 0) Fail("an external interrupt was injected");
    return r_;
  }

 private:
  // The backend's preamble for one guest entry (run_guest.cc), then the entry itself. An NMI the
  // guest can take now runs its handler, whose first exit ends this entry; the interrupted
  // instruction then needs another entry.
  void Enter() {
    for (;;) {
      vm_.run_timers(0);
      const virt::Injection inj = vm_.check_and_inject_events(0, /*ready=*/true, /*if_set=*/true);
      if (inj.nmi) {
        ++r_.nmis_injected;
        // KVM's process_nmi(): one NMI may be held behind one being handled, two otherwise.
        const int limit = nmi_blocked_ ? 1 : 2;
        if (kvm_nmi_pending_ < limit) ++kvm_nmi_pending_;
      }
      if (inj.vector >= 0) ++r_.unexpected_vectors;
      vm_.vcpu_enter(0);
      entered_ = true;
      if (iret_pending_) {  // the handler's IRET is the first thing this entry executes
        iret_pending_ = false;
        nmi_blocked_ = false;
      }
      if (nmi_blocked_ || kvm_nmi_pending_ == 0) return;
      --kvm_nmi_pending_;
      nmi_blocked_ = true;  // SDM 6.7.1: NMIs blocked until the handler's IRET
      NmiHandler();
    }
  }

  // One exiting guest instruction: exit, the access as run_guest.cc serves it, then the
  // instruction retires (instruction_emulated) after the access, as in HandleExit().
  enum class Op { kWrmsr, kRdmsr, kOut };
  uint64_t Exit(Op op, uint32_t index, uint64_t value) {
    if (!entered_) Enter();
    vm_.vcpu_exit(0);
    entered_ = false;
    ++r_.exits;
    vm_.set_cr8(0, 0);
    virt::AccessResult res = virt::AccessResult::kHandled;
    switch (op) {
      case Op::kWrmsr:
        res = vm_.wrmsr(0, index, value);
        break;
      case Op::kRdmsr:
        res = vm_.rdmsr(0, index, &value);
        // Filtered but not served: the backend returns 0.
        if (res == virt::AccessResult::kNotMine) value = 0;
        break;
      case Op::kOut: {
        const uint8_t b = static_cast<uint8_t>(value);
        // apicv does not claim port 0x80: the backend drops the write (kNotMine is expected).
        vm_.pio_out(0, static_cast<uint16_t>(index), &b, 1);
        res = virt::AccessResult::kHandled;
        break;
      }
    }
    if (res == virt::AccessResult::kGp) {
      Fail(std::string(op == Op::kWrmsr ? "WRMSR " : "RDMSR ") + Hex(index) + " took #GP");
      value = 0;
    }
    vm_.instruction_emulated(0);
    return value;
  }
  void Wrmsr(uint32_t msr, uint64_t v) { Exit(Op::kWrmsr, msr, v); }
  uint64_t Rdmsr(uint32_t msr) { return Exit(Op::kRdmsr, msr, 0); }
  void Out(uint16_t port, uint8_t v) { Exit(Op::kOut, port, v); }

  // guests/pmu.c h_nmi(): read LVTPC and the overflow state, acknowledge, unmask LVTPC (as
  // Linux's perf handler does), IRET.
  void NmiHandler() {
    const uint64_t lvtpc = Rdmsr(kMsrLvtpc);
    bool overflow = false;
    if (amd_) {
      // No global status on AMD: a counter armed at -n has wrapped once bit 47 is clear.
      overflow = (Rdmsr(x86::kMsrK7PerfCtr0) & (1ull << 47)) == 0;
    } else {
      overflow = (Rdmsr(x86::kMsrIa32PerfGlobalStatus) & 1) != 0;
    }
    if (r_.pmis == 0) {
      lvtpc_first_ = lvtpc;
      r_.outs_at_first_pmi = outs_done_;
    }
    if (overflow) {
      r_.global_status_seen = true;
      ++r_.guest_overflows;
      if (!amd_) Wrmsr(x86::kMsrIa32PerfGlobalOvfCtrl, 1);
    }
    ++r_.pmis;
    Wrmsr(kMsrLvtpc, kLvtNmi);
    iret_pending_ = true;
  }

  void Fail(const std::string& what) {
    if (r_.failures.size() < 16) r_.failures.push_back(what);
  }

  const PmuScriptConfig cfg_;
  const bool amd_;
  FakeClock clock_;
  virt::ApicvVm vm_;
  PmuScriptResult r_;
  bool entered_ = false;       // an entry is open: the next access ends it
  bool nmi_blocked_ = false;   // inside the NMI handler
  bool iret_pending_ = false;  // the handler finished; its IRET runs at the next entry
  int kvm_nmi_pending_ = 0;    // NMIs handed to "KVM" (KVM_NMI) and not yet taken
  uint64_t outs_done_ = 0;
  uint64_t lvtpc_first_ = 0;
};

}  // namespace

PmuScriptResult RunPmuScript(const PmuScriptConfig& config) {
  if (config.period < 2 || config.period > 1000000)
    throw std::invalid_argument("pmu script: period " + std::to_string(config.period) +
                                " outside 2..1000000");
  Script s(config);
  return s.Run();
}

}  // namespace apicv::synthetic
