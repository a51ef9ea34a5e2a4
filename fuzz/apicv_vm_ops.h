// Op decoder for the whole-VM fuzzer (apicv_vm_fuzz.cc) and its replay test
// (tests/virt/hostile_replay_test.cc): an ApicvVm with 1-4 vCPUs driven single-threaded through
// its IrqChip entry points the way a backend would (exit -> access -> check_and_inject_events ->
// enter), with hostile ICR writes, EOIs, APIC ID/LDR/base changes (which move the APICv inhibits),
// IRQ windows, ISA IRQs, IOAPIC/PIC/PIT programming and forward-moving time. After every op the
// per-vCPU LAPIC invariants (lapic_ops.h), the inhibit mask and the trace ring bound are checked.
// Not supported: concurrent vCPU threads (the TSan suites cover those), real guest memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "devices/clock.h"
#include "fuzz_input.h"
#include "lapic_ops.h"
#include "trace/trace_sink.h"
#include "virt/apicv_vm.h"
#include "virt/inhibit_reason.h"

namespace apicv::fuzz {

inline constexpr size_t kVmTraceRing = 64;
inline constexpr uint16_t kVmPorts[] = {0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1,
                                        0x40, 0x41, 0x42, 0x43, 0x61,  0x80};
inline constexpr uint32_t kVmMsrs[] = {0x1B,  0x6E0, 0x802, 0x803, 0x808, 0x80B,     0x80D, 0x80F,
                                       0x828, 0x830, 0x832, 0x835, 0x838, 0x83E,     0x83F, 0xC1,
                                       0x186, 0x38D, 0x38F, 0x390, 0x10,  0xC0010200};

struct VmFuzzState {
  explicit VmFuzzState(const virt::VmConfig& cfg)
      : clock(1'000'000'000), sink(clock), vm(cfg, clock, &sink) {
    sink.set_ring_capacity(kVmTraceRing);
    // A kick makes the target leave the guest, as a real vCPU thread would after the IPI. The
    // harness is that thread for every vCPU, so it exits the target synchronously (vcpu_exit is
    // lock-free by design, so this is safe inside kvm_make_all_cpus_request's wait). Kicks from
    // ApicvVm's timer thread are dropped: the harness runs the timers itself.
    vm.set_kick([this](int t) {
      if (std::this_thread::get_id() != owner || t < 0 || t >= 4 || !in_guest[t]) return;
      in_guest[t] = false;
      vm.vcpu_exit(t);
    });
  }
  const std::thread::id owner = std::this_thread::get_id();
  FakeClock clock;
  trace::TraceSink sink;
  virt::ApicvVm vm;
  bool in_guest[4] = {};
  bool window[4] = {};
};

inline void CheckVmInvariants(VmFuzzState& s, const LapicConfig& lcfg, size_t op, Verdict& v) {
  const unsigned long reasons = s.vm.inhibit_reasons();
  v.check((reasons >> virt::kNrApicvInhibitReasons) == 0, op, "unknown inhibit reason bit");
  v.check(!(reasons & (1ul << static_cast<int>(virt::InhibitReason::kNested))), op,
          "per-vCPU NESTED reason in the VM-wide mask");
  v.check(s.sink.ring_lines().size() <= kVmTraceRing, op, "trace ring above its capacity");
  for (int i = 0; i < s.vm.nr_vcpus() && v.ok(); ++i) {
    CheckLapicInvariants(s.vm.lapic(i), lcfg, s.clock.now_ns(), op, v);
  }
}

inline std::string RunApicvVmOps(const uint8_t* data, size_t size) {
  OpReader in(data, size);
  const uint8_t c0 = in.u8(), c1 = in.u8();
  virt::VmConfig cfg;
  cfg.nr_vcpus = 1 + (c0 & 3);
  cfg.vendor = (c0 & 4) ? virt::VendorModel::kVmx : virt::VendorModel::kSvm;
  cfg.enable_apicv = !(c0 & 8);
  cfg.irqwin = (c0 & 16) ? virt::IrqWindowMode::kLegacy : virt::IrqWindowMode::kCounted;
  cfg.placement = static_cast<virt::IrqchipPlacement>((c0 >> 5) % 3);
  cfg.pit_policy = (c1 & 1) ? virt::PitPolicy::kDiscard : virt::PitPolicy::kDelay;
  cfg.avic_kick = (c1 & 2) ? virt::AvicKick::kSlow : virt::AvicKick::kFast;
  cfg.apic_id_check = (c1 & 4) ? virt::ApicIdCheck::k2022 : virt::ApicIdCheck::kCurrent;
  cfg.pmi_delivery = (c1 & 8) ? virt::PmiDelivery::kLegacy : virt::PmiDelivery::kCurrent;
  cfg.esr_sdm_mode = c1 & 16;
  cfg.tsc_khz = 1000000;
  // KVM_CAP_X2APIC_API's Suppress EOI Broadcast flags exist with a split irqchip only.
  if (cfg.placement == virt::IrqchipPlacement::kSplit)
    cfg.suppress_eoi_broadcast = static_cast<virt::SuppressEoiBroadcast>((c1 >> 5) % 3);
  LapicConfig lcfg;  // what ApicvVm gives each vCPU's Lapic
  lcfg.esr_sdm_mode = cfg.esr_sdm_mode;
  lcfg.directed_eoi = cfg.placement == virt::IrqchipPlacement::kSplit &&
                      cfg.suppress_eoi_broadcast != virt::SuppressEoiBroadcast::kDisabled;
  lcfg.tsc_khz = cfg.tsc_khz;

  auto s = std::make_unique<VmFuzzState>(cfg);
  virt::ApicvVm& vm = s->vm;
  // Device tracepoints (kvm_apic_ipi, kvm_apic_accept_irq, kvm_eoi, ...) flood the ring.
  vm.set_device_trace(c1 & 32);
  Verdict v;
  const int n = cfg.nr_vcpus;
  auto exit_guest = [&](int i) {
    if (s->in_guest[i]) {
      vm.vcpu_exit(i);
      s->in_guest[i] = false;
    }
  };
  auto lapic_write = [&](int i, uint32_t off, uint64_t val) {
    exit_guest(i);
    if (vm.lapic(i).x2apic_mode()) {
      vm.wrmsr(i, 0x800 + (off >> 4), val);
    } else {
      const uint64_t base = vm.lapic(i).get_apic_base() & ~0xFFFull;
      const uint32_t v32 = static_cast<uint32_t>(val);
      vm.mmio_write(i, base + off, &v32, 4);
    }
  };
  CheckVmInvariants(*s, lcfg, 0, v);
  for (size_t op = 1; !in.done() && op <= kMaxOpsPerInput && v.ok(); ++op) {
    const uint8_t kind = in.u8();
    const int i = in.u8() % n;
    switch (kind % 16) {
      case 0: {  // ICR write (IPI, broadcast, logical, NMI/INIT/SIPI, illegal vectors...)
        const uint64_t icr = in.u64();
        exit_guest(i);
        if (vm.lapic(i).x2apic_mode()) {
          vm.wrmsr(i, 0x830, icr & ~x86::kX2ApicIcrReserved);
        } else {
          lapic_write(i, 0x310, icr >> 32);
          lapic_write(i, 0x300, icr);
        }
        break;
      }
      case 1:  // EOI
        lapic_write(i, 0xB0, 0);
        break;
      case 2: {  // entry: ask what to inject, then enter
        if (s->in_guest[i]) break;
        const uint8_t f = in.u8();
        const virt::Injection inj = vm.check_and_inject_events(i, f & 1, f & 3);
        v.check(inj.vector >= -1 && inj.vector <= 255, op, "injected vector out of range");
        s->window[i] = inj.request_window;
        s->in_guest[i] = true;  // before vcpu_enter: it may kick itself out at once
        vm.vcpu_enter(i);
        break;
      }
      case 3: {  // exit, possibly the IRQ-window exit that was asked for
        exit_guest(i);
        if (s->window[i] && in.flag()) vm.interrupt_window_exit(i);
        s->window[i] = false;
        break;
      }
      case 4:  // ISA IRQ line (test device / PIT); out-of-range lines must be ignored
        vm.set_isa_irq(in.u8() % 32, in.flag());
        break;
      case 5: {  // OUT
        const uint8_t sel = in.u8();
        const uint16_t port = (sel & 0x80) ? in.u16() : kVmPorts[sel % std::size(kVmPorts)];
        const uint32_t val = in.u32();
        const unsigned len = 1u << (in.u8() % 3);
        exit_guest(i);
        vm.pio_out(i, port, &val, len);
        break;
      }
      case 6: {  // IN
        const uint8_t sel = in.u8();
        const uint16_t port = (sel & 0x80) ? in.u16() : kVmPorts[sel % std::size(kVmPorts)];
        uint32_t val = 0;
        exit_guest(i);
        vm.pio_in(i, port, &val, 1u << (in.u8() % 3));
        break;
      }
      case 7: {  // IOAPIC: select then write (RTE programming, ID, stray offsets)
        exit_guest(i);
        const uint32_t sel = in.u8();
        const uint32_t val = in.u32();
        vm.mmio_write(i, 0xFEC00000, &sel, 4);
        vm.mmio_write(i, 0xFEC00010, &val, 4);
        if (in.flag()) {
          uint32_t back = 0;
          vm.mmio_read(i, 0xFEC00000 + (in.u8() & 0xFC), &back, 4);
        }
        break;
      }
      case 8: {  // IA32_APIC_BASE: mode switches, relocation, reserved bits
        exit_guest(i);
        vm.wrmsr(i, 0x1B, LapicApicBaseValue(in));
        break;
      }
      case 9: {  // LAPIC register writes: ID/LDR/DFR (inhibits), SPIV, TPR, LVTs, timer
        const uint8_t cnt = 1 + in.u8() % 4;
        for (uint8_t k = 0; k < cnt; ++k) {
          const uint32_t off =
              kLapicInterestingOffsets[in.u8() % std::size(kLapicInterestingOffsets)];
          lapic_write(i, off & 0xFF0, in.u32());
        }
        break;
      }
      case 10: {  // time passes; timers run on their vCPUs
        const uint8_t sel = in.u8();
        const uint64_t delta = (sel & 1) ? in.u32() : (static_cast<uint64_t>(in.u16()) << 8);
        s->clock.advance(delta);
        for (int k = 0; k < n; ++k) {
          if (vm.next_deadline_ns(k) <= s->clock.now_ns()) vm.run_timers(k);
        }
        break;
      }
      case 11: {  // halt path and MP events
        exit_guest(i);
        vm.has_events(i, in.flag());
        (void)vm.next_deadline_ns(i);
        vm.take_mp_event(i);
        break;
      }
      case 12:
        exit_guest(i);
        vm.set_cr8(i, in.u64());
        v.check(vm.get_cr8(i) <= 15, op, "CR8 above 15");
        break;
      case 13: {  // MSRs the backend forwards (LAPIC, TSC deadline, PMU, and strangers)
        exit_guest(i);
        const uint8_t sel = in.u8();
        const uint32_t msr = (sel & 0x80) ? in.u32() : kVmMsrs[sel % std::size(kVmMsrs)];
        if (sel & 0x40) {
          uint64_t val = 0;
          vm.rdmsr(i, msr, &val);
        } else {
          vm.wrmsr(i, msr, in.u64());
        }
        break;
      }
      case 14: {  // LAPIC MMIO at any offset and size, read or write
        exit_guest(i);
        const uint64_t base = vm.lapic(i).get_apic_base() & ~0xFFFull;
        const uint32_t off = in.u16() & 0xFFF;
        const unsigned len = in.u8() % 9;
        uint64_t val = in.u64();
        if (in.flag()) {
          vm.mmio_write(i, base + off, &val, len);
        } else {
          vm.mmio_read(i, base + off, &val, len);
        }
        vm.instruction_emulated(i);
        break;
      }
      default:
        if (in.u8() < 16) {  // system reset (rare): every vCPU out of the guest first
          for (int k = 0; k < n; ++k) exit_guest(k);
          vm.reset();
        }
        break;
    }
    CheckVmInvariants(*s, lcfg, op, v);
  }
  for (int k = 0; k < n; ++k) exit_guest(k);
  return v.message();
}

}  // namespace apicv::fuzz
