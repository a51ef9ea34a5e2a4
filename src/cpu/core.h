// Internal: the interpreter core shared by the instruction handlers (exec_*.cc), the MMU
// (mmu.cc), event delivery (events.cc) and the run loop (cpu.cc). Not part of the cpu API.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/cpu.h"
#include "cpu/flags.h"
#include "cpu/insn.h"

namespace apicv::cpu {

// An exception raised while executing an instruction (SDM vol. 3A 6.3.1). Thrown from the
// handler and caught by the run loop, which delivers it through the IDT.
struct GuestFault {
  uint8_t vector;
  bool has_error;
  uint32_t error;
};

// Exception vectors (SDM vol. 3A table 6-1).
enum Vector : uint8_t {
  kExcDE = 0,
  kExcDB = 1,
  kExcNMI = 2,
  kExcBP = 3,
  kExcOF = 4,
  kExcBR = 5,
  kExcUD = 6,
  kExcNM = 7,
  kExcDF = 8,
  kExcTS = 10,
  kExcNP = 11,
  kExcSS = 12,
  kExcGP = 13,
  kExcPF = 14,
  kExcMF = 16,
  kExcAC = 17,
  kExcMC = 18,
};

// Access kinds for translation; values double as #PF error-code bits (SDM vol. 3A 4.7).
enum Access : uint8_t { kRead = 0, kWrite = 2, kFetch = 16 };

struct TlbEntry {
  uint64_t tag = ~0ull;  // (linear page << 1) | user
  uintptr_t addend = 0;  // host pointer = linear + addend
  uint64_t pfn = 0;      // guest physical page
};

struct Block;

#define APICV_CPU_INLINE inline __attribute__((always_inline))

struct Core {
  Core(GuestRam& r, CpuHost& h, const CpuFeatures& f);

  CpuState s;
  GuestRam& ram;
  CpuHost& host;
  CpuFeatures features;
  LazyFlags lf;

  // Derived from CS / CR0 / EFER (update_mode()).
  DecodeMode mode = DecodeMode::kReal16;
  bool long64 = false;      // 64-bit mode (EFER.LMA and CS.L)
  bool protected_ = false;  // CR0.PE
  uint8_t cpl = 0;
  uint8_t stack_size = 2;  // 2, 4 or 8: SS.B / long mode
  bool paging = false;

  // Execution of the current instruction.
  uint64_t next_rip = 0;
  bool end_block = false;   // the current instruction changed something the block depends on
  bool exit_after = false;  // a host callback asked to end the run

  // Run control.
  std::atomic<bool> exit_request{false};
  bool window_request = false;
  bool halted_in_shadow = false;  // see Cpu::take_halted_in_shadow
  int pending_vector = -1;
  bool pending_nmi = false;
  uint64_t retired = 0;

  static constexpr unsigned kTlbSize = 256;
  TlbEntry rtlb[kTlbSize], wtlb[kTlbSize], xtlb[kTlbSize];

  // Decoded blocks, direct-mapped by physical address; owned by `blocks`.
  static constexpr unsigned kBlockMapSize = 1u << 14;
  static constexpr size_t kMaxBlocks = 1u << 16;
  std::unique_ptr<Block*[]> block_map;
  // Linear-address -> block cache in front of the fetch translation and block_map; flushed with
  // the TLB (the linear->physical mapping may change) and whenever blocks are dropped.
  struct JumpEntry {
    uint64_t lin = ~0ull;
    uint8_t cpl = 0;
    Block* block = nullptr;
  };
  static constexpr unsigned kJumpCacheSize = 4096;
  std::unique_ptr<JumpEntry[]> jump_cache;
  void flush_jump_cache();
  std::vector<std::unique_ptr<Block>> blocks;

  // ---- modes
  void update_mode();
  void flush_tlb();
  void flush_tlb_page(uint64_t lin);

  [[noreturn]] void fault(uint8_t vector) { throw GuestFault{vector, false, 0}; }
  [[noreturn]] void fault(uint8_t vector, uint32_t error) { throw GuestFault{vector, true, error}; }

  // ---- registers
  APICV_CPU_INLINE uint64_t reg(uint8_t r, unsigned size) const {
    if (size == 1) return r >= 16 ? (s.gpr[r - 16] >> 8) & 0xFF : s.gpr[r] & 0xFF;
    if (size == 2) return s.gpr[r] & 0xFFFF;
    if (size == 4) return s.gpr[r] & 0xFFFFFFFFu;
    return s.gpr[r];
  }
  APICV_CPU_INLINE void set_reg(uint8_t r, unsigned size, uint64_t v) {
    switch (size) {
      case 1:
        if (r >= 16) {
          s.gpr[r - 16] = (s.gpr[r - 16] & ~0xFF00ull) | ((v & 0xFF) << 8);
        } else {
          s.gpr[r] = (s.gpr[r] & ~0xFFull) | (v & 0xFF);
        }
        break;
      case 2:
        s.gpr[r] = (s.gpr[r] & ~0xFFFFull) | (v & 0xFFFF);
        break;
      case 4:
        s.gpr[r] = v & 0xFFFFFFFFu;
        break;
      default:
        s.gpr[r] = v;
        break;
    }
  }

  // ---- flags
  uint64_t flags() {
    if (lf.op != LazyOp::kNone) materialize_flags();
    return s.rflags;
  }
  void materialize_flags();
  // CF alone, without materializing the other flags (INC/DEC keep it).
  bool carry() const;
  void set_flags(uint64_t f) {
    lf.op = LazyOp::kNone;
    s.rflags = (f & 0x3F7FD7ull) | 2;
  }
  bool cond(uint8_t cc);

  // ---- effective addresses and segments
  APICV_CPU_INLINE uint64_t ea(const Insn& i) const {
    uint64_t a = static_cast<uint64_t>(i.disp);
    if (i.base != kNoReg) a += i.base == kRipReg ? next_rip : s.gpr[i.base];
    if (i.index != kNoReg) a += s.gpr[i.index] << i.scale;
    return i.asz == 8 ? a : i.asz == 4 ? (a & 0xFFFFFFFFu) : (a & 0xFFFF);
  }
  // Segment offset -> linear address with the limit / canonical checks of the current mode.
  APICV_CPU_INLINE uint64_t linear(uint8_t seg, uint64_t off, unsigned size, bool write) {
    if (long64) {
      const uint64_t lin = off + (seg >= kFs && seg != kSegNone ? s.seg[seg].base : 0);
      if (static_cast<uint64_t>((static_cast<int64_t>(lin << 16) >> 16)) != lin) {
        fault(seg == kSs ? kExcSS : kExcGP, 0);
      }
      return lin;
    }
    return linear_legacy(seg, off, size, write);
  }
  uint64_t linear_legacy(uint8_t seg, uint64_t off, unsigned size, bool write);

  // ---- linear memory (TLB fast path, mmu.cc slow path)
  bool user_access() const { return cpl == 3; }
  APICV_CPU_INLINE uint8_t* host_ptr(TlbEntry* tlb, uint64_t lin, Access acc, bool user) {
    const uint64_t tag = ((lin >> 12) << 1) | (user ? 1 : 0);
    TlbEntry& e = tlb[(lin >> 12) & (kTlbSize - 1)];
    if (e.tag == tag) return reinterpret_cast<uint8_t*>(lin + e.addend);
    return fill_tlb(tlb, lin, acc, user);
  }
  // Returns the host pointer for a RAM page or null (MMIO); raises #PF.
  uint8_t* fill_tlb(TlbEntry* tlb, uint64_t lin, Access acc, bool user);
  // Page walk: linear -> physical, raising #PF (updates A/D).
  uint64_t translate(uint64_t lin, Access acc, bool user);

  APICV_CPU_INLINE uint64_t read_lin(uint64_t lin, unsigned size, bool user) {
    if (((lin & 0xFFF) + size) <= 0x1000) {
      uint8_t* p = host_ptr(rtlb, lin, kRead, user);
      if (p) return load_host(p, size);
    }
    return read_lin_slow(lin, size, user);
  }
  APICV_CPU_INLINE void write_lin(uint64_t lin, unsigned size, uint64_t v, bool user) {
    if (((lin & 0xFFF) + size) <= 0x1000) {
      TlbEntry& e = wtlb[(lin >> 12) & (kTlbSize - 1)];
      if (e.tag == (((lin >> 12) << 1) | (user ? 1 : 0))) {
        // Store first, then invalidate: a CPU decoding this page meanwhile sees the new bytes
        // or a bumped generation.
        store_host(reinterpret_cast<uint8_t*>(lin + e.addend), size, v);
        if (ram.is_code_page(e.pfn)) {
          ram.code_written(e.pfn);
          end_block = true;
        }
        return;
      }
    }
    write_lin_slow(lin, size, v, user);
  }
  uint64_t read_lin_slow(uint64_t lin, unsigned size, bool user);
  // The read half of a read-modify-write: translated for writing, so a fault reports the W bit
  // (SDM vol. 3A 4.7) and the dirty bit is set by the walk, before anything is written.
  APICV_CPU_INLINE uint64_t read_lin_rmw(uint64_t lin, unsigned size, bool user) {
    if (((lin & 0xFFF) + size) <= 0x1000) {
      uint8_t* p = host_ptr(wtlb, lin, kWrite, user);
      if (p) return load_host(p, size);
    }
    return read_lin_rmw_slow(lin, size, user);
  }
  uint64_t read_lin_rmw_slow(uint64_t lin, unsigned size, bool user);
  void write_lin_slow(uint64_t lin, unsigned size, uint64_t v, bool user);
  // Physical accesses (RAM or MMIO).
  uint64_t read_phys(uint64_t pa, unsigned size);
  void write_phys(uint64_t pa, unsigned size, uint64_t v);

  APICV_CPU_INLINE static uint64_t load_host(const uint8_t* p, unsigned size) {
    switch (size) {
      case 1:
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
      case 2:
        if ((reinterpret_cast<uintptr_t>(p) & 1) == 0) {
          return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
        }
        break;
      case 4:
        if ((reinterpret_cast<uintptr_t>(p) & 3) == 0) {
          return __atomic_load_n(reinterpret_cast<const uint32_t*>(p), __ATOMIC_ACQUIRE);
        }
        break;
      case 8:
        if ((reinterpret_cast<uintptr_t>(p) & 7) == 0) {
          return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_ACQUIRE);
        }
        break;
    }
    // Misaligned: byte by byte (still single host accesses, so another thread's racing store is
    // a guest race, not a host data race; x86 does not make these atomic either).
    uint64_t v = 0;
    for (unsigned k = 0; k < size; ++k) {
      v |= static_cast<uint64_t>(__atomic_load_n(p + k, __ATOMIC_RELAXED)) << (8 * k);
    }
    return v;
  }
  APICV_CPU_INLINE static void store_host(uint8_t* p, unsigned size, uint64_t v) {
    switch (size) {
      case 1:
        __atomic_store_n(p, static_cast<uint8_t>(v), __ATOMIC_RELEASE);
        return;
      case 2:
        if ((reinterpret_cast<uintptr_t>(p) & 1) == 0) {
          __atomic_store_n(reinterpret_cast<uint16_t*>(p), static_cast<uint16_t>(v),
                           __ATOMIC_RELEASE);
          return;
        }
        break;
      case 4:
        if ((reinterpret_cast<uintptr_t>(p) & 3) == 0) {
          __atomic_store_n(reinterpret_cast<uint32_t*>(p), static_cast<uint32_t>(v),
                           __ATOMIC_RELEASE);
          return;
        }
        break;
      case 8:
        if ((reinterpret_cast<uintptr_t>(p) & 7) == 0) {
          __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELEASE);
          return;
        }
        break;
    }
    for (unsigned k = 0; k < size; ++k) {
      __atomic_store_n(p + k, static_cast<uint8_t>(v >> (8 * k)), __ATOMIC_RELAXED);
    }
  }

  // Segment-relative accesses at the current privilege.
  APICV_CPU_INLINE uint64_t rd(uint8_t seg, uint64_t off, unsigned size) {
    return read_lin(linear(seg, off, size, false), size, user_access());
  }
  APICV_CPU_INLINE void wr(uint8_t seg, uint64_t off, unsigned size, uint64_t v) {
    write_lin(linear(seg, off, size, true), size, v, user_access());
  }
  APICV_CPU_INLINE uint64_t rd_rmw(uint8_t seg, uint64_t off, unsigned size) {
    return read_lin_rmw(linear(seg, off, size, true), size, user_access());
  }
  // Supervisor-mode implicit accesses (descriptor tables, IDT, TSS): SDM vol. 3A 4.6.
  uint64_t rd_sys(uint64_t lin, unsigned size) { return read_lin(lin, size, false); }
  void wr_sys(uint64_t lin, unsigned size, uint64_t v) { write_lin(lin, size, v, false); }

  // LOCKed read-modify-write of a memory operand: `op` maps the old value to the new one and is
  // applied atomically on the host (compare-and-swap loop). Returns the old value.
  template <typename F>
  uint64_t locked_rmw(uint8_t seg, uint64_t off, unsigned size, F op);
  // Host pointer for a locked access within one RAM page (null: MMIO or page-crossing), and
  // its page; after the store, locked_store_done(pfn) invalidates translations of that page
  // (store first, then invalidate, as write_lin does).
  uint8_t* writable_host(uint64_t lin, unsigned size, uint64_t* pfn);
  void locked_store_done(uint64_t pfn);

  // Operand helpers.
  APICV_CPU_INLINE uint64_t rm_read(const Insn& i, unsigned size) {
    return i.is_mem() ? rd(i.seg, ea(i), size) : reg(i.rm, size);
  }
  APICV_CPU_INLINE void rm_write(const Insn& i, unsigned size, uint64_t v) {
    if (i.is_mem()) {
      wr(i.seg, ea(i), size, v);
    } else {
      set_reg(i.rm, size, v);
    }
  }

  // ---- stack (SS-relative, the current stack size)
  void push(uint64_t v, unsigned size);
  uint64_t pop(unsigned size);
  uint64_t sp() const { return reg(kRsp, stack_size); }

  // ---- control transfer
  void jump(uint64_t target, unsigned osz) {
    if (osz == 2)
      target &= 0xFFFF;
    else if (osz == 4)
      target &= 0xFFFFFFFFu;
    if (!long64 && target > s.seg[kCs].limit) fault(kExcGP, 0);
    if (long64 && static_cast<uint64_t>(static_cast<int64_t>(target << 16) >> 16) != target) {
      fault(kExcGP, 0);
    }
    next_rip = target;
  }

  // ---- segments (segments.cc)
  void load_seg(uint8_t seg, uint16_t selector);  // MOV Sreg / POP Sreg / LDS... semantics
  void load_seg_real(uint8_t seg, uint16_t selector);
  uint64_t read_descriptor(uint16_t selector, uint8_t err_vector);
  void far_jump(uint16_t selector, uint64_t offset, unsigned osz, bool is_call, uint64_t ret_rip);
  void far_return(unsigned osz, uint16_t imm);
  static Segment descriptor_to_segment(uint16_t selector, uint64_t desc);
  // Linear address of `selector`'s descriptor; false when it lies outside the GDT / LDT.
  bool descriptor_address(uint16_t selector, uint64_t* lin);
  // Sets the accessed bit of a code/data descriptor in memory (SDM vol. 3A 3.4.5.1).
  void mark_accessed(uint16_t selector, uint64_t desc);
  // SS for a RET/IRET to privilege `new_cpl` (checked, accessed bit set; not yet loaded).
  Segment load_outer_stack(uint16_t ss_sel, unsigned new_cpl, bool to_64bit);
  // After RET/IRET to an outer level: null ES/DS/FS/GS the new CPL may not use.
  void invalidate_outer_segments();

  // ---- events (events.cc)
  // kSoftInt: INT n; kSoftException: INT3/INTO; kPrivSoftException: INT1 (ICEBP). The three
  // software kinds return to next_rip; INT n/INT3/INTO check the gate DPL.
  enum class EventKind : uint8_t {
    kException,
    kExternal,
    kNmi,
    kSoftInt,
    kSoftException,
    kPrivSoftException
  };
  void deliver_event(uint8_t vector, EventKind kind, bool has_error, uint32_t error);
  void deliver_fault(const GuestFault& f);
  void iret(unsigned osz);
  int fault_depth = 0;    // faults raised while delivering (table 6-5)
  bool fault_rf = false;  // delivering a fault: the pushed RFLAGS has RF set (SDM vol. 3A 17.3.1.1)
  uint8_t delivering = 0xFF;

  // ---- system
  void write_cr(unsigned n, uint64_t v);
  uint64_t read_cr(unsigned n);
  MsrResult rdmsr(uint32_t msr, uint64_t* v);
  MsrResult wrmsr(uint32_t msr, uint64_t v);
  void check_io(uint16_t port, unsigned size);  // IOPL / TSS I/O bitmap
};

template <typename F>
uint64_t Core::locked_rmw(uint8_t seg, uint64_t off, unsigned size, F op) {
  const uint64_t lin = linear(seg, off, size, true);
  uint64_t pfn = 0;
  uint8_t* p = writable_host(lin, size, &pfn);
  if (p == nullptr || (reinterpret_cast<uintptr_t>(p) & (size - 1)) != 0) {
    // Split (or MMIO) locked access: serialise all such accesses on one lock.
    std::lock_guard<std::mutex> g(ram.split_lock());
    const uint64_t old = read_lin(lin, size, user_access());
    write_lin(lin, size, op(old), user_access());
    return old;
  }
  switch (size) {
    case 1: {
      auto* q = p;
      uint8_t old = __atomic_load_n(q, __ATOMIC_RELAXED);
      while (!__atomic_compare_exchange_n(q, &old, static_cast<uint8_t>(op(old)), true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
      }
      locked_store_done(pfn);
      return old;
    }
    case 2: {
      auto* q = reinterpret_cast<uint16_t*>(p);
      uint16_t old = __atomic_load_n(q, __ATOMIC_RELAXED);
      while (!__atomic_compare_exchange_n(q, &old, static_cast<uint16_t>(op(old)), true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
      }
      locked_store_done(pfn);
      return old;
    }
    case 4: {
      auto* q = reinterpret_cast<uint32_t*>(p);
      uint32_t old = __atomic_load_n(q, __ATOMIC_RELAXED);
      while (!__atomic_compare_exchange_n(q, &old, static_cast<uint32_t>(op(old)), true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
      }
      locked_store_done(pfn);
      return old;
    }
    default: {
      auto* q = reinterpret_cast<uint64_t*>(p);
      uint64_t old = __atomic_load_n(q, __ATOMIC_RELAXED);
      while (!__atomic_compare_exchange_n(q, &old, op(old), true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED)) {
      }
      locked_store_done(pfn);
      return old;
    }
  }
}

}  // namespace apicv::cpu
