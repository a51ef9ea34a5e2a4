// Guest physical memory: one anonymous mapping of the guest's RAM starting at GPA 0, with a hole
// below 4 GiB for the APIC/IOAPIC MMIO range (the RAM that would overlap 0xC0000000..4G is placed
// above 4 GiB, as on a PC). Bounds-checked copies only: guest-provided addresses are never trusted.
// Not supported: memory hot-plug, more than one slot below 4G, dirty logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace apicv::platform {

struct MemorySlot {
  uint64_t gpa;
  uint64_t size;
  uint64_t host_offset;  // offset into the host mapping
};

class GuestMemory {
 public:
  // Start of the PCI/MMIO hole below 4 GiB; RAM beyond it moves above 4 GiB.
  static constexpr uint64_t kHoleStart = 0xC0000000ull;
  static constexpr uint64_t k4G = 0x100000000ull;

  // Maps `size` bytes (rounded up to 2 MiB). Throws std::runtime_error on failure or bad size.
  explicit GuestMemory(uint64_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t size() const { return size_; }
  uint8_t* host() const { return host_; }
  std::span<const MemorySlot> slots() const { return {slots_, nslots_}; }
  // RAM below the hole, in bytes (what a BIOS would report as low memory + extended memory).
  uint64_t low_size() const { return slots_[0].size; }

  // Host pointer for [gpa, gpa+len) if it lies entirely in RAM, else nullptr.
  uint8_t* ptr(uint64_t gpa, uint64_t len) const;
  bool write(uint64_t gpa, const void* src, uint64_t len);
  bool read(uint64_t gpa, void* dst, uint64_t len) const;
  // Zero all RAM (reset).
  void clear();

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_ = 0;
  MemorySlot slots_[2] = {};
  size_t nslots_ = 0;
};

}  // namespace apicv::platform
