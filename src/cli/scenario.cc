#include "cli/scenario.h"

#include <sched.h>
#include <unistd.h>

#include <memory>

#include "builtin_guests.h"
#include "trace/trace_sink.h"

namespace apicv::cli {
namespace {

// Lets RunGuest own an IrqChip while the caller keeps the ApicvVm to read its counters.
class SharedIrqChip final : public virt::IrqChip {
 public:
  explicit SharedIrqChip(std::shared_ptr<virt::ApicvVm> vm) : vm_(std::move(vm)) {}
  virt::AccessResult mmio_read(int v, uint64_t a, void* d, unsigned l) override {
    return vm_->mmio_read(v, a, d, l);
  }
  virt::AccessResult mmio_write(int v, uint64_t a, const void* d, unsigned l) override {
    return vm_->mmio_write(v, a, d, l);
  }
  virt::AccessResult pio_in(int v, uint16_t p, void* d, unsigned l) override {
    return vm_->pio_in(v, p, d, l);
  }
  virt::AccessResult pio_out(int v, uint16_t p, const void* d, unsigned l) override {
    return vm_->pio_out(v, p, d, l);
  }
  virt::AccessResult rdmsr(int v, uint32_t m, uint64_t* x) override { return vm_->rdmsr(v, m, x); }
  virt::AccessResult wrmsr(int v, uint32_t m, uint64_t x) override { return vm_->wrmsr(v, m, x); }
  void set_cr8(int v, uint64_t c) override { vm_->set_cr8(v, c); }
  uint64_t get_cr8(int v) override { return vm_->get_cr8(v); }
  virt::Injection check_and_inject_events(int v, bool r, bool i) override {
    return vm_->check_and_inject_events(v, r, i);
  }
  void interrupt_window_exit(int v) override { vm_->interrupt_window_exit(v); }
  void vcpu_enter(int v) override { vm_->vcpu_enter(v); }
  void vcpu_exit(int v) override { vm_->vcpu_exit(v); }
  bool has_events(int v, bool i) override { return vm_->has_events(v, i); }
  uint64_t next_deadline_ns(int v) override { return vm_->next_deadline_ns(v); }
  void run_timers(int v) override { vm_->run_timers(v); }
  virt::MpEvent take_mp_event(int v) override { return vm_->take_mp_event(v); }
  void instruction_emulated(int v) override { vm_->instruction_emulated(v); }
  void reset() override { vm_->reset(); }
  void set_kick(std::function<void(int)> k) override { vm_->set_kick(std::move(k)); }

 private:
  std::shared_ptr<virt::ApicvVm> vm_;
};

}  // namespace

std::string InhibitBody(const std::string& line) {
  static const std::string kTag = "kvm_apicv_inhibit_changed: ";
  const auto p = line.find(kTag);
  return p == std::string::npos ? std::string() : line.substr(p + kTag.size());
}

void RunScenario(Scenario& s) {
  const guests::BuiltinGuest* g = guests::FindBuiltinGuest(s.guest);
  if (g == nullptr) throw std::runtime_error("no built-in guest '" + s.guest + "'");
  MonotonicClock trace_clock;
  trace::TraceSink sink(trace_clock);
  sink.set_ring_capacity(s.trace_ring);
  std::shared_ptr<virt::ApicvVm> vm;
  // VM creation runs on this thread, as KVM_CREATE_VM runs on QEMU's main thread.
  trace::set_current_task({"apicv", static_cast<int>(getpid()), sched_getcpu() < 0 ? 0 : sched_getcpu()});

  kvm::RunOptions opt;
  opt.smp = s.smp;
  opt.mem_size = 64ull << 20;
  opt.kernel.assign(g->data, g->data + g->size);
  opt.kernel_name = g->name;
  opt.append = s.append;
  opt.irqchip = kvm::IrqchipMode::kApicv;
  opt.vm_config = s.config;
  opt.trace = &sink;
  opt.timeout_s = s.timeout_s;
  opt.serial = [&s](uint8_t c) {
    if (s.serial.size() < (1u << 20)) s.serial.push_back(static_cast<char>(c));
  };
  opt.irqchip_factory = [&](const virt::VmConfig& cfg, const Clock& clock) {
    vm = std::make_shared<virt::ApicvVm>(cfg, clock, &sink);
    vm->set_device_trace(false);
    return std::unique_ptr<virt::IrqChip>(new SharedIrqChip(vm));
  };
  s.result = kvm::RunGuest(opt);
  if (vm) s.stats = vm->stats();
  s.trace_lines_total = sink.lines_emitted();
  s.inhibit_lines.clear();
  for (auto& l : sink.ring_lines()) {
    if (l.find("kvm_apicv_inhibit_changed: ") != std::string::npos) s.inhibit_lines.push_back(l);
  }
  s.passed = s.result.debug_exit && s.serial.find("PASS") != std::string::npos &&
             s.serial.find("FAIL") == std::string::npos;
}

}  // namespace apicv::cli
