// fw_cfg legacy port interface; see fw_cfg.h.
#include "platform/fw_cfg.h"

namespace apicv::platform {

namespace {
void PutLe(std::vector<uint8_t>& v, uint64_t x, int bytes) {
  for (int i = 0; i < bytes; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
}  // namespace

FwCfg::FwCfg(uint64_t ram_size, uint16_t nr_cpus) : ram_size_(ram_size), nr_cpus_(nr_cpus) {
  Select(kSignature);
}

void FwCfg::Select(uint16_t selector) {
  item_.clear();
  offset_ = 0;
  switch (selector) {
    case kSignature:
      item_ = {'Q', 'E', 'M', 'U'};
      break;
    case kId:
      PutLe(item_, 1, 4);  // traditional interface only
      break;
    case kRamSize:
      PutLe(item_, ram_size_, 8);
      break;
    case kNbCpus:
    case kMaxCpus:
      PutLe(item_, nr_cpus_, 2);
      break;
    default:
      break;
  }
}

uint8_t FwCfg::ReadData() {
  return offset_ < item_.size() ? item_[offset_++] : 0;
}

void FwCfg::Out(uint16_t port, uint32_t value, unsigned len) {
  // The selector register is 16 bits wide; data writes are ignored (read-only items).
  if (port == kSelectorPort && len >= 2) Select(static_cast<uint16_t>(value));
}

uint32_t FwCfg::In(uint16_t port, unsigned len) {
  if (port != kDataPort) return len >= 4 ? 0xFFFFFFFFu : (1u << (8 * len)) - 1;
  // Wider reads at the data port return successive bytes, little-endian, as QEMU does.
  uint32_t v = 0;
  for (unsigned i = 0; i < len && i < 4; ++i) v |= static_cast<uint32_t>(ReadData()) << (8 * i);
  return v;
}

}  // namespace apicv::platform
