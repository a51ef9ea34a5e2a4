// Several software CPUs on host threads sharing one GuestRam, as -accel emu,thread=multi runs
// them: LOCK-prefixed read-modify-writes and XCHG are atomic on the host (counters end exact),
// a locked access that splits a cache line falls back to the split lock and is still atomic, and
// another CPU's stores into code this CPU has decoded are seen (cross-modifying code). Run under
// the tsan preset, these also show the shared paths are free of host data races.
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "cpu_test_machine.h"

namespace apicv::cpu::test {
namespace {

constexpr uint64_t kCode = TestMachine::kCode;
constexpr uint32_t kData = 0x200000;  // a data page no CPU executes from

void le32(std::vector<uint8_t>& v, uint32_t x) {
  for (int k = 0; k < 4; ++k) v.push_back(static_cast<uint8_t>(x >> (8 * k)));
}

// CPUs 1..n-1 share CPU 0's RAM, page tables and descriptor tables; each has its own host and
// its own stack.
class SmpMachine {
 public:
  explicit SmpMachine(int n) {
    m_.long_mode();
    for (int i = 1; i < n; ++i) {
      hosts_.push_back(std::make_unique<RecordingHost>());
      cpus_.push_back(std::make_unique<Cpu>(m_.ram(), *hosts_.back()));
    }
    m_.ram().set_shared(true);
  }
  TestMachine& m() { return m_; }
  int size() const { return static_cast<int>(cpus_.size()) + 1; }
  Cpu& cpu(int i) { return i == 0 ? m_.cpu() : *cpus_[static_cast<size_t>(i - 1)]; }

  void put(uint64_t gpa, const std::vector<uint8_t>& bytes) {
    std::memcpy(m_.mem() + gpa, bytes.data(), bytes.size());
    m_.ram().note_write(gpa, bytes.size());
  }
  // CPU i starts at `rip` with the long-mode state of CPU 0 and its own stack.
  void start(int i, uint64_t rip) {
    Cpu& c = cpu(i);
    if (i != 0) c.state() = m_.s();
    c.state().rip = rip;
    c.state().gpr[kRsp] = TestMachine::kStackTop - 0x4000ull * static_cast<uint64_t>(i);
    c.state_changed();
  }
  // Runs every CPU on its own thread until each halts; false if one stopped for another reason.
  bool run_all() {
    std::vector<std::thread> threads;
    std::vector<int> ok(static_cast<size_t>(size()), 0);
    for (int i = 0; i < size(); ++i) {
      threads.emplace_back([this, i, &ok] {
        for (;;) {
          const RunResult r = cpu(i).run(10'000);
          if (r.reason == StopReason::kHlt) {
            ok[static_cast<size_t>(i)] = 1;
            return;
          }
          if (r.reason != StopReason::kBudget) return;
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int v : ok) {
      if (!v) return false;
    }
    return true;
  }
  uint64_t get64(uint64_t gpa) { return m_.get64(gpa); }

 private:
  TestMachine m_;
  std::vector<std::unique_ptr<RecordingHost>> hosts_;
  std::vector<std::unique_ptr<Cpu>> cpus_;
};

// mov ecx, n; L: mov eax, 1; lock xadd [addr], eax; dec ecx; jnz L; hlt
std::vector<uint8_t> xadd_loop(uint32_t n, uint32_t addr) {
  std::vector<uint8_t> c = {0xB9};
  le32(c, n);
  c.insert(c.end(), {0xB8, 0x01, 0x00, 0x00, 0x00, 0xF0, 0x0F, 0xC1, 0x04, 0x25});
  le32(c, addr);
  c.insert(c.end(), {0xFF, 0xC9, 0x75, 0xEE, 0xF4});  // 18 bytes back to L
  return c;
}

TEST(CpuSmp, LockXaddFromFourCpusCountsExactly) {
  constexpr uint32_t kIters = 100'000;
  SmpMachine s(4);
  s.put(kCode, xadd_loop(kIters, kData));
  for (int i = 0; i < 4; ++i) s.start(i, kCode);
  ASSERT_TRUE(s.run_all());
  EXPECT_EQ(s.get64(kData), 4ull * kIters);
}

TEST(CpuSmp, LockIncFromTwoCpusCountsExactly) {
  constexpr uint32_t kIters = 100'000;
  SmpMachine s(2);
  // mov ecx, n; L: lock inc qword [kData + 8]; dec ecx; jnz L; hlt
  std::vector<uint8_t> c = {0xB9};
  le32(c, kIters);
  c.insert(c.end(), {0xF0, 0x48, 0xFF, 0x04, 0x25});
  le32(c, kData + 8);
  c.insert(c.end(), {0xFF, 0xC9, 0x75, 0xF3, 0xF4});  // 13 bytes back to L
  s.put(kCode, c);
  s.start(0, kCode);
  s.start(1, kCode);
  ASSERT_TRUE(s.run_all());
  EXPECT_EQ(s.get64(kData + 8), 2ull * kIters);
}

TEST(CpuSmp, SplitLockedXaddIsAtomicThroughTheSplitLock) {
  // A 4-byte counter across a cache-line boundary (0x3E..0x41): no host atomic covers it.
  constexpr uint32_t kIters = 50'000;
  constexpr uint32_t kSplit = kData + 0x3E;
  SmpMachine s(2);
  s.put(kCode, xadd_loop(kIters, kSplit));
  s.start(0, kCode);
  s.start(1, kCode);
  ASSERT_TRUE(s.run_all());
  uint32_t v;
  std::memcpy(&v, s.m().mem() + kSplit, 4);
  EXPECT_EQ(v, 2u * kIters);
}

TEST(CpuSmp, XchgSpinlockMakesPlainIncrementsExact) {
  // L: mov eax, 1; spin: xchg [lock], eax; test eax, eax; jnz spin;
  //    mov rdx, [cnt]; inc rdx; mov [cnt], rdx; mov dword [lock], 0; dec ecx; jnz L; hlt
  constexpr uint32_t kIters = 20'000;
  constexpr uint32_t kLock = kData + 0x100, kCnt = kData + 0x200;
  SmpMachine s(2);
  std::vector<uint8_t> c = {0xB9};
  le32(c, kIters);
  c.insert(c.end(), {0xB8, 0x01, 0x00, 0x00, 0x00, 0x87, 0x04, 0x25});
  le32(c, kLock);
  c.insert(c.end(), {0x85, 0xC0, 0x75, 0xF5, 0x48, 0x8B, 0x14, 0x25});
  le32(c, kCnt);
  c.insert(c.end(), {0x48, 0xFF, 0xC2, 0x48, 0x89, 0x14, 0x25});
  le32(c, kCnt);
  c.insert(c.end(), {0xC7, 0x04, 0x25});
  le32(c, kLock);
  le32(c, 0);
  c.insert(c.end(), {0xFF, 0xC9, 0x75, 0xCE, 0xF4});  // 50 bytes back to L
  s.put(kCode, c);
  s.start(0, kCode);
  s.start(1, kCode);
  ASSERT_TRUE(s.run_all());
  EXPECT_EQ(s.get64(kCnt), 2ull * kIters);
  EXPECT_EQ(s.get64(kLock), 0u);
}

TEST(CpuSmp, CrossModifiedCodeIsSeenByTheOtherCpu) {
  // CPU 1 rewrites the immediate of `mov eax, imm32; ret` at kFn from n down to 1, then sets a
  // done flag, while CPU 0 keeps calling it; once CPU 0 sees the flag (CPU 1's last store is
  // before it), at most kCalls more calls must return 1 (a block decoded from stale bytes and kept
  // valid would return an old value forever). CPU 0 is not bounded while CPU 1 writes: the host
  // may run the two threads at any relative speed.
  constexpr uint32_t kFn = 0x300000, kWrites = 2'000'000, kCalls = 1000;
  constexpr uint32_t kFails = kData + 0x300, kDone = kData + 0x400;
  SmpMachine s(2);
  std::vector<uint8_t> fn = {0x90, 0x90, 0x90, 0xB8};  // imm32 at kFn + 4 (aligned store)
  le32(fn, 0xFFFFFFFFu);
  fn.push_back(0xC3);
  s.put(kFn, fn);
  // CPU 0: mov r8d, kCalls; L: call kFn; cmp eax, 1; je done; cmp dword [kDone], 0; je L;
  //        dec r8d; jnz L; inc dword [kFails]; done: hlt
  std::vector<uint8_t> a = {0x41, 0xB8};
  le32(a, kCalls);
  const uint32_t call_at = kCode + 6;
  a.push_back(0xE8);
  le32(a, kFn - (call_at + 5));
  a.insert(a.end(), {0x83, 0xF8, 0x01, 0x74, 0x16, 0x83, 0x3C, 0x25});  // je +22 -> done
  le32(a, kDone);
  a.insert(a.end(), {0x00, 0x74, 0xEC, 0x41, 0xFF, 0xC8, 0x75, 0xE7, 0xFF, 0x04,
                     0x25});  // je -20 -> L; jnz -25 -> L
  le32(a, kFails);
  a.push_back(0xF4);
  s.put(kCode, a);
  // CPU 1: mov ecx, kWrites; L: mov [kFn + 4], ecx; dec ecx; jnz L; mov dword [kDone], 1; hlt
  std::vector<uint8_t> b = {0xB9};
  le32(b, kWrites);
  b.insert(b.end(), {0x89, 0x0C, 0x25});
  le32(b, kFn + 4);
  b.insert(b.end(), {0xFF, 0xC9, 0x75, 0xF5, 0xC7, 0x04, 0x25});  // 11 bytes back to L
  le32(b, kDone);
  le32(b, 1);
  b.push_back(0xF4);
  s.put(kCode + 0x1000, b);
  s.start(0, kCode);
  s.start(1, kCode + 0x1000);
  ASSERT_TRUE(s.run_all());
  uint32_t fails, done;
  std::memcpy(&fails, s.m().mem() + kFails, 4);
  std::memcpy(&done, s.m().mem() + kDone, 4);
  EXPECT_EQ(done, 1u);
  EXPECT_EQ(fails, 0u);
  EXPECT_EQ(s.cpu(0).state().gpr[kRax] & 0xFFFFFFFFu, 1u);
}

}  // namespace
}  // namespace apicv::cpu::test
