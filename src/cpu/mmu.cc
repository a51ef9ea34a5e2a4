// Segmentation checks and paging for the software CPU: SDM vol. 3A 3.4-3.5 (segment limits and
// types), ch. 4 (32-bit, PAE and 4-level paging; 4 KiB, 2/4 MiB and 1 GiB pages; A/D bits; U/S,
// R/W with CR0.WP; NX with EFER.NXE; #PF error codes 4.7), and the physical bus (RAM or the
// platform's MMIO).
// Not supported: PCIDs and global pages (every CR3 write flushes the whole TLB), protection
// keys, SMEP/SMAP (not advertised), 5-level paging, the PAE PDPTE registers (PDPTEs are read at
// walk time, not latched at the CR3 write), MTRR/PAT memory types, RAM above the platform's size.
#include <algorithm>

#include "cpu/core.h"

namespace apicv::cpu {

namespace {

constexpr uint64_t kPteP = 1, kPteRw = 2, kPteUs = 4, kPteA = 0x20, kPteD = 0x40, kPtePs = 0x80;
constexpr uint64_t kPteNx = 1ull << 63;
constexpr unsigned kMaxPhysBits = 40;  // matches the CPUID 0x80000008 the platform reports
constexpr uint64_t kPhysMask = ((1ull << kMaxPhysBits) - 1) & ~0xFFFull;

}  // namespace

uint64_t Core::linear_legacy(uint8_t seg, uint64_t off, unsigned size, bool write) {
  const Segment& sg = s.seg[seg];
  const uint8_t vec = seg == kSs ? kExcSS : kExcGP;
  if (protected_) {
    if ((sg.ar & 0x10000) != 0 || !sg.present()) fault(vec, 0);
    const bool code = (sg.ar & 0x8) != 0;
    if (write && (code || (sg.ar & 0x2) == 0)) fault(vec, 0);
    if (!write && code && (sg.ar & 0x2) == 0) fault(vec, 0);
  }
  const uint64_t last = off + size - 1;
  const bool expand_down = protected_ && (sg.ar & 0x1C) == 0x14;
  if (!expand_down) {
    if (last > sg.limit) fault(vec, 0);
  } else {
    const uint64_t upper = sg.db() ? 0xFFFFFFFFull : 0xFFFFull;
    if (off <= sg.limit || last > upper) fault(vec, 0);
  }
  return (sg.base + off) & 0xFFFFFFFFull;
}

uint64_t Core::translate(uint64_t lin, Access acc, bool user) {
  if (!paging) return (s.efer & kEferLma) ? lin : (lin & 0xFFFFFFFFull);
  const bool write = acc == kWrite;
  const bool fetch = acc == kFetch;
  const bool nxe = (s.efer & kEferNxe) != 0;
  const bool wp = (s.cr0 & kCr0Wp) != 0;
  auto pf = [&](bool present, bool rsvd) {
    uint32_t ec = (present ? 1u : 0u) | (write ? 2u : 0u) | (user ? 4u : 0u) | (rsvd ? 8u : 0u) |
                  (fetch && nxe ? 16u : 0u);
    s.cr2 = lin;
    fault(kExcPF, ec);
  };
  // Each level: read the entry, check present/reserved, accumulate permissions, set A.
  uint64_t allow_rw = 1, allow_us = 1, nx = 0;
  const bool pae = (s.cr4 & kCr4Pae) != 0;
  const bool lma = (s.efer & kEferLma) != 0;
  uint64_t rsvd_hi = ~kPhysMask & 0x000FFFFFFFFFF000ull;  // bits 51:MAXPHYADDR
  uint64_t table, idx_shift[4];
  int levels;
  uint64_t entries_pa[4];
  uint64_t entries[4];
  if (lma) {
    levels = 4;
    table = s.cr3 & kPhysMask;
    idx_shift[0] = 39, idx_shift[1] = 30, idx_shift[2] = 21, idx_shift[3] = 12;
  } else if (pae) {
    // PDPTE from CR3[31:5].
    const uint64_t pdpte_pa = (s.cr3 & 0xFFFFFFE0u) + ((lin >> 30) & 3) * 8;
    const uint64_t pdpte = read_phys(pdpte_pa, 8);
    if ((pdpte & kPteP) == 0) pf(false, false);
    if ((pdpte & (rsvd_hi | 0x1E6)) != 0 || (nxe ? 0 : (pdpte & kPteNx)) != 0) pf(true, true);
    levels = 2;
    table = pdpte & kPhysMask;
    idx_shift[0] = 21, idx_shift[1] = 12;
  } else {
    levels = 2;
    table = s.cr3 & 0xFFFFF000u;
    idx_shift[0] = 22, idx_shift[1] = 12;
  }
  const unsigned esize = (lma || pae) ? 8 : 4;
  uint64_t page_size = 4096;
  int leaf = -1;
  for (int l = 0; l < levels; ++l) {
    const uint64_t idx = esize == 8 ? (lin >> idx_shift[l]) & 0x1FF : (lin >> idx_shift[l]) & 0x3FF;
    const uint64_t epa = table + idx * esize;
    const uint64_t e = read_phys(epa, esize);
    entries_pa[l] = epa;
    entries[l] = e;
    if ((e & kPteP) == 0) pf(false, false);
    if (esize == 8) {
      if ((e & rsvd_hi) != 0 || (!nxe && (e & kPteNx) != 0)) pf(true, true);
      if (lma && l == 0 && (e & kPtePs) != 0) pf(true, true);
      if (lma && l == 1 && (e & kPtePs) != 0 && !features.pdpe1gb) pf(true, true);
    }
    allow_rw &= (e >> 1) & 1;
    allow_us &= (e >> 2) & 1;
    if (esize == 8 && nxe) nx |= e >> 63;
    const bool last = l == levels - 1;
    const bool large = !last && (e & kPtePs) != 0 && (esize == 8 || (s.cr4 & kCr4Pse) != 0);
    if (large) {
      // Large-page reserved bits: the low address bits of the frame above the PAT bit (12).
      page_size = 1ull << idx_shift[l];
      const uint64_t low_rsvd = (page_size - 1) & ~0x1FFFull;
      if (esize == 8 && (e & low_rsvd) != 0) pf(true, true);
      leaf = l;
      break;
    }
    if (last) {
      leaf = l;
      break;
    }
    table = esize == 8 ? (e & kPhysMask) : (e & 0xFFFFF000u);
  }
  // Permission checks (SDM vol. 3A 4.6).
  bool ok = true;
  if (user && !allow_us) ok = false;
  if (write && !allow_rw && (user || wp)) ok = false;
  if (fetch && nx) ok = false;
  if (!ok) pf(true, false);
  // A bits on every level, D on the leaf for writes: compare-and-swap on the entry.
  for (int l = 0; l <= leaf; ++l) {
    const uint64_t want = entries[l] | kPteA | ((l == leaf && write) ? kPteD : 0);
    if (want != entries[l] && ram.contains(entries_pa[l], esize)) {
      uint8_t* p = ram.host() + entries_pa[l];
      if (esize == 8) {
        __atomic_fetch_or(reinterpret_cast<uint64_t*>(p), want & ~entries[l], __ATOMIC_SEQ_CST);
      } else {
        __atomic_fetch_or(reinterpret_cast<uint32_t*>(p),
                          static_cast<uint32_t>(want & ~entries[l]), __ATOMIC_SEQ_CST);
      }
    }
  }
  const uint64_t e = entries[leaf];
  uint64_t frame;
  if (esize == 4 && page_size == (1u << 22)) {
    // 4 MiB PSE page: bits 20:13 hold physical address bits 39:32.
    frame = (e & 0xFFC00000u) | ((e >> 13) & 0xFF) << 32;
  } else {
    frame = (esize == 8 ? (e & kPhysMask) : (e & 0xFFFFF000u)) & ~(page_size - 1);
  }
  return frame | (lin & (page_size - 1));
}

uint8_t* Core::fill_tlb(TlbEntry* tlb, uint64_t lin, Access acc, bool user) {
  const uint64_t pa = translate(lin, acc, user);
  const uint64_t pfn = pa >> 12;
  if (!ram.contains(pfn << 12, 4096)) return nullptr;
  TlbEntry& e = tlb[(lin >> 12) & (kTlbSize - 1)];
  e.tag = ((lin >> 12) << 1) | (user ? 1 : 0);
  e.addend = reinterpret_cast<uintptr_t>(ram.host()) + (pfn << 12) - ((lin >> 12) << 12);
  e.pfn = pfn;
  return reinterpret_cast<uint8_t*>(lin + e.addend);
}

uint64_t Core::read_phys(uint64_t pa, unsigned size) {
  if (ram.contains(pa, size)) return load_host(ram.host() + pa, size);
  if (pa >= ram.size()) {
    uint64_t v = 0;
    host.mmio_read(pa, &v, size);
    end_block = exit_after = true;  // an MMIO access is an exit (as under KVM)
    return v;
  }
  uint64_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= read_phys(pa + i, 1) << (8 * i);
  return v;
}

void Core::write_phys(uint64_t pa, unsigned size, uint64_t v) {
  if (ram.contains(pa, size)) {
    store_host(ram.host() + pa, size, v);
    const uint64_t p0 = pa >> 12, p1 = (pa + size - 1) >> 12;
    for (uint64_t p = p0; p <= p1; ++p) {
      if (ram.is_code_page(p)) {
        ram.code_written(p);
        end_block = true;
      }
    }
    return;
  }
  if (pa >= ram.size()) {
    host.mmio_write(pa, &v, size);
    end_block = exit_after = true;
    return;
  }
  for (unsigned i = 0; i < size; ++i) write_phys(pa + i, 1, v >> (8 * i));
}

uint64_t Core::read_lin_slow(uint64_t lin, unsigned size, bool user) {
  const unsigned first = static_cast<unsigned>(std::min<uint64_t>(size, 0x1000 - (lin & 0xFFF)));
  const uint64_t pa0 = translate(lin, kRead, user);
  if (first == size) return read_phys(pa0, size);
  const uint64_t pa1 = translate(lin + first, kRead, user);
  uint64_t v = read_phys(pa0, first);
  v |= read_phys(pa1, size - first) << (8 * first);
  return v;
}

uint64_t Core::read_lin_rmw_slow(uint64_t lin, unsigned size, bool user) {
  const unsigned first = static_cast<unsigned>(std::min<uint64_t>(size, 0x1000 - (lin & 0xFFF)));
  const uint64_t pa0 = translate(lin, kWrite, user);
  if (first == size) return read_phys(pa0, size);
  const uint64_t pa1 = translate(lin + first, kWrite, user);
  uint64_t v = read_phys(pa0, first);
  v |= read_phys(pa1, size - first) << (8 * first);
  return v;
}

void Core::write_lin_slow(uint64_t lin, unsigned size, uint64_t v, bool user) {
  const unsigned first = static_cast<unsigned>(std::min<uint64_t>(size, 0x1000 - (lin & 0xFFF)));
  if (first == size) {
    // Fill the write TLB (only a write walk may: it sets D), then store.
    uint8_t* p = fill_tlb(wtlb, lin, kWrite, user);
    if (p != nullptr) {
      const uint64_t pfn = wtlb[(lin >> 12) & (kTlbSize - 1)].pfn;
      store_host(p, size, v);
      if (ram.is_code_page(pfn)) {
        ram.code_written(pfn);
        end_block = true;
      }
      return;
    }
    write_phys(translate(lin, kWrite, user), size, v);
    return;
  }
  // Both halves must translate before either is written.
  const uint64_t pa0 = translate(lin, kWrite, user);
  const uint64_t pa1 = translate(lin + first, kWrite, user);
  write_phys(pa0, first, v);
  write_phys(pa1, size - first, v >> (8 * first));
}

uint8_t* Core::writable_host(uint64_t lin, unsigned size, uint64_t* pfn) {
  if ((lin & 0xFFF) + size > 0x1000) return nullptr;
  const uint64_t tag = ((lin >> 12) << 1) | (user_access() ? 1 : 0);
  TlbEntry& e = wtlb[(lin >> 12) & (kTlbSize - 1)];
  uint8_t* p = e.tag == tag ? reinterpret_cast<uint8_t*>(lin + e.addend)
                            : fill_tlb(wtlb, lin, kWrite, user_access());
  if (p != nullptr) *pfn = wtlb[(lin >> 12) & (kTlbSize - 1)].pfn;
  return p;
}

void Core::locked_store_done(uint64_t pfn) {
  if (ram.is_code_page(pfn)) {
    ram.code_written(pfn);
    end_block = true;
  }
}

void Core::push(uint64_t v, unsigned size) {
  const uint64_t nsp = (sp() - size) & size_mask(stack_size);
  wr(kSs, nsp, size, v);
  set_reg(kRsp, stack_size, nsp);
}

uint64_t Core::pop(unsigned size) {
  const uint64_t v = rd(kSs, sp(), size);
  set_reg(kRsp, stack_size, sp() + size);
  return v;
}

}  // namespace apicv::cpu
