// Thin RAII wrappers over the KVM API (Documentation/virt/kvm/api.rst): the /dev/kvm system fd,
// a VM with its memory slots and (kvm mode) in-kernel irqchip + PIT, and vCPUs with their kvm_run
// mapping, loading the backend-neutral register states of platform/cpu_state.h: boot entry
// (16/32/64-bit), INIT (SDM vol. 3A 10.1.1, Table 10-1) and the SIPI start (SDM 8.4.4.1). Not
// supported: SMM, nested state, XSAVE state beyond KVM's reset.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "backend/kvm/run_guest.h"
#include "platform/boot_loader.h"
#include "platform/cpu_state.h"
#include "platform/guest_memory.h"

namespace apicv::kvm {

class KvmSystem {
 public:
  // Opens /dev/kvm; throws KvmUnavailable with a one-line reason.
  KvmSystem();
  ~KvmSystem();
  KvmSystem(const KvmSystem&) = delete;
  KvmSystem& operator=(const KvmSystem&) = delete;
  int fd() const { return fd_; }
  int CheckExtension(long cap) const;
  int vcpu_mmap_size() const { return mmap_size_; }

 private:
  int fd_ = -1;
  int mmap_size_ = 0;
};

class KvmVcpu {
 public:
  KvmVcpu(const KvmSystem& sys, int vm_fd, int id);
  ~KvmVcpu();
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;
  int fd() const { return fd_; }
  int id() const { return id_; }
  kvm_run* run() const { return run_; }

  // False when the host rejects KVM_SET_CPUID2.
  bool SetCpuid(const std::vector<kvm_cpuid_entry2>& entries);
  // Loads `st` (platform/cpu_state.h); `system_state` also loads LDTR, TR, IDTR and CR2.
  void LoadCpuState(const platform::CpuState& st, bool system_state);
  void SetBootState(const platform::BootImage& boot);
  void SetInitState();
  void SetSipiState(uint8_t vector);
  uint64_t Rip() const;

 private:
  int fd_ = -1;
  int id_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

class KvmVm {
 public:
  // Creates the VM, registers `mem`, and sets up the mode's interrupt plumbing: in-kernel irqchip
  // and PIT (kKvm) or user-space MSR exits with the apicv MSR filter (kApicv).
  KvmVm(const KvmSystem& sys, const platform::GuestMemory& mem, IrqchipMode mode, int nr_vcpus);
  ~KvmVm();
  KvmVm(const KvmVm&) = delete;
  KvmVm& operator=(const KvmVm&) = delete;
  int fd() const { return fd_; }
  // KVM_IRQ_LINE (kvm mode).
  void SetIrqLine(uint32_t irq, bool level);

 private:
  int fd_ = -1;
};

}  // namespace apicv::kvm
