// QEMU fw_cfg, legacy I/O interface (QEMU docs/specs/fw_cfg.txt): a 16-bit selector written at
// 0x510 and byte-wide sequential reads at 0x511. Items: signature "QEMU" (0x0000), interface ID
// (0x0001, traditional only), RAM size (0x0003, u64 LE), CPU count (0x0005, u16 LE), max CPUs
// (0x000F). Unknown items and reads past an item's end return 0, as QEMU does. Not supported:
// the DMA interface (ID bit 1 stays 0), the file directory, writes to items.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace apicv::platform {

class FwCfg {
 public:
  static constexpr uint16_t kSelectorPort = 0x510;
  static constexpr uint16_t kDataPort = 0x511;
  static constexpr uint16_t kSignature = 0x0000;
  static constexpr uint16_t kId = 0x0001;
  static constexpr uint16_t kRamSize = 0x0003;
  static constexpr uint16_t kNbCpus = 0x0005;
  static constexpr uint16_t kMaxCpus = 0x000F;

  FwCfg(uint64_t ram_size, uint16_t nr_cpus);

  bool Claims(uint16_t port) const { return port == kSelectorPort || port == kDataPort; }
  void Select(uint16_t selector);
  uint8_t ReadData();
  // Dispatch helpers for a port access of `len` bytes.
  void Out(uint16_t port, uint32_t value, unsigned len);
  uint32_t In(uint16_t port, unsigned len);

 private:
  uint64_t ram_size_;
  uint16_t nr_cpus_;
  std::vector<uint8_t> item_;
  size_t offset_ = 0;
};

}  // namespace apicv::platform
