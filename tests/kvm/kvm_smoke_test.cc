// End-to-end runs on /dev/kvm with tiny hand-assembled guests: the kvm-irqchip path, the apicv
// path driven by a scripted IrqChip (MSR exits by reason, HLT wake-up through the kick), the
// multiboot entry registers, ports, reset limit. Skipped when /dev/kvm is absent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backend/kvm/run_guest.h"

namespace apicv::kvm {
namespace {

bool HaveKvm() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
}

#define REQUIRE_KVM() \
  if (!HaveKvm()) GTEST_SKIP() << "/dev/kvm is not available on this machine"

// 32-bit code fragments.
void Out8(std::vector<uint8_t>& c, uint16_t port, uint8_t v) {
  c.insert(c.end(), {0x66, 0xBA, static_cast<uint8_t>(port), static_cast<uint8_t>(port >> 8)});
  c.insert(c.end(), {0xB0, v, 0xEE});  // mov al, v; out dx, al
}
void OutEax(std::vector<uint8_t>& c, uint16_t port) {
  c.insert(c.end(),
           {0x66, 0xBA, static_cast<uint8_t>(port), static_cast<uint8_t>(port >> 8), 0xEF});
}
void Rdmsr(std::vector<uint8_t>& c, uint32_t msr) {
  c.insert(c.end(), {0xB9, static_cast<uint8_t>(msr), static_cast<uint8_t>(msr >> 8),
                     static_cast<uint8_t>(msr >> 16), static_cast<uint8_t>(msr >> 24), 0x0F, 0x32});
}
void MovEaxEbx(std::vector<uint8_t>& c) {
  c.insert(c.end(), {0x89, 0xD8});
}
void Hlt(std::vector<uint8_t>& c) {
  c.push_back(0xF4);
}

RunOptions Base(std::vector<uint8_t> code, IrqchipMode mode, std::string* serial) {
  RunOptions o;
  o.kernel = std::move(code);
  o.flat_entry = EntryMode::kProtected32;
  o.irqchip = mode;
  o.mem_size = 16ull << 20;
  o.timeout_s = 300;
  if (serial) o.serial = [serial](uint8_t b) { serial->push_back(static_cast<char>(b)); };
  return o;
}

TEST(KvmSmoke, KvmIrqchipSerialSampleAndDebugExit) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  Out8(c, 0x3F8, 'O');
  Out8(c, 0x3F8, 'K');
  Rdmsr(c, 0x1B);  // in-kernel LAPIC: IA32_APIC_BASE of the BSP
  OutEax(c, 0x2100);
  Out8(c, 0xF4, 0x10);
  Hlt(c);
  std::string serial;
  RunResult r = RunGuest(Base(c, IrqchipMode::kKvm, &serial));
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.debug_exit);
  EXPECT_EQ(r.exit_code, (0x10 << 1) | 1);
  EXPECT_EQ(serial, "OK");
  ASSERT_EQ(r.samples.size(), 1u);
  // Default base 0xFEE00000, enabled (bit 11), BSP (bit 8) — SDM 11.4.4.
  EXPECT_EQ(r.samples[0], 0xFEE00900u);
  EXPECT_GT(r.tsc_khz, 0u);
}

// In kvm mode port 0x61 belongs to KVM's PIT (KVM_PIT_SPEAKER_DUMMY): bit 0 reads back the
// channel-2 gate that was written, bit 1 the speaker enable (8254/PC-AT port B layout).
TEST(KvmSmoke, KvmIrqchipServesPortB) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  auto sample_port_b = [&c] {
    c.insert(c.end(), {0xE4, 0x61, 0x0F, 0xB6, 0xC0});  // in al, 0x61; movzx eax, al
    OutEax(c, 0x2100);
  };
  Out8(c, 0x61, 0x01);
  sample_port_b();
  Out8(c, 0x61, 0x02);
  sample_port_b();
  Out8(c, 0xF4, 0);
  Hlt(c);
  RunResult r = RunGuest(Base(c, IrqchipMode::kKvm, nullptr));
  EXPECT_EQ(r.error, "");
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0] & 0x03u, 0x01u);
  EXPECT_EQ(r.samples[1] & 0x03u, 0x02u);
}

TEST(KvmSmoke, MultibootEntryRegisters) {
  REQUIRE_KVM();
  // a.out-kludge multiboot image: header then code at 0x100020.
  std::vector<uint8_t> img(32, 0);
  auto put = [&](size_t off, uint32_t v) { std::memcpy(img.data() + off, &v, 4); };
  put(0, 0x1BADB002);
  put(4, 1u << 16);
  put(8, static_cast<uint32_t>(0u - 0x1BADB002u - (1u << 16)));
  put(12, 0x100000);
  put(16, 0x100000);
  put(20, 0);
  put(24, 0);
  put(28, 0x100020);
  std::vector<uint8_t> c;
  OutEax(c, 0x2100);  // EAX = multiboot magic
  MovEaxEbx(c);
  OutEax(c, 0x2100);  // EBX = info address
  Out8(c, 0xF4, 0);
  Hlt(c);
  img.insert(img.end(), c.begin(), c.end());
  RunOptions o = Base(img, IrqchipMode::kKvm, nullptr);
  o.flat_entry.reset();
  RunResult r = RunGuest(o);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0], 0x2BADB002u);
  EXPECT_EQ(r.samples[1], 0x9000u);
}

// A scripted IrqChip: serves IA32_APIC_BASE and the x2APIC ID MSR, and reports an event once
// `wake` is set (by another thread, followed by a kick).
// Lives in the test, so it outlives the chip RunGuest destroys.
struct ChipStats {
  std::atomic<bool> wake{false};
  std::atomic<int> rdmsr_apic_base{0}, rdmsr_x2apic_id{0}, enters{0}, exits{0};
  std::function<void(int)> kick;  // the first kick callback installed
  std::atomic<bool> have_kick{false};
};

class ScriptedChip final : public virt::IrqChip {
 public:
  explicit ScriptedChip(ChipStats& s) : s_(s) {}

  virt::AccessResult mmio_read(int, uint64_t, void*, unsigned) override {
    return virt::AccessResult::kNotMine;
  }
  virt::AccessResult mmio_write(int, uint64_t, const void*, unsigned) override {
    return virt::AccessResult::kNotMine;
  }
  virt::AccessResult pio_in(int, uint16_t, void*, unsigned) override {
    return virt::AccessResult::kNotMine;
  }
  virt::AccessResult pio_out(int, uint16_t, const void*, unsigned) override {
    return virt::AccessResult::kNotMine;
  }
  virt::AccessResult rdmsr(int, uint32_t msr, uint64_t* v) override {
    if (msr == 0x1B) {
      ++s_.rdmsr_apic_base;
      *v = 0xFEE00D00;
      return virt::AccessResult::kHandled;
    }
    if (msr == 0x802) {
      ++s_.rdmsr_x2apic_id;
      *v = 0x42;
      return virt::AccessResult::kHandled;
    }
    return virt::AccessResult::kNotMine;
  }
  virt::AccessResult wrmsr(int, uint32_t, uint64_t) override {
    return virt::AccessResult::kNotMine;
  }
  void set_cr8(int, uint64_t) override {}
  uint64_t get_cr8(int) override { return 0; }
  virt::Injection check_and_inject_events(int, bool, bool) override { return {}; }
  void interrupt_window_exit(int) override {}
  void vcpu_enter(int) override { ++s_.enters; }
  void vcpu_exit(int) override { ++s_.exits; }
  bool has_events(int, bool) override { return s_.wake.load(); }
  uint64_t next_deadline_ns(int) override { return UINT64_MAX; }
  void run_timers(int) override {}
  uint64_t next_deadline_ns() override { return UINT64_MAX; }  // the script owns no timer
  uint64_t service_timers(uint64_t) override { return UINT64_MAX; }
  virt::MpEvent take_mp_event(int) override { return {}; }
  void instruction_emulated(int) override {}
  void reset() override {}
  void set_kick(std::function<void(int)> k) override {
    if (s_.have_kick.load()) return;  // keep the first: the waker thread may be using it
    s_.kick = std::move(k);
    s_.have_kick.store(true);
  }

 private:
  ChipStats& s_;
};

TEST(KvmSmoke, ApicvModeMsrExitsReachTheIrqchip) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  Rdmsr(c, 0x1B);  // filtered: exits with reason FILTER
  OutEax(c, 0x2100);
  Rdmsr(c, 0x802);  // unknown to KVM without an in-kernel LAPIC: reason INVAL
  OutEax(c, 0x2100);
  Out8(c, 0xF4, 0x02);
  Hlt(c);
  ChipStats stats;
  ChipStats* chip = &stats;
  auto chip_owner = std::make_unique<ScriptedChip>(stats);
  RunOptions o = Base(c, IrqchipMode::kApicv, nullptr);
  o.irqchip_factory = [&](const virt::VmConfig&, const Clock&, virt::TimerService*) { return std::move(chip_owner); };
  RunResult r = RunGuest(o);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.exit_code, 5);
  ASSERT_EQ(r.samples.size(), 2u);
  EXPECT_EQ(r.samples[0], 0xFEE00D00u);
  EXPECT_EQ(r.samples[1], 0x42u);
  EXPECT_EQ(r.counters.msr_exits_filter, 1u);
  EXPECT_EQ(r.counters.msr_exits_inval, 1u);
  EXPECT_EQ(chip->rdmsr_apic_base.load(), 1);
  EXPECT_EQ(chip->rdmsr_x2apic_id.load(), 1);
  EXPECT_EQ(chip->enters.load(), chip->exits.load());
}

TEST(KvmSmoke, ApicvModeHaltWakesOnKick) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  Hlt(c);
  Out8(c, 0xF4, 0x03);
  Hlt(c);
  ChipStats stats;
  ChipStats* chip = &stats;
  auto chip_owner = std::make_unique<ScriptedChip>(stats);
  RunOptions o = Base(c, IrqchipMode::kApicv, nullptr);
  o.vm_config.halt_poll_ns = 0;  // sleep at once: the kick must wake the futex
  o.irqchip_factory = [&](const virt::VmConfig&, const Clock&, virt::TimerService*) { return std::move(chip_owner); };
  std::thread waker([chip] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    chip->wake.store(true);
    while (!chip->have_kick.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    chip->kick(0);
  });
  RunResult r;
  try {
    r = RunGuest(o);
  } catch (...) {
    waker.join();
    throw;
  }
  waker.join();
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.counters.halts, 1u);
  EXPECT_EQ(r.counters.halt_sleeps, 1u);
  EXPECT_GE(r.counters.kicks, 1u);
  EXPECT_GE(r.wall_s, 0.3);
}

TEST(KvmSmoke, ResetLoopEndsAtTheRebootLimit) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  Out8(c, 0x3F8, 'R');
  Out8(c, 0xCF9, 0x06);
  Hlt(c);
  std::string serial;
  RunOptions o = Base(c, IrqchipMode::kKvm, &serial);
  o.max_reboots = 2;
  RunResult r = RunGuest(o);
  EXPECT_EQ(r.exit_code, kExitVmmError);
  EXPECT_EQ(r.reboots, 2);
  EXPECT_EQ(serial, "RRR");  // first boot + two reboots
  EXPECT_NE(r.error.find("reboot limit"), std::string::npos);
}

TEST(KvmSmoke, TimeoutStopsAHungGuest) {
  REQUIRE_KVM();
  std::vector<uint8_t> c = {0xFA, 0xF4};  // cli; hlt: halts forever in kvm mode
  RunOptions o = Base(c, IrqchipMode::kKvm, nullptr);
  o.timeout_s = 1;
  RunResult r = RunGuest(o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, kExitTimeout);
}

TEST(KvmSmoke, ManyVcpusCanBeCreated) {
  REQUIRE_KVM();
  std::vector<uint8_t> c;
  Out8(c, 0xF4, 0x00);
  Hlt(c);
  for (int n : {4, 64}) {
    RunOptions o = Base(c, IrqchipMode::kKvm, nullptr);
    o.smp = n;
    RunResult r = RunGuest(o);
    EXPECT_EQ(r.error, "") << n;
    EXPECT_EQ(r.exit_code, 1) << n;
  }
}

}  // namespace
}  // namespace apicv::kvm
