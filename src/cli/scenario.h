// One configured run of a built-in guest on /dev/kvm with apicv's irqchip, keeping what a repro
// or benchmark needs afterwards: the run result, the virtualization layer's counters and the
// kvm_apicv_inhibit_changed trace lines.
#pragma once

#include <string>
#include <vector>

#include "backend/kvm/run_guest.h"
#include "virt/apicv_vm.h"

namespace apicv::cli {

struct Scenario {
  std::string label;  // e.g. "legacy, avic=on, irqchip=on, delay"
  std::string guest;
  int smp = 1;
  std::string append;
  virt::VmConfig config;
  double timeout_s = 300;
  size_t trace_ring = 200000;  // lines kept (bounded memory)

  // Results.
  kvm::RunResult result;
  virt::VmStats stats;
  std::vector<std::string> inhibit_lines;  // full ftrace lines of kvm_apicv_inhibit_changed
  uint64_t trace_lines_total = 0;
  std::string serial;
  bool passed = false;  // the guest printed PASS and exited through isa-debug-exit
};

// Runs the scenario. Throws kvm::KvmUnavailable when /dev/kvm is missing.
void RunScenario(Scenario& s);

// The body after "kvm_apicv_inhibit_changed: " of a full trace line.
std::string InhibitBody(const std::string& line);

}  // namespace apicv::cli
