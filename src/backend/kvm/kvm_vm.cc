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

namespace apicv::kvm {

namespace {

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

kvm_segment Seg(uint16_t sel, uint64_t base, uint32_t limit, uint8_t type, bool code_or_data,
                bool db, bool l, bool g) {
  kvm_segment s;
  std::memset(&s, 0, sizeof s);
  s.selector = sel;
  s.base = base;
  s.limit = limit;
  s.type = type;
  s.present = 1;
  s.s = code_or_data ? 1 : 0;
  s.db = db ? 1 : 0;
  s.l = l ? 1 : 0;
  s.g = g ? 1 : 0;
  return s;
}

constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr0Nw = 1ull << 29, kCr0Cd = 1ull << 30;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;

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

KvmVm::KvmVm(const KvmSystem& sys, const GuestMemory& mem, IrqchipMode mode, int nr_vcpus) {
  fd_ = ioctl(sys.fd(), KVM_CREATE_VM, 0);
  if (fd_ < 0) throw KvmUnavailable(std::string("KVM_CREATE_VM failed: ") + std::strerror(errno));
  const int max_vcpus = sys.CheckExtension(KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && nr_vcpus > max_vcpus) {
    throw std::runtime_error("KVM supports at most " + std::to_string(max_vcpus) + " vCPUs");
  }
  // Intel needs a TSS area below 4 GiB for real-mode emulation; harmless elsewhere.
  ioctl(fd_, KVM_SET_TSS_ADDR, 0xFFFBD000ul);
  uint32_t slot = 0;
  for (const MemorySlot& s : mem.slots()) {
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

void KvmVcpu::SetBootState(const BootImage& boot) {
  kvm_sregs sr;
  if (ioctl(fd_, KVM_GET_SREGS, &sr) != 0) Fail("KVM_GET_SREGS");
  kvm_regs r;
  std::memset(&r, 0, sizeof r);
  r.rflags = 0x2;
  r.rip = boot.entry;
  switch (boot.mode) {
    case EntryMode::kReal16: {
      sr.cs = Seg(0, 0, 0xFFFF, 0xB, true, false, false, false);
      sr.ds = sr.es = sr.fs = sr.gs = sr.ss = Seg(0, 0, 0xFFFF, 0x3, true, false, false, false);
      sr.cr0 = (sr.cr0 & ~(kCr0Pe | kCr0Pg));
      r.rsp = 0x7C00;
      break;
    }
    case EntryMode::kProtected32: {
      // Multiboot §3.2: flat 4 GiB segments, CR0.PE=1, paging off; GDTR may be invalid.
      sr.cs = Seg(0x10, 0, 0xFFFFFFFF, 0xB, true, true, false, true);
      sr.ds = sr.es = sr.fs = sr.gs = sr.ss =
          Seg(0x18, 0, 0xFFFFFFFF, 0x3, true, true, false, true);
      sr.cr0 = (sr.cr0 | kCr0Pe | kCr0Et) & ~(kCr0Pg | kCr0Nw | kCr0Cd);
      r.rax = boot.eax;
      r.rbx = boot.ebx;
      break;
    }
    case EntryMode::kLong64: {
      sr.cs = Seg(0x8, 0, 0xFFFFFFFF, 0xB, true, false, true, true);
      sr.ds = sr.es = sr.fs = sr.gs = sr.ss =
          Seg(0x10, 0, 0xFFFFFFFF, 0x3, true, true, false, true);
      sr.gdt.base = boot.gdt_base;
      sr.gdt.limit = boot.gdt_limit;
      sr.cr3 = boot.cr3;
      sr.cr4 |= kCr4Pae;
      sr.cr0 = (sr.cr0 | kCr0Pe | kCr0Et | kCr0Pg) & ~(kCr0Nw | kCr0Cd);
      sr.efer |= kEferLme | kEferLma;
      r.rsp = 0x80000;
      break;
    }
  }
  if (ioctl(fd_, KVM_SET_SREGS, &sr) != 0) Fail("KVM_SET_SREGS");
  if (ioctl(fd_, KVM_SET_REGS, &r) != 0) Fail("KVM_SET_REGS");
}

void KvmVcpu::SetInitState() {
  kvm_sregs sr;
  if (ioctl(fd_, KVM_GET_SREGS, &sr) != 0) Fail("KVM_GET_SREGS");
  sr.cs = Seg(0xF000, 0xFFFF0000, 0xFFFF, 0xB, true, false, false, false);
  sr.ds = sr.es = sr.fs = sr.gs = sr.ss = Seg(0, 0, 0xFFFF, 0x3, true, false, false, false);
  sr.ldt = Seg(0, 0, 0xFFFF, 0x2, false, false, false, false);
  sr.tr = Seg(0, 0, 0xFFFF, 0xB, false, false, false, false);
  sr.gdt.base = sr.idt.base = 0;
  sr.gdt.limit = sr.idt.limit = 0xFFFF;
  sr.cr0 = 0x60000010;  // CD, NW, ET (SDM Table 10-1)
  sr.cr2 = sr.cr3 = sr.cr4 = 0;
  sr.efer = 0;
  if (ioctl(fd_, KVM_SET_SREGS, &sr) != 0) Fail("KVM_SET_SREGS");
  kvm_regs r;
  std::memset(&r, 0, sizeof r);
  r.rflags = 0x2;
  r.rip = 0xFFF0;
  if (ioctl(fd_, KVM_SET_REGS, &r) != 0) Fail("KVM_SET_REGS");
}

void KvmVcpu::SetSipiState(uint8_t vector) {
  kvm_sregs sr;
  if (ioctl(fd_, KVM_GET_SREGS, &sr) != 0) Fail("KVM_GET_SREGS");
  sr.cs.selector = static_cast<uint16_t>(vector) << 8;
  sr.cs.base = static_cast<uint64_t>(vector) << 12;
  if (ioctl(fd_, KVM_SET_SREGS, &sr) != 0) Fail("KVM_SET_SREGS");
  kvm_regs r;
  if (ioctl(fd_, KVM_GET_REGS, &r) != 0) Fail("KVM_GET_REGS");
  r.rip = 0;
  if (ioctl(fd_, KVM_SET_REGS, &r) != 0) Fail("KVM_SET_REGS");
}

uint64_t KvmVcpu::Rip() const {
  kvm_regs r;
  if (ioctl(fd_, KVM_GET_REGS, &r) != 0) return ~0ull;
  return r.rip;
}

}  // namespace apicv::kvm
