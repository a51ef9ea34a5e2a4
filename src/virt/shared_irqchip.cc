// See shared_irqchip.h.
#include "virt/shared_irqchip.h"

#include <utility>

namespace apicv::virt {
namespace {

class SharedApicvVm final : public IrqChip {
 public:
  explicit SharedApicvVm(std::shared_ptr<ApicvVm> vm) : vm_(std::move(vm)) {}
  AccessResult mmio_read(int v, uint64_t gpa, void* d, unsigned n) override {
    return vm_->mmio_read(v, gpa, d, n);
  }
  AccessResult mmio_write(int v, uint64_t gpa, const void* d, unsigned n) override {
    return vm_->mmio_write(v, gpa, d, n);
  }
  AccessResult pio_in(int v, uint16_t port, void* d, unsigned n) override {
    return vm_->pio_in(v, port, d, n);
  }
  AccessResult pio_out(int v, uint16_t port, const void* d, unsigned n) override {
    return vm_->pio_out(v, port, d, n);
  }
  AccessResult rdmsr(int v, uint32_t msr, uint64_t* x) override { return vm_->rdmsr(v, msr, x); }
  AccessResult wrmsr(int v, uint32_t msr, uint64_t x) override { return vm_->wrmsr(v, msr, x); }
  void set_cr8(int v, uint64_t cr8) override { vm_->set_cr8(v, cr8); }
  uint64_t get_cr8(int v) override { return vm_->get_cr8(v); }
  Injection check_and_inject_events(int v, bool ready, bool if_set) override {
    return vm_->check_and_inject_events(v, ready, if_set);
  }
  void interrupt_window_exit(int v) override { vm_->interrupt_window_exit(v); }
  void vcpu_enter(int v) override { vm_->vcpu_enter(v); }
  void vcpu_exit(int v) override { vm_->vcpu_exit(v); }
  bool has_events(int v, bool if_set) override { return vm_->has_events(v, if_set); }
  uint64_t next_deadline_ns(int v) override { return vm_->next_deadline_ns(v); }
  void run_timers(int v) override { vm_->run_timers(v); }
  uint64_t next_deadline_ns() override { return vm_->next_deadline_ns(); }
  uint64_t service_timers(uint64_t now_ns) override { return vm_->service_timers(now_ns); }
  MpEvent take_mp_event(int v) override { return vm_->take_mp_event(v); }
  uint64_t pit_irq0_edges() override { return vm_->pit_irq0_edges(); }
  void instruction_emulated(int v) override { vm_->instruction_emulated(v); }
  bool instructions_retired(int v, uint64_t n, uint8_t cpl) override {
    return vm_->instructions_retired(v, n, cpl);
  }
  uint64_t instructions_to_pmi(int v, uint8_t cpl) override {
    return vm_->instructions_to_pmi(v, cpl);
  }
  void reset() override { vm_->reset(); }
  void set_kick(std::function<void(int)> kick) override { vm_->set_kick(std::move(kick)); }

 private:
  std::shared_ptr<ApicvVm> vm_;
};

}  // namespace

std::unique_ptr<IrqChip> ShareApicvVm(std::shared_ptr<ApicvVm> vm) {
  return std::make_unique<SharedApicvVm>(std::move(vm));
}

}  // namespace apicv::virt
