// Intel 8254 programmable interval timer as wired in a PC: counter 0 drives IRQ0, counter 1 is
// the (unused) DRAM refresh timer, counter 2's gate and output are reached through port 0x61.
// Intel 8254 datasheet (modes 0-5, control word, counter latch, read-back, status byte, gate
// behaviour); KVM arch/x86/kvm/i8254.c for the PC wiring, port 0x61 and IRQ0 reinjection
// (apicv spec section 5: lost-tick policies "delay" and "discard").
//
// Time: counts are derived from now_ns at 1.193182 MHz; tick k of a counting run happens at
// start + ceil(k * 1e9 / f) ns. Counting runs start when the count is written (modes 0, 2, 3, 4)
// or on the gate's rising edge (modes 1, 5); the datasheet's one-clock load delay is not
// modelled. OUT follows the datasheet (mode 2 low for the clock at count 1, modes 4/5 low for
// the clock at count 0); KVM/QEMU model those three modes with inverted pulses.
// IRQ0 edges: modes 2/3 one per period; modes 0/1 one when the count expires; modes 4/5 one
// when the strobe ends. A channel-0 periodic period can be clamped (PitConfig::min_period_ns;
// KVM's min_timer_period_us defaults to 200 us, here 0 = no clamp as in QEMU).
// NOT supported / simplified: a count rewritten in modes 2/3 restarts the period at once (as
// KVM/QEMU; the datasheet waits for the period end); mode 3 with an odd count reads back KVM's
// approximation; invalid BCD digits (A-F) are taken at face value.
// Threading: none inside; the owner serialises calls.
#pragma once

#include <array>
#include <cstdint>

#include "x86/pit_defs.h"

namespace apicv {

// KVM §5: kDelay = reinjection (KVM default, QEMU lost_tick_policy=delay): every tick is
// delivered, the next only after the previous one's EOI. kDiscard: missed ticks collapse.
enum class LostTickPolicy : uint8_t { kDelay, kDiscard };

struct PitConfig {
  LostTickPolicy policy = LostTickPolicy::kDelay;
  uint64_t min_period_ns = 0;         // clamp for channel 0 periodic modes; 0 = none
  uint32_t max_pending = 0x7FFFFFFF;  // pending ticks saturate here (KVM's atomic_t range)
};

// Decisions for the caller. irq0_pulses: assert then deassert IRQ0 (GSI 0) this many times
// now (0 or 1).
struct PitOutput {
  unsigned irq0_pulses = 0;
  uint64_t irq0_edges = 0;  // channel 0 rising edges that happened since the last call
  bool rearm = false;       // channel 0's next_deadline_ns() may have changed
};

class Pit {
 public:
  explicit Pit(PitConfig config = {});

  static bool handles_port(uint16_t port);

  // One byte on 0x40-0x43 or 0x61.
  PitOutput pio_write(uint16_t port, uint8_t value, uint64_t now_ns);
  uint8_t pio_read(uint16_t port, uint64_t now_ns);

  // Gate input of a channel (channel 2's is also port 0x61 bit 0; 0 and 1 are tied high on a PC).
  PitOutput set_gate(unsigned channel, bool level, uint64_t now_ns);

  // Channel 0: when the next IRQ0 edge is due (UINT64_MAX: none), and processing of edges up
  // to now_ns.
  uint64_t next_deadline_ns() const;
  PitOutput on_timer(uint64_t now_ns);

  // Ack notifier for GSI 0 (EOI of the PIT's vector at the PIC or IOAPIC).
  PitOutput ack_irq();
  // Mask notifier for IRQ 0: an unmask drops the backlog (KVM kvm_pit_reset_reinject).
  void irq0_mask_changed(bool masked);
  void set_lost_tick_policy(LostTickPolicy policy);
  LostTickPolicy lost_tick_policy() const { return config_.policy; }

  void reset(uint64_t now_ns);

  // Introspection.
  bool out(unsigned channel, uint64_t now_ns) const;
  uint16_t count(unsigned channel, uint64_t now_ns) const;  // as a read would see it
  uint32_t pending() const { return pending_; }
  bool irq_ack() const { return irq_ack_; }
  uint8_t mode(unsigned channel) const { return channels_[channel % 3].mode; }

 private:
  enum class Phase : uint8_t { kIdle, kWaitTrigger, kCounting };
  struct Channel {
    uint8_t mode = 0;
    uint8_t access = 0;  // RW1 RW0 as programmed (0 only before the first control word)
    bool bcd = false;
    uint8_t read_state = 0;   // word access: 0 next read is LSB, 1 MSB
    uint8_t write_state = 0;  // word access: 0 next write is LSB, 1 MSB
    uint8_t write_latch = 0;
    uint8_t latched = 0;  // latched count bytes left: bit 0 LSB, bit 1 MSB
    uint16_t latched_count = 0;
    bool status_latched = false;
    uint8_t status = 0;
    bool null_count = true;
    bool gate = true;
    uint32_t initial = 0x10000;  // count register, in clock units
    uint32_t loaded = 0x10000;   // count of the current counting run
    Phase phase = Phase::kIdle;
    bool running = false;       // clock enabled by the gate
    uint64_t start_ns = 0;      // time of tick 0 of the running segment
    uint64_t ticks_before = 0;  // ticks counted before the running segment (gate pauses)
    uint16_t frozen = 0;        // counting element while idle
    uint64_t edges = 0;         // IRQ0 edges of this run already reported
  };

  uint32_t modulus(const Channel& c) const { return c.bcd ? 10000 : 0x10000; }
  uint64_t elapsed(const Channel& c, uint64_t now_ns) const;
  uint32_t raw_count(const Channel& c, uint64_t now_ns) const;
  bool periodic(const Channel& c) const { return c.mode == 2 || c.mode == 3; }
  uint64_t clamp_ns(const Channel& c) const;
  uint64_t total_edges(const Channel& c, uint64_t now_ns) const;
  void start_run(Channel& c, uint64_t now_ns);
  void load_count(unsigned channel, uint32_t raw, uint64_t now_ns, PitOutput& out);
  void write_control(uint8_t value, uint64_t now_ns, PitOutput& out);
  void latch_count(Channel& c, uint64_t now_ns);
  void latch_status(Channel& c, uint64_t now_ns);
  uint8_t read_channel(Channel& c, uint64_t now_ns);
  void collect_irq0(uint64_t now_ns, PitOutput& out);
  void reset_reinject();

  PitConfig config_;
  std::array<Channel, 3> channels_{};
  bool speaker_data_ = false;
  uint32_t pending_ = 0;
  bool irq_ack_ = true;
};

}  // namespace apicv
