// Posted-interrupt descriptor operations (Intel SDM vol. 3C 30.6; spec §7.4).
#include "virt/posted_interrupt.h"

#include <bit>

namespace apicv::virt {

bool PiDesc::pir_empty() const {
  for (const auto& w : pir) {
    if (w.load(std::memory_order_seq_cst) != 0) return false;
  }
  return true;
}

void PiDesc::set_nv(uint8_t vector) {
  uint64_t old = control.load(std::memory_order_relaxed);
  while (!control.compare_exchange_weak(
      old, (old & ~kPiControlNvMask) | (static_cast<uint64_t>(vector) << kPiControlNvShift),
      std::memory_order_seq_cst)) {
  }
}

void PiDesc::set_ndst(uint32_t dest) {
  uint64_t old = control.load(std::memory_order_relaxed);
  while (!control.compare_exchange_weak(
      old, (old & ~kPiControlNdstMask) | (static_cast<uint64_t>(dest) << kPiControlNdstShift),
      std::memory_order_seq_cst)) {
  }
}

PiNotify deliver_posted_interrupt(PiDesc& desc, uint8_t vector, const VcpuRequests& target) {
  const uint64_t bit = 1ull << (vector & 63);
  if (desc.pir[vector >> 6].fetch_or(bit, std::memory_order_seq_cst) & bit) return PiNotify::kNone;
  // With SN set the vCPU is preempted; it sets ON itself when it clears SN (clear_sn).
  if (desc.control.load(std::memory_order_seq_cst) & kPiControlSn) return PiNotify::kNone;
  if (desc.control.fetch_or(kPiControlOn, std::memory_order_seq_cst) & kPiControlOn) {
    return PiNotify::kNone;
  }
  return target.mode() == VcpuMode::kInGuestMode ? PiNotify::kNotify : PiNotify::kWake;
}

PiSyncResult sync_pir_to_irr(PiDesc& desc, std::span<uint32_t, 8> irr) {
  PiSyncResult r;
  int old_max = -1;
  for (int w = 7; w >= 0 && old_max < 0; --w) {
    if (irr[w]) old_max = w * 32 + 31 - std::countl_zero(irr[w]);
  }
  r.max_irr = old_max;
  if (!(desc.control.load(std::memory_order_seq_cst) & kPiControlOn)) return r;
  desc.control.fetch_and(~kPiControlOn, std::memory_order_seq_cst);
  r.harvested = true;
  for (int w = 0; w < 4; ++w) {
    if (desc.pir[w].load(std::memory_order_relaxed) == 0) continue;
    const uint64_t bits = desc.pir[w].exchange(0, std::memory_order_seq_cst);
    irr[2 * w] |= static_cast<uint32_t>(bits);
    irr[2 * w + 1] |= static_cast<uint32_t>(bits >> 32);
  }
  for (int w = 7; w >= 0; --w) {
    if (irr[w]) {
      r.max_irr = w * 32 + 31 - std::countl_zero(irr[w]);
      break;
    }
  }
  r.max_from_pir = r.max_irr > old_max;
  return r;
}

void set_sn(PiDesc& desc) {
  desc.control.fetch_or(kPiControlSn, std::memory_order_seq_cst);
}

bool clear_sn(PiDesc& desc) {
  desc.control.fetch_and(~kPiControlSn, std::memory_order_seq_cst);
  // Senders that saw SN left their vector in PIR without ON; re-arm ON so it is harvested.
  if (desc.pir_empty()) return false;
  return !(desc.control.fetch_or(kPiControlOn, std::memory_order_seq_cst) & kPiControlOn);
}

EoiExitBitmap EoiExitBitmap::FromHandledVectors(std::span<const uint8_t> handled_vectors) {
  EoiExitBitmap b;
  for (uint8_t v : handled_vectors) b.set(v);
  return b;
}

}  // namespace apicv::virt
