// KVM API wrappers; see kvm_vm.h.
#include "backend/kvm/kvm_vm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "backend/kvm/cpuid.h"
#include "backend/kvm/msr_filter.h"
#include "platform/cpu_state.h"

namespace apicv::kvm {

namespace {

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

kvm_segment ToKvm(const platform::SegmentState& seg) {
  kvm_segment s;
  std::memset(&s, 0, sizeof s);
  s.selector = seg.selector;
  s.base = seg.base;
  s.limit = seg.limit;
  s.type = seg.type;
  s.dpl = seg.dpl;
  s.present = seg.present ? 1 : 0;
  s.s = seg.s ? 1 : 0;
  s.db = seg.db ? 1 : 0;
  s.l = seg.l ? 1 : 0;
  s.g = seg.g ? 1 : 0;
  return s;
}

}  // namespace

KvmSystem::KvmSystem() {
  fd_ = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    throw KvmUnavailable(std::string("/dev/kvm is not available: ") + std::strerror(errno));
  }
  const int api = ioctl(fd_, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) {
    close(fd_);
    throw KvmUnavailable("/dev/kvm is not available: unexpected KVM API version " +
                         std::to_string(api));
  }
  mmap_size_ = ioctl(fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size_ <= 0) {
    close(fd_);
    throw KvmUnavailable("/dev/kvm is not available: KVM_GET_VCPU_MMAP_SIZE failed");
  }
}

KvmSystem::~KvmSystem() {
  if (fd_ >= 0) close(fd_);
}

int KvmSystem::CheckExtension(long cap) const {
  return ioctl(fd_, KVM_CHECK_EXTENSION, cap);
}

KvmVm::KvmVm(const KvmSystem& sys, const platform::GuestMemory& mem, IrqchipMode mode,
             int nr_vcpus) {
  fd_ = ioctl(sys.fd(), KVM_CREATE_VM, 0);
  if (fd_ < 0) throw KvmUnavailable(std::string("KVM_CREATE_VM failed: ") + std::strerror(errno));
  const int max_vcpus = sys.CheckExtension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && nr_vcpus > max_vcpus) {
    throw std::runtime_error("KVM supports at most " + std::to_string(max_vcpus) + " vCPUs");
  }
  // Intel needs a TSS area below 4 GiB for real-mode emulation; harmless elsewhere.
  ioctl(fd_, KVM_SET_TSS_ADDR, 0xFFFBD000ul);
  uint32_t slot = 0;
  for (const platform::MemorySlot& s : mem.slots()) {
    kvm_userspace_memory_region r{};
    r.slot = slot++;
    r.guest_phys_addr = s.gpa;
    r.memory_size = s.size;
    r.userspace_addr = reinterpret_cast<uint64_t>(mem.host() + s.host_offset);
    if (ioctl(fd_, KVM_SET_USER_MEMORY_REGION, &r) != 0) Fail("KVM_SET_USER_MEMORY_REGION");
  }
  if (mode == IrqchipMode::kKvm) {
    if (nr_vcpus > 255) {
      // 32-bit x2APIC IDs for the in-kernel LAPIC beyond 255 vCPUs.
      kvm_enable_cap cap{};
      cap.cap = KVM_CAP_X2APIC_API;
      cap.args[0] = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;
      if (ioctl(fd_, KVM_ENABLE_CAP, &cap) != 0) Fail("KVM_CAP_X2APIC_API");
    }
    if (ioctl(fd_, KVM_CREATE_IRQCHIP, 0) != 0) Fail("KVM_CREATE_IRQCHIP");
    // SPEAKER_DUMMY makes KVM serve port 0x61 (channel-2 gate and OUT2) next to its PIT, so
    // guests that calibrate the TSC against channel 2 see the same PIT they program.
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    if (ioctl(fd_, KVM_CREATE_PIT2, &pit) != 0) Fail("KVM_CREATE_PIT2");
  } else {
    if (sys.CheckExtension(KVM_CAP_X86_USER_SPACE_MSR) <= 0) {
      throw KvmUnavailable("/dev/kvm is not available: KVM_CAP_X86_USER_SPACE_MSR is unsupported");
    }
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
    cap.args[0] = KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_FILTER;
    if (ioctl(fd_, KVM_ENABLE_CAP, &cap) != 0) Fail("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)");
    std::vector<std::vector<uint8_t>> bitmaps;
    kvm_msr_filter filter = BuildApicvMsrFilter(bitmaps);
    if (ioctl(fd_, KVM_X86_SET_MSR_FILTER, &filter) != 0) Fail("KVM_X86_SET_MSR_FILTER");
  }
}

KvmVm::~KvmVm() {
  if (fd_ >= 0) close(fd_);
}

void KvmVm::SetIrqLine(uint32_t irq, bool level) {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (ioctl(fd_, KVM_IRQ_LINE, &l) != 0) Fail("KVM_IRQ_LINE");
}

KvmVcpu::KvmVcpu(const KvmSystem& sys, int vm_fd, int id) : id_(id) {
  fd_ = ioctl(vm_fd, KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd_ < 0) Fail("KVM_CREATE_VCPU " + std::to_string(id));
  run_size_ = static_cast<size_t>(sys.vcpu_mmap_size());
  void* p = mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    close(fd_);
    Fail("mmap of kvm_run");
  }
  run_ = static_cast<kvm_run*>(p);
  // Guest TSC = host TSC (offset ~0), so apicv's IA32_TSC_DEADLINE emulation can compare guest
  // deadlines with the host's rdtsc. KVM would otherwise start the guest TSC near 0.
  // struct kvm_msrs has a flexible array member: under C++ its sizeof is 16, not the kernel's 8,
  // which would move the entries and change KVM_SET_MSRS' ioctl number (EINVAL). Kernel layout:
  struct {
    uint32_t nmsrs;
    uint32_t pad;
    kvm_msr_entry entry;
  } one = {};
  static_assert(sizeof(one) == 8 + sizeof(kvm_msr_entry));
  constexpr unsigned long kIoctlSetMsrs = _IOW(KVMIO, 0x89, uint64_t);  // 8-byte kvm_msrs header
  one.nmsrs = 1;
  one.entry.index = 0x10;  // IA32_TIME_STAMP_COUNTER
  one.entry.data = __rdtsc();
  // Retry on EINTR (a kick signal may land here); report what KVM said otherwise.
  int r;
  do {
    r = ioctl(fd_, kIoctlSetMsrs, &one);
  } while (r < 0 && errno == EINTR);
  if (r != 1) {
    std::fprintf(stderr,
                 "apicv: vCPU %d: could not set IA32_TSC (KVM_SET_MSRS returned %d%s%s); "
                 "TSC-deadline timers may be off\n",
                 id, r, r < 0 ? ", " : "", r < 0 ? std::strerror(errno) : "");
  }
}

KvmVcpu::~KvmVcpu() {
  if (run_ != nullptr) munmap(run_, run_size_);
  if (fd_ >= 0) close(fd_);
}

bool KvmVcpu::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf = EncodeCpuid2(entries);
  return ioctl(fd_, kIoctlSetCpuid2, buf.data()) == 0;
}

void KvmVcpu::LoadCpuState(const platform::CpuState& st, bool system_state) {
  kvm_sregs sr;
  if (ioctl(fd_, KVM_GET_SREGS, &sr) != 0) Fail("KVM_GET_SREGS");
  sr.cs = ToKvm(st.cs);
  sr.ds = ToKvm(st.ds);
  sr.es = ToKvm(st.es);
  sr.fs = ToKvm(st.fs);
  sr.gs = ToKvm(st.gs);
  sr.ss = ToKvm(st.ss);
  sr.gdt.base = st.gdt.base;
  sr.gdt.limit = st.gdt.limit;
  sr.cr0 = st.cr0;
  sr.cr3 = st.cr3;
  sr.cr4 = st.cr4;
  sr.efer = st.efer;
  if (system_state) {
    sr.ldt = ToKvm(st.ldtr);
    sr.tr = ToKvm(st.tr);
    sr.idt.base = st.idt.base;
    sr.idt.limit = st.idt.limit;
    sr.cr2 = st.cr2;
  }
  if (ioctl(fd_, KVM_SET_SREGS, &sr) != 0) Fail("KVM_SET_SREGS");
  kvm_regs r;
  std::memset(&r, 0, sizeof r);
  r.rflags = st.rflags;
  r.rip = st.rip;
  r.rsp = st.rsp;
  r.rax = st.rax;
  r.rbx = st.rbx;
  if (ioctl(fd_, KVM_SET_REGS, &r) != 0) Fail("KVM_SET_REGS");
}

void KvmVcpu::SetBootState(const platform::BootImage& boot) {
  // A fresh vCPU: LDTR, TR, IDTR and CR2 keep KVM's reset values.
  LoadCpuState(platform::BootCpuState(boot), false);
}

void KvmVcpu::SetInitState() {
  LoadCpuState(platform::InitCpuState(), true);
}

void KvmVcpu::SetSipiState(uint8_t vector) {
  // Only CS and RIP change: the rest is the INIT state the vCPU is already in.
  const platform::CpuState st = platform::SipiCpuState(vector);
  kvm_sregs sr;
  if (ioctl(fd_, KVM_GET_SREGS, &sr) != 0) Fail("KVM_GET_SREGS");
  sr.cs.selector = st.cs.selector;
  sr.cs.base = st.cs.base;
  if (ioctl(fd_, KVM_SET_SREGS, &sr) != 0) Fail("KVM_SET_SREGS");
  kvm_regs r;
  if (ioctl(fd_, KVM_GET_REGS, &r) != 0) Fail("KVM_GET_REGS");
  r.rip = st.rip;
  if (ioctl(fd_, KVM_SET_REGS, &r) != 0) Fail("KVM_SET_REGS");
}

uint64_t KvmVcpu::Rip() const {
  kvm_regs r;
  if (ioctl(fd_, KVM_GET_REGS, &r) != 0) return ~0ull;
  return r.rip;
}

}  // namespace apicv::kvm
