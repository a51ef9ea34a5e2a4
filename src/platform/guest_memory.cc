// Guest RAM layout: see guest_memory.h.
#include "platform/guest_memory.h"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace apicv::platform {

namespace {
constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t kMaxRam = 1ull << 40;  // 1 TiB: far above anything this tool runs
}  // namespace

GuestMemory::GuestMemory(uint64_t size) {
  if (size < k2M || size > kMaxRam) {
    throw std::runtime_error("guest memory size " + std::to_string(size) +
                             " out of range (2 MiB .. 1 TiB)");
  }
  size_ = (size + k2M - 1) & ~(k2M - 1);
  void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw std::runtime_error("mmap of " + std::to_string(size_) +
                             " bytes of guest memory failed: " + std::strerror(errno));
  }
  host_ = static_cast<uint8_t*>(p);
  if (size_ <= kHoleStart) {
    slots_[0] = {0, size_, 0};
    nslots_ = 1;
  } else {
    slots_[0] = {0, kHoleStart, 0};
    slots_[1] = {k4G, size_ - kHoleStart, kHoleStart};
    nslots_ = 2;
  }
}

GuestMemory::~GuestMemory() {
  if (host_ != nullptr) munmap(host_, size_);
}

uint8_t* GuestMemory::ptr(uint64_t gpa, uint64_t len) const {
  for (size_t i = 0; i < nslots_; ++i) {
    const MemorySlot& s = slots_[i];
    // Written to avoid overflow with hostile gpa/len.
    if (gpa >= s.gpa && gpa - s.gpa <= s.size && len <= s.size - (gpa - s.gpa)) {
      return host_ + s.host_offset + (gpa - s.gpa);
    }
  }
  return nullptr;
}

bool GuestMemory::write(uint64_t gpa, const void* src, uint64_t len) {
  uint8_t* p = ptr(gpa, len);
  if (p == nullptr) return false;
  if (len != 0) std::memcpy(p, src, len);
  return true;
}

bool GuestMemory::read(uint64_t gpa, void* dst, uint64_t len) const {
  uint8_t* p = ptr(gpa, len);
  if (p == nullptr) return false;
  if (len != 0) std::memcpy(dst, p, len);
  return true;
}

void GuestMemory::clear() {
  // MADV_DONTNEED on a private anonymous mapping gives zero pages back cheaply.
  if (madvise(host_, size_, MADV_DONTNEED) != 0) std::memset(host_, 0, size_);
}

}  // namespace apicv::platform
