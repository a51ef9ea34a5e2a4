// GuestRam: see guest_ram.h.
#include "cpu/guest_ram.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace apicv::cpu {

GuestRam::GuestRam(uint8_t* host, uint64_t size)
    : host_(host),
      size_(size),
      pages_((size + 4095) >> 12),
      code_(new std::atomic<uint8_t>[pages_]),
      gen_(new std::atomic<uint32_t>[pages_]) {
  for (uint64_t i = 0; i < pages_; ++i) {
    code_[i].store(0, std::memory_order_relaxed);
    gen_[i].store(0, std::memory_order_relaxed);
  }
}

void GuestRam::set_shared(bool shared) {
  shared_ = shared;
  if (shared && !membarrier_) {
    membarrier_ = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }
}

void GuestRam::publish_marks() {
  if (membarrier_ && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // Without membarrier (kernels before 4.14, seccomp): the global command waits for every CPU to
  // pass a barrier (slow, but marks are rare). If even that is refused, only the mark's own
  // sequentially consistent exchange orders the decode side.
  (void)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
}

void GuestRam::note_write(uint64_t gpa, uint64_t len) {
  if (len == 0 || gpa >= size_) return;
  const uint64_t end = len > size_ - gpa ? size_ : gpa + len;
  for (uint64_t p = gpa >> 12; p <= (end - 1) >> 12; ++p) {
    if (is_code_page(p)) code_written(p);
  }
}

}  // namespace apicv::cpu
