// The run loop, the block cache and the public Cpu interface (docs/cpu.md).
#include "cpu/cpu.h"

#include "cpu/core.h"
#include "cpu/decoder.h"

namespace apicv::cpu {

Core::Core(GuestRam& r, CpuHost& h, const CpuFeatures& f)
    : ram(r),
      host(h),
      features(f),
      block_map(new Block*[kBlockMapSize]()),
      jump_cache(new JumpEntry[kJumpCacheSize]()) {
  update_mode();
}

void Core::update_mode() {
  protected_ = (s.cr0 & kCr0Pe) != 0;
  paging = (s.cr0 & kCr0Pg) != 0 && protected_;
  const bool lma = (s.efer & kEferLma) != 0;
  const Segment& cs = s.seg[kCs];
  long64 = lma && cs.l();
  if (!protected_) {
    mode = DecodeMode::kReal16;
    cpl = 0;
  } else {
    if (long64) {
      mode = DecodeMode::kLong64;
    } else if (lma) {
      mode = cs.db() ? DecodeMode::kCompat32 : DecodeMode::kCompat16;
    } else {
      mode = cs.db() ? DecodeMode::kProt32 : DecodeMode::kProt16;
    }
    cpl = static_cast<uint8_t>(cs.dpl());
  }
  stack_size = long64 ? 8 : (s.seg[kSs].db() && protected_ ? 4 : 2);
}

void Core::flush_tlb() {
  for (unsigned i = 0; i < kTlbSize; ++i) {
    rtlb[i].tag = wtlb[i].tag = xtlb[i].tag = ~0ull;
  }
  flush_jump_cache();
}

void Core::flush_jump_cache() {
  for (unsigned i = 0; i < kJumpCacheSize; ++i) jump_cache[i] = JumpEntry{};
}

void Core::flush_tlb_page(uint64_t lin) {
  const unsigned i = (lin >> 12) & (kTlbSize - 1);
  rtlb[i].tag = wtlb[i].tag = xtlb[i].tag = ~0ull;
  flush_jump_cache();
}

bool Core::carry() const {
  const unsigned size = lf.size;
  const uint64_t m = size_mask(size), sb = sign_bit(size);
  const uint64_t res = lf.res & m, a = lf.a & m, b = lf.b & m;
  switch (lf.op) {
    case LazyOp::kAdd:
      return (((a & b) | ((a | b) & ~res)) & sb) != 0;
    case LazyOp::kSub:
      return (((~a & b) | ((~a | b) & res)) & sb) != 0;
    case LazyOp::kLogic:
      return false;
    case LazyOp::kInc:
    case LazyOp::kDec:
      return lf.cf;
    default:
      return (s.rflags & kCF) != 0;
  }
}

void Core::materialize_flags() {
  const unsigned size = lf.size;
  const uint64_t m = size_mask(size), sb = sign_bit(size);
  const uint64_t res = lf.res & m, a = lf.a & m, b = lf.b & m;
  uint64_t f = s.rflags & ~kArithFlags;
  switch (lf.op) {
    case LazyOp::kAdd:
      if ((((a & b) | ((a | b) & ~res)) & sb) != 0) f |= kCF;
      if (((a ^ res) & (b ^ res) & sb) != 0) f |= kOF;
      if (((a ^ b ^ res) & 0x10) != 0) f |= kAF;
      break;
    case LazyOp::kSub:
      if ((((~a & b) | ((~a | b) & res)) & sb) != 0) f |= kCF;
      if (((a ^ b) & (a ^ res) & sb) != 0) f |= kOF;
      if (((a ^ b ^ res) & 0x10) != 0) f |= kAF;
      break;
    case LazyOp::kLogic:
      break;
    case LazyOp::kInc:
      if (lf.cf) f |= kCF;
      if (res == sb) f |= kOF;
      if ((res & 0xF) == 0) f |= kAF;
      break;
    case LazyOp::kDec:
      if (lf.cf) f |= kCF;
      if (res == sb - 1) f |= kOF;
      if ((res & 0xF) == 0xF) f |= kAF;
      break;
    case LazyOp::kNone:
      return;
  }
  if (res == 0) f |= kZF;
  if ((res & sb) != 0) f |= kSF;
  if (parity_even(res)) f |= kPF;
  s.rflags = f;
  lf.op = LazyOp::kNone;
}

// Condition codes (SDM vol. 2 appendix B.1): 0 O, 1 NO, 2 B, 3 AE, 4 E, 5 NE, 6 BE, 7 A, 8 S,
// 9 NS, A P, B NP, C L, D GE, E LE, F G.
bool Core::cond(uint8_t cc) {
  bool r;
  if (lf.op == LazyOp::kSub && cc != 0xA && cc != 0xB) {
    const unsigned size = lf.size;
    const uint64_t m = size_mask(size);
    const uint64_t a = lf.a & m, b = lf.b & m, res = lf.res & m;
    const int64_t sa = sign_extend(a, size), sbv = sign_extend(b, size);
    // lf.res may include a borrow-in (SBB); fall back when it does not equal a - b.
    if (((a - b) & m) == res) {
      switch (cc >> 1) {
        case 0:
          r = ((a ^ b) & (a ^ res) & sign_bit(size)) != 0;
          break;
        case 1:
          r = a < b;
          break;
        case 2:
          r = a == b;
          break;
        case 3:
          r = a <= b;
          break;
        case 4:
          r = (res & sign_bit(size)) != 0;
          break;
        case 6:
          r = sa < sbv;
          break;
        case 7:
          r = sa <= sbv;
          break;
        default:
          r = false;
          break;
      }
      return (cc & 1) ? !r : r;
    }
  } else if ((lf.op == LazyOp::kInc || lf.op == LazyOp::kDec) && (cc >> 1) == 2) {
    r = (lf.res & size_mask(lf.size)) == 0;
    return (cc & 1) ? !r : r;
  } else if (lf.op == LazyOp::kLogic) {
    const uint64_t res = lf.res & size_mask(lf.size);
    const bool sf = (res & sign_bit(lf.size)) != 0;
    switch (cc >> 1) {
      case 0:
        r = false;
        break;  // OF = 0
      case 1:
        r = false;
        break;  // CF = 0
      case 2:
        r = res == 0;
        break;
      case 3:
        r = res == 0;
        break;  // CF | ZF
      case 4:
        r = sf;
        break;
      case 5:
        r = parity_even(res);
        break;
      case 6:
        r = sf;
        break;  // SF != OF, OF = 0
      default:
        r = sf || res == 0;
        break;
    }
    return (cc & 1) ? !r : r;
  }
  const uint64_t f = flags();
  const bool of = f & kOF, cf = f & kCF, zf = f & kZF, sf = f & kSF, pf = f & kPF;
  switch (cc >> 1) {
    case 0:
      r = of;
      break;
    case 1:
      r = cf;
      break;
    case 2:
      r = zf;
      break;
    case 3:
      r = cf || zf;
      break;
    case 4:
      r = sf;
      break;
    case 5:
      r = pf;
      break;
    case 6:
      r = sf != of;
      break;
    default:
      r = zf || (sf != of);
      break;
  }
  return (cc & 1) ? !r : r;
}

namespace {

inline unsigned block_slot(uint64_t pa, DecodeMode mode) {
  return static_cast<unsigned>(((pa >> 0) ^ (pa >> 14) ^ (static_cast<uint64_t>(mode) << 11)) &
                               (Core::kBlockMapSize - 1));
}

inline bool block_valid(const Core& c, const Block* b) {
  return b->mode == c.mode && c.ram.generation(b->pfn0) == b->gen0 &&
         (b->pfn1 == ~0ull || c.ram.generation(b->pfn1) == b->gen1);
}

Block* find_block_slow(Core& c, uint64_t lin);

inline Block* find_block(Core& c) {
  uint64_t lin = c.s.rip;
  if (!c.long64) {
    lin = c.linear(kCs, c.s.rip, 1, false);
  } else if (static_cast<uint64_t>(static_cast<int64_t>(lin << 16) >> 16) != lin) {
    c.fault(kExcGP, 0);  // a non-canonical RIP faults on fetch
  }
  Core::JumpEntry& j = c.jump_cache[(lin ^ (lin >> 12)) & (Core::kJumpCacheSize - 1)];
  if (j.block != nullptr && j.lin == lin && j.cpl == c.cpl && block_valid(c, j.block)) {
    return j.block;
  }
  Block* b = find_block_slow(c, lin);
  j.lin = lin;
  j.cpl = c.cpl;
  j.block = b;
  return b;
}

Block* find_block_slow(Core& c, uint64_t lin) {
  // Fetch translation for the block's first byte (the decoder checks the rest).
  const uint64_t tag = ((lin >> 12) << 1) | (c.user_access() ? 1 : 0);
  TlbEntry& e = c.xtlb[(lin >> 12) & (Core::kTlbSize - 1)];
  uint64_t pa;
  if (e.tag == tag) {
    pa = (e.pfn << 12) | (lin & 0xFFF);
  } else {
    c.fill_tlb(c.xtlb, lin, kFetch, c.user_access());
    pa = (c.xtlb[(lin >> 12) & (Core::kTlbSize - 1)].pfn << 12) | (lin & 0xFFF);
  }
  const unsigned slot = block_slot(pa, c.mode);
  Block* b = c.block_map[slot];
  if (b != nullptr && b->pa == pa && block_valid(c, b)) return b;
  if (c.blocks.size() >= Core::kMaxBlocks) {
    // Bounded memory whatever the guest does: start over.
    for (unsigned i = 0; i < Core::kBlockMapSize; ++i) c.block_map[i] = nullptr;
    c.flush_jump_cache();
    c.blocks.clear();
  }
  auto nb = std::make_unique<Block>();
  decode_block(c, lin, pa, *nb);
  b = nb.get();
  c.blocks.push_back(std::move(nb));
  c.block_map[slot] = b;
  return b;
}

}  // namespace

}  // namespace apicv::cpu

namespace apicv::cpu {

namespace {

// Delivers the injected event, if any, at this boundary.
void deliver_pending(Core& c) {
  if (c.pending_nmi) {
    c.pending_nmi = false;
    c.s.activity = Activity::kActive;
    c.deliver_event(kExcNMI, Core::EventKind::kNmi, false, 0);
    c.s.nmi_blocked = true;
  } else if (c.pending_vector >= 0) {
    const uint8_t v = static_cast<uint8_t>(c.pending_vector);
    c.pending_vector = -1;
    c.s.activity = Activity::kActive;
    c.deliver_event(v, Core::EventKind::kExternal, false, 0);
  }
}

}  // namespace

RunResult run_core(Core& c, uint64_t budget) {
  RunResult result;
  const uint64_t start = c.retired;
  const uint64_t limit = start + budget;
  if (c.s.activity == Activity::kShutdown) {
    result.reason = StopReason::kShutdown;
    return result;
  }
  try {
    deliver_pending(c);
  } catch (const GuestFault& f) {
    c.deliver_fault(f);
  }
  if (c.s.activity != Activity::kActive) {
    result.reason =
        c.s.activity == Activity::kShutdown ? StopReason::kShutdown : StopReason::kNotActive;
    return result;
  }
  StopReason reason = StopReason::kBudget;
  while (c.retired < limit) {
    // Acquire pairs with request_exit()'s release: the kicker's writes (a posted event) are
    // visible to the checks the host makes after this run.
    if (c.exit_request.load(std::memory_order_relaxed) &&
        c.exit_request.exchange(false, std::memory_order_acquire)) {
      reason = StopReason::kExit;
      break;
    }
    const bool shadow = c.s.sti_shadow || c.s.mov_ss_shadow;
    if (!shadow && c.window_request && (c.s.rflags & kIF)) {
      reason = StopReason::kIrqWindow;
      break;
    }
    try {
      Block* b = find_block(c);
      const Insn* in = b->insns.data();
      uint64_t n = b->insns.size();
      const bool single = shadow || (c.s.rflags & kTF) != 0;
      if (single) n = 1;
      if (n > limit - c.retired) n = limit - c.retired;
      const bool tf = (c.s.rflags & kTF) != 0;
      c.end_block = false;
      // c.retired counts each instruction as it completes, so a CpuHost callback (a port, MMIO or
      // MSR access) sees exactly the instructions before its own (virtual time, the vPMU).
      const uint64_t block_end = c.retired + n;
      while (c.retired < block_end) {
        c.next_rip = c.s.rip + in->len;
        in->fn(c, *in);
        c.s.rip = c.next_rip;
        ++c.retired;
        ++in;
        if (c.end_block) break;
      }
      if (shadow) {
        c.s.sti_shadow = c.s.mov_ss_shadow = false;
        if (c.s.activity == Activity::kHalted) c.halted_in_shadow = true;
      }
      // A single-step trap is held off by the MOV SS / POP SS the instruction just executed
      // (SDM vol. 3A 6.8.3), and is taken after the next one.
      if (tf && c.s.activity == Activity::kActive && !c.s.mov_ss_shadow) {
        c.s.dr[6] |= 0x4000;  // BS
        c.deliver_event(kExcDB, Core::EventKind::kException, false, 0);
      }
      if (c.exit_after) {
        c.exit_after = false;
        reason = StopReason::kExit;
        break;
      }
      if (c.s.activity != Activity::kActive) {
        reason = c.s.activity == Activity::kHalted     ? StopReason::kHlt
                 : c.s.activity == Activity::kShutdown ? StopReason::kShutdown
                                                       : StopReason::kNotActive;
        break;
      }
    } catch (const GuestFault& f) {
      c.deliver_fault(f);
      if (c.s.activity == Activity::kShutdown) {
        reason = StopReason::kShutdown;
        break;
      }
      if (c.exit_after) {
        c.exit_after = false;
        reason = StopReason::kExit;
        break;
      }
    }
  }
  // The platform reads RFLAGS from state() between runs: materialize the lazy flags.
  c.flags();
  result.reason = reason;
  result.retired = c.retired - start;
  return result;
}

Cpu::Cpu(GuestRam& ram, CpuHost& host, const CpuFeatures& features)
    : core_(std::make_unique<Core>(ram, host, features)) {
  reset();
}
Cpu::~Cpu() = default;

CpuState& Cpu::state() {
  return core_->s;
}
const CpuState& Cpu::state() const {
  return core_->s;
}

void Cpu::state_changed() {
  core_->lf.op = LazyOp::kNone;
  core_->update_mode();
  core_->flush_tlb();
}

RunResult Cpu::run(uint64_t budget) {
  return run_core(*core_, budget);
}

void Cpu::reset() {
  CpuState& s = core_->s;
  s = CpuState{};
  s.gpr[kRdx] = 0x600;  // family/model/stepping after RESET (SDM vol. 3A 10.1.4)
  s.seg[kCs] = Segment{0xF000, 0xFFFF0000, 0xFFFF, 0x9B};
  for (uint8_t i : {kEs, kSs, kDs, kFs, kGs}) s.seg[i] = Segment{0, 0, 0xFFFF, 0x93};
  core_->lf.op = LazyOp::kNone;
  core_->pending_vector = -1;
  core_->pending_nmi = false;
  core_->update_mode();
  core_->flush_tlb();
}

void Cpu::init(bool wait_for_sipi) {
  CpuState& s = core_->s;
  const uint64_t star = s.star, lstar = s.lstar, cstar = s.cstar, sfmask = s.sfmask,
                 kgs = s.kernel_gs_base, pat = s.pat;
  const uint64_t cr0 = s.cr0;
  reset();
  // INIT keeps CR0.CD/NW and the SYSCALL/PAT MSRs (SDM vol. 3A table 10-1 "following INIT");
  // EFER is cleared, as KVM's kvm_vcpu_reset(init_event) and QEMU do.
  s.cr0 = (s.cr0 & ~(kCr0Cd | kCr0Nw)) | (cr0 & (kCr0Cd | kCr0Nw));
  s.efer = 0;
  s.star = star, s.lstar = lstar, s.cstar = cstar, s.sfmask = sfmask, s.kernel_gs_base = kgs;
  s.pat = pat;
  s.activity = wait_for_sipi ? Activity::kWaitForSipi : Activity::kActive;
  core_->update_mode();
}

void Cpu::sipi(uint8_t vector) {
  CpuState& s = core_->s;
  if (s.activity != Activity::kWaitForSipi) return;  // ignored unless waiting (SDM 8.4.4.1)
  s.seg[kCs] = Segment{static_cast<uint16_t>(vector << 8), static_cast<uint64_t>(vector) << 12,
                       0xFFFF, 0x9B};
  s.rip = 0;
  s.activity = Activity::kActive;
  core_->update_mode();
}

void Cpu::inject_interrupt(uint8_t vector) {
  core_->pending_vector = vector;
}
void Cpu::inject_nmi() {
  core_->pending_nmi = true;
}
bool Cpu::take_halted_in_shadow() {
  const bool r = core_->halted_in_shadow;
  core_->halted_in_shadow = false;
  return r;
}
bool Cpu::ready_for_interrupt() const {
  const CpuState& s = core_->s;
  return (s.rflags & kIF) != 0 && !s.sti_shadow && !s.mov_ss_shadow && core_->pending_vector < 0;
}
bool Cpu::nmi_blocked() const {
  return core_->s.nmi_blocked || core_->pending_nmi;
}
void Cpu::set_interrupt_window_request(bool on) {
  core_->window_request = on;
}
void Cpu::request_exit() {
  core_->exit_request.store(true, std::memory_order_release);
}
uint64_t Cpu::retired() const {
  return core_->retired;
}
uint8_t Cpu::cpl() const {
  return core_->cpl;
}
void Cpu::flush_decode_cache() {
  for (unsigned i = 0; i < Core::kBlockMapSize; ++i) core_->block_map[i] = nullptr;
  core_->flush_jump_cache();
  core_->blocks.clear();
}

}  // namespace apicv::cpu
