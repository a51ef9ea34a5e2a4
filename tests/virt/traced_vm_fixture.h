// A single-threaded ApicvVm with a trace ring, for tests that assert KVM's trace lines: the VM,
// the sink and the fake clock, plus the register accesses those tests share.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"

namespace apicv::virt {

class TracedVmTest : public ::testing::Test {
 protected:
  void MakeVm(const VmConfig& cfg) {
    // The VM (and its timer thread) must be gone before the sink it traces into.
    vm_.reset();
    sink_ = std::make_unique<trace::TraceSink>(clock_);
    sink_->set_ring_capacity(10000);
    vm_ = std::make_unique<ApicvVm>(cfg, clock_, sink_.get());
    vm_->set_kick([](int) {});
    // Each vCPU applies KVM_REQ_APICV_UPDATE before its first entry.
    for (int v = 0; v < cfg.nr_vcpus; ++v) vm_->check_and_inject_events(v, false, false);
  }
  void EnableX2Apic(int v) {
    ASSERT_EQ(vm_->wrmsr(v, 0x1B, 0xFEE00000 | (1 << 11) | (1 << 10) | (v == 0 ? 0x100 : 0)),
              AccessResult::kHandled);
    ASSERT_EQ(vm_->wrmsr(v, 0x80F, 0x1FF), AccessResult::kHandled);
  }
  void IoApicWrite(uint32_t index, uint32_t value) {
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00000, &index, 4), AccessResult::kHandled);
    ASSERT_EQ(vm_->mmio_write(0, 0xFEC00010, &value, 4), AccessResult::kHandled);
  }

  FakeClock clock_{1'000'000'000};
  std::unique_ptr<trace::TraceSink> sink_;
  std::unique_ptr<ApicvVm> vm_;
};

}  // namespace apicv::virt
