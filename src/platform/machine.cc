// Exit dispatch into the IrqChip and the system ports; see machine.h.
#include "platform/machine.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace apicv::platform {

namespace {
constexpr size_t kMaxSamples = 16u << 20;  // bound on guest-driven memory use
constexpr size_t kMaxLoggedUnknown = 64;

uint32_t AllOnes(unsigned size) {
  return size >= 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
}
}  // namespace

Machine::Machine(uint64_t ram_size, int nr_vcpus, std::function<void(uint8_t)> serial,
                 virt::IrqChip* chip)
    : chip_(chip),
      uart_([serial = std::move(serial)](uint8_t b) {
        if (serial) serial(b);
      }),
      fw_cfg_(ram_size, static_cast<uint16_t>(nr_vcpus)) {}

StopRequest Machine::Pio(int vcpu, bool out, uint16_t port, uint8_t* data, unsigned size,
                         uint32_t count) {
  StopRequest first;
  for (uint32_t i = 0; i < count; ++i, data += size) {
    if (out) {
      const StopRequest s = PioOut(vcpu, port, data, size);
      if (s && !first) first = s;
    } else {
      PioIn(vcpu, port, data, size);
    }
  }
  return first;
}

StopRequest Machine::PioOut(int vcpu, uint16_t port, const uint8_t* data, unsigned size) {
  if (chip_ && chip_->pio_out(vcpu, port, data, size) != virt::AccessResult::kNotMine) return {};
  uint32_t value = 0;
  std::memcpy(&value, data, std::min(size, 4u));
  return PortOut(port, value, size);
}

void Machine::PioIn(int vcpu, uint16_t port, uint8_t* data, unsigned size) {
  if (chip_ && chip_->pio_in(vcpu, port, data, size) != virt::AccessResult::kNotMine) return;
  const uint32_t value = PortIn(port, size);
  std::memcpy(data, &value, std::min(size, 4u));
}

StopRequest Machine::PortOut(uint16_t port, uint32_t value, unsigned size) {
  if (port == kDebugExitPort) return {StopKind::kDebugExit, DebugExitStatus(value)};
  const int line = TestDevLine(port);
  if (line >= 0 && size == 1) {
    // With an IrqChip the test device is its own (it claimed the access before we got here).
    if (irq_line_ && chip_ == nullptr) {
      irq_line_(static_cast<uint32_t>(line), value != 0);
    } else {
      LogUnknownOnce("test-device port not claimed by the irqchip:", port);
    }
    return {};
  }
  std::lock_guard lock(dev_mu_);
  if (uart_.Claims(port)) {
    uart_.Write(port, static_cast<uint8_t>(value));
  } else if (fw_cfg_.Claims(port)) {
    fw_cfg_.Out(port, value, size);
  } else if (port == kSamplePort && size == 4) {
    if (samples_.size() < kMaxSamples) samples_.push_back(value);
  } else if (port == kResetControlPort && size == 1) {
    if (reset_ctl_.Write(static_cast<uint8_t>(value))) return {StopKind::kReset, 0};
  } else if (port == kKbcCommandPort && size == 1) {
    if (KbcCommandRequestsReset(static_cast<uint8_t>(value))) return {StopKind::kReset, 0};
  } else if (port == kPitEdgesPort) {
    // Read-only: writes are dropped.
  } else if (port == kKbcDataPort) {
    // No keyboard: data writes are dropped silently (firmware probes it).
  } else {
    LogUnknownOnce("unknown port write", port);
  }
  return {};
}

uint32_t Machine::PortIn(uint16_t port, unsigned size) {
  if (port == kPitEdgesPort && size == 4) {
    // Lets a guest bound the ticks it took by what the PIT generated, whatever the host's speed.
    const uint64_t edges = chip_ ? chip_->pit_irq0_edges() : UINT64_MAX;
    return edges == UINT64_MAX ? 0xFFFFFFFFu : static_cast<uint32_t>(edges);
  }
  std::lock_guard lock(dev_mu_);
  if (uart_.Claims(port)) return uart_.Read(port);
  if (fw_cfg_.Claims(port)) return fw_cfg_.In(port, size);
  if (port == kResetControlPort) return reset_ctl_.Read();
  if (port == kKbcCommandPort || port == kKbcDataPort) return 0;  // buffers empty
  if (TestDevLine(port) >= 0) return 0;
  LogUnknownOnce("unknown port read", port);
  return AllOnes(size);
}

void Machine::MmioRead(int vcpu, uint64_t gpa, uint8_t* data, unsigned len) {
  len = std::min(len, 8u);
  if (chip_ && chip_->mmio_read(vcpu, gpa, data, len) != virt::AccessResult::kNotMine) return;
  std::memset(data, 0xFF, len);
  LogUnknownOnce("unknown MMIO read", gpa);
}

void Machine::MmioWrite(int vcpu, uint64_t gpa, const uint8_t* data, unsigned len) {
  len = std::min(len, 8u);
  if (chip_ && chip_->mmio_write(vcpu, gpa, data, len) != virt::AccessResult::kNotMine) return;
  LogUnknownOnce("unknown MMIO write", gpa);
}

bool Machine::Rdmsr(int vcpu, uint32_t index, uint64_t* value, MsrMiss miss) {
  virt::AccessResult r = virt::AccessResult::kNotMine;
  uint64_t v = 0;
  if (chip_) r = chip_->rdmsr(vcpu, index, &v);
  switch (r) {
    case virt::AccessResult::kHandled:
      *value = v;
      return true;
    case virt::AccessResult::kGp:
      return false;
    case virt::AccessResult::kNotMine:
      break;
  }
  if (miss == MsrMiss::kGp) return false;
  *value = 0;
  LogUnknownOnce("unserved filtered MSR", index);
  return true;
}

bool Machine::Wrmsr(int vcpu, uint32_t index, uint64_t value, MsrMiss miss) {
  virt::AccessResult r = virt::AccessResult::kNotMine;
  if (chip_) r = chip_->wrmsr(vcpu, index, value);
  switch (r) {
    case virt::AccessResult::kHandled:
      return true;
    case virt::AccessResult::kGp:
      return false;
    case virt::AccessResult::kNotMine:
      break;
  }
  if (miss == MsrMiss::kGp) return false;
  LogUnknownOnce("unserved filtered MSR", index);
  return true;
}

void Machine::Reset() {
  std::lock_guard lock(dev_mu_);
  uart_.Reset();
  reset_ctl_.Reset();
  fw_cfg_.Select(FwCfg::kSignature);
}

std::vector<uint32_t> Machine::TakeSamples() {
  std::lock_guard lock(dev_mu_);
  return std::move(samples_);
}

size_t Machine::unknown_logged() const {
  std::lock_guard lock(log_mu_);
  return logged_.size();
}

void Machine::LogUnknownOnce(const char* what, uint64_t addr) {
  std::lock_guard lock(log_mu_);
  if (logged_.size() >= kMaxLoggedUnknown) return;
  const uint64_t key = addr ^ (static_cast<uint64_t>(what[0]) << 56);
  if (!logged_.insert(key).second) return;
  std::fprintf(stderr, "apicv: %s 0x%llx ignored (reads all ones, writes dropped)%s\n", what,
               static_cast<unsigned long long>(addr),
               logged_.size() == kMaxLoggedUnknown ? "; further unknown accesses not logged" : "");
}

}  // namespace apicv::platform
