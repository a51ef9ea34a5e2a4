// 8254 PIT state machine. See pit.h for the references and the simplifications.
#include "devices/pit.h"

#include <algorithm>

namespace apicv {

using namespace x86;

namespace {

constexpr uint64_t kNsPerSec = 1'000'000'000ull;

// Whole PIT clocks in dt nanoseconds.
uint64_t TicksIn(uint64_t dt_ns) {
  return static_cast<uint64_t>(static_cast<unsigned __int128>(dt_ns) * kPitFrequencyHz / kNsPerSec);
}

// Nanoseconds from tick 0 until tick k has happened (smallest dt with TicksIn(dt) >= k).
uint64_t NsUntilTick(uint64_t k) {
  unsigned __int128 ns =
      (static_cast<unsigned __int128>(k) * kNsPerSec + kPitFrequencyHz - 1) / kPitFrequencyHz;
  return ns > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(ns);
}

uint64_t SatAdd(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

// Digits above 9 are taken at face value; the result stays below 16666.
uint32_t FromBcd(uint16_t v) {
  return (v & 0xF) + 10 * ((v >> 4) & 0xF) + 100 * ((v >> 8) & 0xF) + 1000 * ((v >> 12) & 0xF);
}

uint16_t ToBcd(uint32_t v) {
  v %= 10000;
  return static_cast<uint16_t>((v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) |
                               ((v / 1000) << 12));
}

}  // namespace

Pit::Pit(PitConfig config) : config_(config) {
  reset(0);
}

bool Pit::handles_port(uint16_t port) {
  return (port >= kPitChannel0 && port <= kPitControl) || port == kPortB;
}

void Pit::reset(uint64_t /*now_ns*/) {
  channels_ = {};
  for (unsigned i = 0; i < kPitNumChannels; ++i) channels_[i].gate = i != 2;
  speaker_data_ = false;
  reset_reinject();
}

void Pit::reset_reinject() {
  pending_ = 0;
  irq_ack_ = true;
}

uint64_t Pit::elapsed(const Channel& c, uint64_t now_ns) const {
  uint64_t d = c.ticks_before;
  if (c.running && now_ns > c.start_ns) d = SatAdd(d, TicksIn(now_ns - c.start_ns));
  return d;
}

uint32_t Pit::raw_count(const Channel& c, uint64_t now_ns) const {
  if (c.phase != Phase::kCounting) return c.frozen;
  uint64_t d = elapsed(c, now_ns);
  uint32_t n = c.loaded;
  uint32_t m = modulus(c);
  switch (c.mode) {
    case 2:
      return (n - static_cast<uint32_t>(d % n)) % m;
    case 3:
      // Decrements by two per clock (exact for even counts; KVM's formula for odd ones).
      return (n - static_cast<uint32_t>((2 * (d % n)) % n)) % m;
    default:
      // Modes 0, 1, 4, 5 wrap around after zero and keep counting.
      return ((n % m) + m - static_cast<uint32_t>(d % m)) % m;
  }
}

uint16_t Pit::count(unsigned channel, uint64_t now_ns) const {
  const Channel& c = channels_[channel % kPitNumChannels];
  uint32_t v = raw_count(c, now_ns);
  return c.bcd ? ToBcd(v) : static_cast<uint16_t>(v);
}

bool Pit::out(unsigned channel, uint64_t now_ns) const {
  const Channel& c = channels_[channel % kPitNumChannels];
  if (c.phase == Phase::kIdle) return c.mode != 0;  // control word: mode 0 low, others high
  if (c.phase == Phase::kWaitTrigger) return true;
  uint64_t d = elapsed(c, now_ns);
  uint64_t n = c.loaded;
  switch (c.mode) {
    case 0:
    case 1:
      return d >= n;
    case 2:
      return !c.running || d % n != n - 1;
    case 3:
      return !c.running || d % n < (n + 1) / 2;
    default:  // 4, 5: one-clock low strobe when the count reaches zero
      return d != n;
  }
}

uint64_t Pit::clamp_ns(const Channel& c) const {
  if (config_.min_period_ns == 0) return 0;
  uint64_t period_ns = NsUntilTick(c.loaded);
  return period_ns < config_.min_period_ns ? config_.min_period_ns : 0;
}

uint64_t Pit::total_edges(const Channel& c, uint64_t now_ns) const {
  if (c.phase != Phase::kCounting) return c.edges;
  if (periodic(c)) {
    if (!c.running) return c.edges;
    uint64_t clamp = clamp_ns(c);
    if (clamp) return now_ns > c.start_ns ? (now_ns - c.start_ns) / clamp : 0;
    return elapsed(c, now_ns) / c.loaded;
  }
  uint64_t edge_tick = (c.mode <= 1) ? c.loaded : c.loaded + 1ull;
  return elapsed(c, now_ns) >= edge_tick ? 1 : 0;
}

uint64_t Pit::next_deadline_ns() const {
  const Channel& c = channels_[0];
  if (c.phase != Phase::kCounting || !c.running) return UINT64_MAX;
  uint64_t k = c.edges + 1;
  if (periodic(c)) {
    uint64_t clamp = clamp_ns(c);
    if (clamp) {
      unsigned __int128 t = static_cast<unsigned __int128>(k) * clamp + c.start_ns;
      return t > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(t);
    }
    unsigned __int128 tick = static_cast<unsigned __int128>(k) * c.loaded;
    if (tick > UINT64_MAX) return UINT64_MAX;
    return SatAdd(c.start_ns, NsUntilTick(static_cast<uint64_t>(tick)));
  }
  if (c.edges >= 1) return UINT64_MAX;
  uint64_t edge_tick = (c.mode <= 1) ? c.loaded : c.loaded + 1ull;
  uint64_t left = edge_tick > c.ticks_before ? edge_tick - c.ticks_before : 0;
  return SatAdd(c.start_ns, NsUntilTick(left));
}

void Pit::collect_irq0(uint64_t now_ns, PitOutput& out) {
  Channel& c = channels_[0];
  uint64_t total = total_edges(c, now_ns);
  if (total <= c.edges) return;
  uint64_t n = total - c.edges;
  c.edges = total;
  out.irq0_edges += n;
  if (config_.policy == LostTickPolicy::kDiscard) {
    out.irq0_pulses = 1;
    return;
  }
  // Reinjection: every tick is owed; deliver one only if the previous one was acked.
  uint64_t sum = static_cast<uint64_t>(pending_) + n;
  pending_ = static_cast<uint32_t>(std::min<uint64_t>(sum, config_.max_pending));
  if (irq_ack_) {
    irq_ack_ = false;
    out.irq0_pulses = 1;
  }
}

PitOutput Pit::on_timer(uint64_t now_ns) {
  PitOutput out;
  collect_irq0(now_ns, out);
  return out;
}

PitOutput Pit::ack_irq() {
  PitOutput out;
  if (config_.policy != LostTickPolicy::kDelay) return out;
  irq_ack_ = true;
  if (pending_ > 0 && --pending_ > 0) {
    irq_ack_ = false;
    out.irq0_pulses = 1;
  }
  return out;
}

void Pit::irq0_mask_changed(bool masked) {
  if (config_.policy == LostTickPolicy::kDelay && !masked) reset_reinject();
}

void Pit::set_lost_tick_policy(LostTickPolicy policy) {
  if (policy == config_.policy) return;
  config_.policy = policy;
  reset_reinject();
}

void Pit::start_run(Channel& c, uint64_t now_ns) {
  c.loaded = c.initial;
  c.phase = Phase::kCounting;
  c.running = (c.mode == 1 || c.mode == 5) ? true : c.gate;
  c.start_ns = now_ns;
  c.ticks_before = 0;
  c.edges = 0;
  c.null_count = false;
}

void Pit::load_count(unsigned channel, uint32_t raw, uint64_t now_ns, PitOutput& out) {
  Channel& c = channels_[channel];
  if (channel == 0) collect_irq0(now_ns, out);
  if (c.bcd)
    c.initial = raw == 0 ? 10000 : FromBcd(static_cast<uint16_t>(raw));
  else
    c.initial = raw == 0 ? 0x10000 : raw;
  c.null_count = true;
  if (c.mode == 1 || c.mode == 5) {
    // Hardware-triggered modes: the count waits in the count register for a gate edge.
    if (c.phase == Phase::kIdle) c.phase = Phase::kWaitTrigger;
  } else {
    start_run(c, now_ns);
  }
  if (channel == 0) {
    // KVM create_pit_timer(): reprogramming drops the reinjection backlog.
    reset_reinject();
    out.rearm = true;
  }
}

void Pit::latch_count(Channel& c, uint64_t now_ns) {
  if (c.latched) return;  // a second latch before the read is ignored
  uint32_t v = raw_count(c, now_ns);
  c.latched_count = c.bcd ? ToBcd(v) : static_cast<uint16_t>(v);
  c.latched = c.access == kPitAccessMsb ? 2 : c.access == kPitAccessWord ? 3 : 1;
}

void Pit::latch_status(Channel& c, uint64_t now_ns) {
  if (c.status_latched) return;
  unsigned index = static_cast<unsigned>(&c - channels_.data());
  c.status = static_cast<uint8_t>((out(index, now_ns) ? kPitStatusOut : 0) |
                                  (c.null_count ? kPitStatusNullCount : 0) | (c.access << 4) |
                                  (c.mode << 1) | (c.bcd ? 1 : 0));
  c.status_latched = true;
}

void Pit::write_control(uint8_t value, uint64_t now_ns, PitOutput& out) {
  unsigned select = value >> kPitCwSelectShift;
  if (select == kPitSelectReadBack) {
    for (unsigned i = 0; i < kPitNumChannels; ++i) {
      if (!(value & (2u << i))) continue;
      // Status first: if both are latched, the status byte is read before the count.
      if (!(value & kPitReadBackNoStatus)) latch_status(channels_[i], now_ns);
      if (!(value & kPitReadBackNoCount)) latch_count(channels_[i], now_ns);
    }
    return;
  }
  Channel& c = channels_[select];
  uint8_t access = (value >> kPitCwAccessShift) & 3;
  if (access == kPitAccessLatch) {
    latch_count(c, now_ns);
    return;
  }
  if (select == 0) {
    collect_irq0(now_ns, out);
    out.rearm = true;
  }
  // A control word resets the counter's logic: it stops until a new count is written.
  c.frozen = raw_count(c, now_ns);
  c.access = access;
  c.read_state = 0;
  c.write_state = 0;
  c.mode = (value >> kPitCwModeShift) & 7;
  if (c.mode > 5) c.mode -= 4;  // 6 and 7 alias modes 2 and 3
  c.bcd = value & kPitCwBcd;
  c.phase = Phase::kIdle;
  c.running = false;
  c.null_count = true;
  c.edges = 0;
}

uint8_t Pit::read_channel(Channel& c, uint64_t now_ns) {
  if (c.status_latched) {
    c.status_latched = false;
    return c.status;
  }
  if (c.latched) {
    if (c.latched & 1) {
      c.latched &= ~1;
      return static_cast<uint8_t>(c.latched_count);
    }
    c.latched = 0;
    return static_cast<uint8_t>(c.latched_count >> 8);
  }
  unsigned index = static_cast<unsigned>(&c - channels_.data());
  uint16_t v = count(index, now_ns);
  switch (c.access) {
    case kPitAccessMsb:
      return static_cast<uint8_t>(v >> 8);
    case kPitAccessWord:
      c.read_state ^= 1;
      return c.read_state ? static_cast<uint8_t>(v) : static_cast<uint8_t>(v >> 8);
    default:
      return static_cast<uint8_t>(v);
  }
}

PitOutput Pit::pio_write(uint16_t port, uint8_t value, uint64_t now_ns) {
  PitOutput out;
  if (port == kPitControl) {
    write_control(value, now_ns, out);
    return out;
  }
  if (port == kPortB) {
    speaker_data_ = value & kPortBSpeakerData;
    return set_gate(2, value & kPortBGate2, now_ns);
  }
  if (port < kPitChannel0 || port > kPitChannel2) return out;
  unsigned index = port - kPitChannel0;
  Channel& c = channels_[index];
  switch (c.access) {
    case kPitAccessMsb:
      load_count(index, static_cast<uint32_t>(value) << 8, now_ns, out);
      break;
    case kPitAccessWord:
      if (c.write_state == 0) {
        c.write_latch = value;
        c.write_state = 1;
        if (c.mode == 0 && c.phase != Phase::kIdle) {
          // Mode 0: writing the first byte stops the count (OUT low) until the second byte.
          if (index == 0) collect_irq0(now_ns, out);
          c.frozen = raw_count(c, now_ns);
          c.phase = Phase::kIdle;
          c.running = false;
          out.rearm = out.rearm || index == 0;
        }
      } else {
        c.write_state = 0;
        load_count(index, c.write_latch | (static_cast<uint32_t>(value) << 8), now_ns, out);
      }
      break;
    default:  // LSB only (and the unprogrammed state)
      load_count(index, value, now_ns, out);
      break;
  }
  return out;
}

uint8_t Pit::pio_read(uint16_t port, uint64_t now_ns) {
  if (port == kPortB) {
    // Refresh request toggles every 2^14 ns (~16 us), as KVM derives it from the clock.
    return static_cast<uint8_t>(
        (channels_[2].gate ? kPortBGate2 : 0) | (speaker_data_ ? kPortBSpeakerData : 0) |
        (((now_ns >> 14) & 1) ? kPortBRefresh : 0) | (out(2, now_ns) ? kPortBOut2 : 0));
  }
  if (port < kPitChannel0 || port > kPitChannel2) return 0;  // control word is write-only
  return read_channel(channels_[port - kPitChannel0], now_ns);
}

PitOutput Pit::set_gate(unsigned channel, bool level, uint64_t now_ns) {
  PitOutput out;
  if (channel >= kPitNumChannels) return out;
  Channel& c = channels_[channel];
  if (channel == 0) {
    collect_irq0(now_ns, out);
    out.rearm = true;
  }
  if (level == c.gate) return out;
  c.gate = level;
  if (c.phase == Phase::kIdle) return out;
  switch (c.mode) {
    case 0:
    case 4:
      // Gate low suspends counting; high resumes it.
      if (c.phase != Phase::kCounting) break;
      if (!level) {
        c.ticks_before = elapsed(c, now_ns);
        c.running = false;
      } else {
        c.start_ns = now_ns;
        c.running = true;
      }
      break;
    case 2:
    case 3:
      // Gate low stops the counter with OUT high; the rising edge reloads the count.
      if (c.phase != Phase::kCounting) break;
      if (!level) {
        c.ticks_before = elapsed(c, now_ns);
        c.running = false;
      } else {
        start_run(c, now_ns);
      }
      break;
    default:  // 1, 5: the rising edge (re)triggers
      if (level) start_run(c, now_ns);
      break;
  }
  return out;
}

}  // namespace apicv
