// kvm_exit reason names as KVM's kvm_print_exit_reason() prints them (arch/x86/kvm/trace.h):
// __print_symbolic(exit_reason & 0xffff, VMX_EXIT_REASONS) for isa 1 (KVM_ISA_VMX, SDM Vol. 3C
// Appendix C "VMX Basic Exit Reasons") and __print_symbolic(exit_reason, SVM_EXIT_REASONS) for
// isa 2 (KVM_ISA_SVM, APM Vol. 2 Appendix C "SVM Intercept Exit Codes"); the tables are the
// uapi headers arch/x86/include/uapi/asm/{vmx,svm}.h. A value missing from a table prints as
// "0x%lx", as __print_symbolic() does. Used where a trace carries the number, not the text:
// trace.dat records (fields read by name) and `perf trace` field lists.
//
// VMX flag bits (FAILED_VMENTRY, bit 31; others as one hex value) follow the name after a space,
// as __print_flags() prints them: the result is the whole text between "reason " and " rip ".
//
// Not supported: exit codes added to the uapi tables after 6.15 (they print as "0x..").
#pragma once

#include <cstdint>
#include <string>

namespace apicv::trace {

inline constexpr uint32_t kKvmIsaVmx = 1;
inline constexpr uint32_t kKvmIsaSvm = 2;

// The text KVM prints after "reason " (up to " rip ") for this exit.
std::string ExitReasonName(uint64_t exit_reason, uint32_t isa);

}  // namespace apicv::trace
