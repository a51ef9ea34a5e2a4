// Guest RAM as the software CPU sees it: a host buffer (not owned) from physical address 0, shared
// by every CPU of a VM, plus the per-page state that keeps decoded-instruction caches coherent with
// stores (self-modifying code, an AP trampoline copy, a reboot reloading the image).
//
// A page that code was translated from has code_[page] set; any store into such a page (by any CPU,
// or by the host through note_write) bumps gen_[page], and caches compare the generation they
// decoded under before reusing a block. Both arrays are host atomics: CPUs on other threads read
// and write them (-accel emu,thread=multi).
//
// Across threads this is a store-buffering (Dekker) pattern: a decoder marks the page then reads
// its bytes, a writer stores a byte then reads the mark. Under x86-TSO both may miss the other
// (the writer sees no mark, the decoder the old byte) and the block would stay stale forever.
// Rather than a StoreLoad fence on every guest store, a shared RAM (set_shared) publishes a new
// mark with a process-wide barrier (membarrier(2) PRIVATE_EXPEDITED: every running thread of the
// process executes a full barrier), so each racing store is either seen by the decode or sees the
// mark. Marks are rare: a page is marked once per decode after a write to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace apicv::cpu {

class GuestRam {
 public:
  GuestRam(uint8_t* host, uint64_t size);
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  uint8_t* host() const { return host_; }
  uint64_t size() const { return size_; }
  bool contains(uint64_t gpa, uint64_t len) const { return gpa < size_ && len <= size_ - gpa; }
  uint64_t pages() const { return pages_; }

  bool is_code_page(uint64_t pfn) const { return code_[pfn].load(std::memory_order_relaxed) != 0; }
  // Call before reading the page's bytes and its generation for a decode.
  void mark_code_page(uint64_t pfn) {
    if (code_[pfn].load(std::memory_order_relaxed) != 0) return;
    code_[pfn].exchange(1, std::memory_order_seq_cst);  // a full barrier on the decode side
    if (shared_) publish_marks();
  }
  uint32_t generation(uint64_t pfn) const { return gen_[pfn].load(std::memory_order_acquire); }
  // A store hit a code page: invalidate every block decoded from it.
  void code_written(uint64_t pfn) {
    code_[pfn].store(0, std::memory_order_relaxed);
    gen_[pfn].fetch_add(1, std::memory_order_acq_rel);
  }
  // The host (a loader, DMA, a device) wrote [gpa, gpa + len).
  void note_write(uint64_t gpa, uint64_t len);
  // Serialises locked accesses that split a cache line (no host atomic spans two lines).
  std::mutex& split_lock() { return split_lock_; }
  // CPUs on several threads share this RAM from now on (before they start running).
  void set_shared(bool shared);

 private:
  uint8_t* host_;
  uint64_t size_;
  uint64_t pages_;
  std::unique_ptr<std::atomic<uint8_t>[]> code_;
  std::unique_ptr<std::atomic<uint32_t>[]> gen_;
  std::mutex split_lock_;
  bool shared_ = false;
  bool membarrier_ = false;  // membarrier PRIVATE_EXPEDITED is registered
  void publish_marks();
};

}  // namespace apicv::cpu
