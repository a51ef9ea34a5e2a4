// A bare machine for CPU unit tests: guest RAM, a recording CpuHost, and helpers that put the
// CPU into 64-bit long mode with identity-mapped page tables (first 1 GiB, 2 MiB pages), a flat
// GDT and an IDT whose gates the test fills.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <vector>

#include "cpu/cpu.h"

namespace apicv::cpu::test {

class RecordingHost : public CpuHost {
 public:
  uint32_t pio_in(uint16_t port, unsigned) override { return port_in[port]; }
  void pio_out(uint16_t port, unsigned, uint32_t value) override {
    outs.push_back({port, value});
  }
  void mmio_read(uint64_t gpa, void* data, unsigned len) override {
    uint64_t v = mmio[gpa];
    std::memcpy(data, &v, len);
    ++mmio_reads;
  }
  void mmio_write(uint64_t gpa, const void* data, unsigned len) override {
    uint64_t v = 0;
    std::memcpy(&v, data, len);
    mmio[gpa] = v;
    ++mmio_writes;
  }
  MsrResult rdmsr(uint32_t msr, uint64_t* value) override {
    auto it = msrs.find(msr);
    if (it == msrs.end()) return MsrResult::kGp;
    *value = it->second;
    return MsrResult::kOk;
  }
  MsrResult wrmsr(uint32_t msr, uint64_t value) override {
    if (msrs.find(msr) == msrs.end()) return MsrResult::kGp;
    msrs[msr] = value;
    return MsrResult::kOk;
  }
  uint64_t read_cr8() override { return cr8; }
  void write_cr8(uint64_t v) override { cr8 = v; }
  CpuidLeaf cpuid(uint32_t leaf, uint32_t) override { return CpuidLeaf{leaf, 0x1234, 0, 0}; }
  uint64_t rdtsc() override { return tsc += 1000; }
  uint64_t tsc_aux() override { return 7; }

  struct Out {
    uint16_t port;
    uint32_t value;
  };
  std::vector<Out> outs;
  std::map<uint16_t, uint32_t> port_in;
  std::map<uint64_t, uint64_t> mmio;
  std::map<uint32_t, uint64_t> msrs;
  uint64_t cr8 = 0, tsc = 0;
  int mmio_reads = 0, mmio_writes = 0;
};

class TestMachine {
 public:
  static constexpr uint64_t kRamSize = 8ull << 20;
  static constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000;
  static constexpr uint64_t kGdt = 0x6000, kIdt = 0x5000;
  static constexpr uint64_t kCode = 0x100000, kStackTop = 0x80000;

  explicit TestMachine(const CpuFeatures& f = {})
      : mem_(kRamSize), ram_(mem_.data(), kRamSize), cpu_(ram_, host_, f) {}

  uint8_t* mem() { return mem_.data(); }
  GuestRam& ram() { return ram_; }
  RecordingHost& host() { return host_; }
  Cpu& cpu() { return cpu_; }
  CpuState& s() { return cpu_.state(); }

  void put(uint64_t gpa, std::initializer_list<uint8_t> bytes) {
    std::memcpy(mem_.data() + gpa, std::data(bytes), bytes.size());
    ram_.note_write(gpa, bytes.size());
  }
  void put64(uint64_t gpa, uint64_t v) { std::memcpy(mem_.data() + gpa, &v, 8); }
  uint64_t get64(uint64_t gpa) const {
    uint64_t v;
    std::memcpy(&v, mem_.data() + gpa, 8);
    return v;
  }

  // 64-bit mode at CPL 0, paging on (identity map of the first GiB), RSP = kStackTop.
  void long_mode(uint64_t rip = kCode) {
    put64(kPml4, kPdpt | 0x7);
    put64(kPdpt, kPd | 0x7);
    for (uint64_t i = 0; i < 512; ++i) put64(kPd + i * 8, (i << 21) | 0x87);
    put64(kGdt + 0x00, 0);
    put64(kGdt + 0x08, 0x00AF9A000000FFFFull);  // 64-bit code
    put64(kGdt + 0x10, 0x00CF92000000FFFFull);  // data
    put64(kGdt + 0x18, 0x00AFFA000000FFFFull);  // 64-bit code, DPL 3
    put64(kGdt + 0x20, 0x00CFF2000000FFFFull);  // data, DPL 3
    CpuState& st = s();
    st.cr0 = 0x80050033;  // PG WP NE ET MP PE
    st.cr3 = kPml4;
    st.cr4 = 0x20;         // PAE
    st.efer = 0x500 | 0x800;  // LME LMA NXE
    st.gdtr = {kGdt, 0x27};
    st.idtr = {kIdt, 0xFFF};
    st.seg[kCs] = Segment{0x08, 0, 0xFFFFFFFF, 0xA09B};
    for (uint8_t i : {kEs, kSs, kDs, kFs, kGs}) st.seg[i] = Segment{0x10, 0, 0xFFFFFFFF, 0xC093};
    st.tr = Segment{0, 0, 0x67, 0x8B};
    st.rip = rip;
    st.rflags = 2;
    st.gpr[kRsp] = kStackTop;
    cpu_.state_changed();
  }

  // A 64-bit interrupt gate for `vector` to `handler` (CS 0x08, DPL 0).
  void gate(uint8_t vector, uint64_t handler, uint8_t type_attr = 0x8E, uint8_t ist = 0) {
    const uint64_t lo = (handler & 0xFFFF) | (0x08ull << 16) | (static_cast<uint64_t>(ist) << 32) |
                        (static_cast<uint64_t>(type_attr) << 40) |
                        (((handler >> 16) & 0xFFFF) << 48);
    put64(kIdt + vector * 16, lo);
    put64(kIdt + vector * 16 + 8, handler >> 32);
  }

 private:
  std::vector<uint8_t> mem_;
  GuestRam ram_;
  RecordingHost host_;
  Cpu cpu_;
};

}  // namespace apicv::cpu::test
