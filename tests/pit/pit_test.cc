// 8254 PIT tests derived from the Intel 8254 datasheet (modes 0-5, OUT waveforms, gate rules,
// counter latch, read-back, status byte), the PC wiring (IRQ0, port 0x61) and KVM's PIT
// reinjection algorithm (apicv spec §5). Times: tick k of a run happens ceil(k*1e9/1193182) ns
// after the count is loaded (or the gate triggers).
#include "devices/pit.h"

#include <gtest/gtest.h>

#include <random>

namespace apicv {
namespace {

// When tick k happens, relative to the start of a run.
constexpr uint64_t T(uint64_t k) {
  return (k * 1'000'000'000ull + 1193182 - 1) / 1193182;
}
static_assert(T(1) == 839);
static_assert(T(65536) == 54925402);  // the BIOS's 18.2 Hz tick
static_assert(T(11931) == 9999313);   // Linux's 10 ms calibration latch

constexpr uint64_t kT0 = 5'000'000'000ull;

class PitTest : public ::testing::Test {
 protected:
  PitOutput out(uint16_t port, uint8_t v, uint64_t now = kT0) {
    return pit.pio_write(port, v, now);
  }
  uint8_t in(uint16_t port, uint64_t now) { return pit.pio_read(port, now); }
  // Control word then a 16-bit count, LSB first.
  void program(unsigned ch, uint8_t mode, uint16_t count, uint64_t now = kT0) {
    out(0x43, static_cast<uint8_t>((ch << 6) | 0x30 | (mode << 1)), now);
    out(static_cast<uint16_t>(0x40 + ch), static_cast<uint8_t>(count), now);
    out(static_cast<uint16_t>(0x40 + ch), static_cast<uint8_t>(count >> 8), now);
  }
  uint16_t latch_and_read(unsigned ch, uint64_t now) {
    out(0x43, static_cast<uint8_t>(ch << 6), now);  // counter latch command
    uint16_t lo = in(static_cast<uint16_t>(0x40 + ch), now + 1'000'000);
    uint16_t hi = in(static_cast<uint16_t>(0x40 + ch), now + 2'000'000);
    return static_cast<uint16_t>(lo | (hi << 8));
  }
  uint8_t read_status(unsigned ch, uint64_t now) {
    out(0x43, static_cast<uint8_t>(0xE0 | (2u << ch)), now);  // read-back: status only
    return in(static_cast<uint16_t>(0x40 + ch), now);
  }

  Pit pit;
};

TEST_F(PitTest, SeaBiosMode2OnChannel0GivesIrq0Every65536Clocks) {
  EXPECT_EQ(pit.next_deadline_ns(), UINT64_MAX);  // reset: channel 0 idle, as in KVM
  out(0x43, 0x34);
  EXPECT_EQ(pit.next_deadline_ns(), UINT64_MAX);  // control word alone does not start it
  out(0x40, 0x00);
  PitOutput o = out(0x40, 0x00);
  EXPECT_TRUE(o.rearm);
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(65536));
  EXPECT_EQ(pit.on_timer(kT0 + T(65536) - 1).irq0_edges, 0u);
  o = pit.on_timer(kT0 + T(65536));
  EXPECT_EQ(o.irq0_edges, 1u);
  EXPECT_EQ(o.irq0_pulses, 1u);
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(2 * 65536));
  // Status: OUT high, count loaded, word access, mode 2, binary.
  EXPECT_EQ(read_status(0, kT0 + 10), 0xB4);
  EXPECT_EQ(latch_and_read(0, kT0 + T(1000)), 65536 - 1000);
}

TEST_F(PitTest, Mode2OutGoesLowForTheClockAtCountOne) {
  program(2, 2, 100);
  out(0x61, 0x01);  // gate 2 high; the count was written with gate low
  // The gate's rising edge (re)loads the count in mode 2.
  uint64_t t = kT0;
  EXPECT_TRUE(pit.out(2, t + T(98)));
  EXPECT_FALSE(pit.out(2, t + T(99)));
  EXPECT_TRUE(pit.out(2, t + T(100)));
  EXPECT_FALSE(pit.out(2, t + T(199)));
  EXPECT_EQ(pit.count(2, t + T(30)), 70);
  EXPECT_EQ(pit.count(2, t + T(100)), 100);  // reloaded
}

TEST_F(PitTest, Mode3SquareWaveAndCountByTwos) {
  out(0x61, 0x01);
  program(2, 3, 100);
  EXPECT_TRUE(pit.out(2, kT0 + T(49)));
  EXPECT_FALSE(pit.out(2, kT0 + T(50)));
  EXPECT_FALSE(pit.out(2, kT0 + T(99)));
  EXPECT_TRUE(pit.out(2, kT0 + T(100)));
  EXPECT_EQ(pit.count(2, kT0 + T(10)), 80);
  EXPECT_EQ(pit.count(2, kT0 + T(60)), 80);
  // Odd count: high for (N+1)/2 clocks, low for (N-1)/2.
  program(2, 3, 5, kT0);
  EXPECT_TRUE(pit.out(2, kT0 + T(2)));
  EXPECT_FALSE(pit.out(2, kT0 + T(3)));
  EXPECT_FALSE(pit.out(2, kT0 + T(4)));
  EXPECT_TRUE(pit.out(2, kT0 + T(5)));
}

TEST_F(PitTest, Mode3OnChannel0InterruptsOncePerPeriod) {
  program(0, 3, 1193);
  PitOutput o = pit.on_timer(kT0 + T(3 * 1193));
  EXPECT_EQ(o.irq0_edges, 3u);
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(4 * 1193));
}

TEST_F(PitTest, Mode0InterruptOnTerminalCount) {
  out(0x43, 0x30);
  EXPECT_FALSE(pit.out(0, kT0));  // control word sets OUT low in mode 0
  out(0x40, 0xE8);
  out(0x40, 0x03);  // 1000
  EXPECT_FALSE(pit.out(0, kT0 + T(999)));
  EXPECT_TRUE(pit.out(0, kT0 + T(1000)));
  EXPECT_EQ(pit.count(0, kT0 + T(1000)), 0);
  EXPECT_EQ(pit.count(0, kT0 + T(1001)), 0xFFFF);  // wraps and keeps counting
  EXPECT_TRUE(pit.out(0, kT0 + T(5000)));          // OUT stays high
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(1000));
  EXPECT_EQ(pit.on_timer(kT0 + T(1000)).irq0_edges, 1u);
  EXPECT_EQ(pit.next_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(pit.on_timer(kT0 + T(100000)).irq0_edges, 0u);
}

TEST_F(PitTest, Mode0FirstByteStopsCounting) {
  out(0x61, 0x01);
  program(2, 0, 1000);
  out(0x42, 0x10, kT0 + T(100));  // first byte of a new count: counting stops, OUT low
  EXPECT_EQ(pit.count(2, kT0 + T(2000)), 900);
  EXPECT_FALSE(pit.out(2, kT0 + T(2000)));
  out(0x42, 0x00, kT0 + T(2000));  // 0x0010 = 16
  EXPECT_TRUE(pit.out(2, kT0 + T(2000) + T(16)));
}

TEST_F(PitTest, Mode4SoftwareStrobe) {
  program(0, 4, 100);
  EXPECT_TRUE(pit.out(0, kT0 + T(99)));
  EXPECT_FALSE(pit.out(0, kT0 + T(100)));
  EXPECT_TRUE(pit.out(0, kT0 + T(101)));
  // IRQ0 sees the rising edge at the end of the strobe.
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(101));
  EXPECT_EQ(pit.on_timer(kT0 + T(100)).irq0_edges, 0u);
  EXPECT_EQ(pit.on_timer(kT0 + T(101)).irq0_edges, 1u);
}

TEST_F(PitTest, Mode1OneShotNeedsAGateTrigger) {
  program(2, 1, 100);
  EXPECT_TRUE(pit.out(2, kT0 + T(500)));              // no trigger yet
  EXPECT_NE(read_status(2, kT0 + T(500)) & 0x40, 0);  // null count until the trigger loads it
  uint64_t trig = kT0 + T(500);
  out(0x61, 0x01, trig);
  EXPECT_FALSE(pit.out(2, trig + T(1)));
  EXPECT_FALSE(pit.out(2, trig + T(99)));
  EXPECT_TRUE(pit.out(2, trig + T(100)));
  EXPECT_EQ(read_status(2, trig + T(1)) & 0x40, 0);
  // Retrigger: low gate, then high again restarts the pulse.
  out(0x61, 0x00, trig + T(200));
  out(0x61, 0x01, trig + T(300));
  EXPECT_FALSE(pit.out(2, trig + T(350)));
  EXPECT_TRUE(pit.out(2, trig + T(400)));
}

TEST_F(PitTest, Mode5HardwareStrobe) {
  program(2, 5, 50);
  EXPECT_TRUE(pit.out(2, kT0 + T(1000)));
  out(0x61, 0x01, kT0);
  EXPECT_TRUE(pit.out(2, kT0 + T(49)));
  EXPECT_FALSE(pit.out(2, kT0 + T(50)));
  EXPECT_TRUE(pit.out(2, kT0 + T(51)));
}

TEST_F(PitTest, GateLowSuspendsMode0) {
  out(0x61, 0x01);
  program(2, 0, 1000);
  out(0x61, 0x00, kT0 + T(300));
  EXPECT_EQ(pit.count(2, kT0 + T(300) + 50'000'000), 700);
  uint64_t resume = kT0 + T(300) + 50'000'000;
  out(0x61, 0x01, resume);
  EXPECT_FALSE(pit.out(2, resume + T(699)));
  EXPECT_TRUE(pit.out(2, resume + T(700)));
}

TEST_F(PitTest, GateLowForcesMode2OutHighAndRisingEdgeReloads) {
  out(0x61, 0x01);
  program(2, 2, 100);
  out(0x61, 0x00, kT0 + T(99) - 1);  // just before the low clock
  EXPECT_TRUE(pit.out(2, kT0 + T(99)));
  EXPECT_EQ(pit.count(2, kT0 + T(150)), 2);  // frozen
  out(0x61, 0x01, kT0 + T(150));
  EXPECT_EQ(pit.count(2, kT0 + T(150)), 100);
  EXPECT_FALSE(pit.out(2, kT0 + T(150) + T(99)));
}

TEST_F(PitTest, LinuxPitCalibrateTscOnChannel2) {
  // pit_calibrate_tsc(): gate on, speaker off; mode 0 binary on channel 2; LSB then MSB.
  uint8_t b = in(0x61, kT0);
  out(0x61, static_cast<uint8_t>((b & ~0x02) | 0x01));
  out(0x43, 0xB0);
  out(0x42, 11931 & 0xFF);
  out(0x42, 11931 >> 8);
  EXPECT_EQ(in(0x61, kT0 + T(11931) - 1) & 0x20, 0);
  EXPECT_EQ(in(0x61, kT0 + T(11931)) & 0x20, 0x20);
  EXPECT_EQ(in(0x61, kT0) & 0x03, 0x01);
}

TEST_F(PitTest, LinuxQuickPitCalibrateReadsDecreasingMsb) {
  // quick_pit_calibrate(): 0xB0, count 0xFFFF, then unlatched LSB/MSB reads.
  out(0x61, 0x01);
  out(0x43, 0xB0);
  out(0x42, 0xFF);
  out(0x42, 0xFF);
  int last_msb = 0x100;
  for (int i = 1; i <= 20; ++i) {
    uint64_t t = kT0 + T(256 * i + 10);
    in(0x42, t);  // LSB (discarded, as Linux does)
    int msb = in(0x42, t);
    EXPECT_EQ(msb, 0xFF - i) << i;  // 0xFFFF - 256*i - 10 has MSB 0xFF - i
    EXPECT_LT(msb, last_msb);
    last_msb = msb;
  }
}

TEST_F(PitTest, CounterLatchFreezesTheReadValue) {
  out(0x61, 0x01);
  program(2, 0, 5000);
  out(0x43, 0x80, kT0 + T(1000));  // latch channel 2
  out(0x43, 0x80, kT0 + T(2000));  // ignored: already latched
  EXPECT_EQ(in(0x42, kT0 + T(3000)), (4000 & 0xFF));
  EXPECT_EQ(in(0x42, kT0 + T(3000)), (4000 >> 8));
  // Latch consumed: reads follow the counter again.
  EXPECT_EQ(in(0x42, kT0 + T(3000)), (2000 & 0xFF));
}

TEST_F(PitTest, LsbOnlyAndMsbOnlyAccess) {
  out(0x61, 0x01);
  out(0x43, 0x90);  // channel 2, LSB only, mode 0
  out(0x42, 0x20);
  EXPECT_EQ(in(0x42, kT0 + T(2)), 0x1E);
  EXPECT_EQ(in(0x42, kT0 + T(2)), 0x1E);  // no flip-flop
  out(0x43, 0xA0);                        // MSB only
  out(0x42, 0x12);
  EXPECT_EQ(pit.count(2, kT0), 0x1200);
  EXPECT_EQ(in(0x42, kT0 + T(0x100)), 0x11);
  out(0x43, 0x80, kT0 + T(0x200));  // latch in MSB mode: one byte
  EXPECT_EQ(in(0x42, kT0 + T(0x300)), 0x10);
  EXPECT_EQ(in(0x42, kT0 + T(0x300)), 0x0F);  // live again
}

TEST_F(PitTest, ReadBackLatchesStatusThenCount) {
  out(0x61, 0x01);
  out(0x43, 0xB0);
  // Null count: the control word was written but no count yet.
  EXPECT_EQ(read_status(2, kT0), 0x40 | 0x30 | 0x00);
  out(0x42, 0x10);
  out(0x42, 0x27);                          // 10000
  out(0x43, 0xC8, kT0 + T(100));            // read-back: count and status of channel 2
  out(0x43, 0xC8, kT0 + T(200));            // ignored: both still latched
  EXPECT_EQ(in(0x42, kT0 + T(300)), 0x30);  // OUT low, count loaded, word, mode 0
  EXPECT_EQ(in(0x42, kT0 + T(300)), (9900 & 0xFF));
  EXPECT_EQ(in(0x42, kT0 + T(300)), (9900 >> 8));
  // Read-back of all three counts at once (no status).
  program(0, 2, 1000);
  program(1, 2, 2000);
  out(0x43, 0xDE, kT0 + T(10));
  EXPECT_EQ(in(0x40, kT0 + T(50)) | (in(0x40, kT0 + T(50)) << 8), 990);
  EXPECT_EQ(in(0x41, kT0 + T(50)) | (in(0x41, kT0 + T(50)) << 8), 1990);
  EXPECT_EQ(in(0x42, kT0 + T(50)) | (in(0x42, kT0 + T(50)) << 8), 10000 - 10);
}

TEST_F(PitTest, BcdCounting) {
  out(0x43, 0x35);  // channel 0, word, mode 2, BCD
  out(0x40, 0x00);
  out(0x40, 0x10);  // BCD 1000
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(1000));
  EXPECT_EQ(pit.count(0, kT0 + T(1)), 0x0999);
  EXPECT_EQ(read_status(0, kT0) & 0x0F, 0x05);
  out(0x43, 0x31);  // mode 0, BCD, count 0 = 10000
  out(0x40, 0x00);
  out(0x40, 0x00);
  EXPECT_EQ(pit.count(0, kT0 + T(1)), 0x9999);
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + T(10000));
}

TEST_F(PitTest, Modes6And7AliasModes2And3) {
  out(0x43, 0x3C);  // mode 6
  EXPECT_EQ(pit.mode(0), 2);
  out(0x43, 0x3E);
  EXPECT_EQ(pit.mode(0), 3);
  EXPECT_EQ(read_status(0, kT0) & 0x0E, 0x06);
}

TEST_F(PitTest, ControlWordStopsChannel0) {
  program(0, 2, 1000);
  out(0x43, 0x34, kT0 + T(500));
  EXPECT_EQ(pit.next_deadline_ns(), UINT64_MAX);
  EXPECT_EQ(pit.on_timer(kT0 + T(5000)).irq0_edges, 0u);
}

TEST_F(PitTest, PortBBits) {
  EXPECT_EQ(in(0x61, 0) & 0x13, 0x00);
  out(0x61, 0x03);
  EXPECT_EQ(in(0x61, 0) & 0x03, 0x03);
  EXPECT_EQ(in(0x61, 1ull << 14) & 0x10, 0x10);  // refresh toggles every 2^14 ns
  EXPECT_EQ(in(0x61, 2ull << 14) & 0x10, 0x00);
  out(0x61, 0xFC);  // only bits 0 and 1 are kept
  EXPECT_EQ(in(0x61, 0) & 0xCF, 0x00);
  EXPECT_EQ(in(0x43, 0), 0);  // control word is write-only
}

TEST_F(PitTest, DelayPolicyDeliversEveryTickOnePerAck) {
  program(0, 2, 1193);
  PitOutput o = pit.on_timer(kT0 + T(3 * 1193));
  EXPECT_EQ(o.irq0_pulses, 1u);
  EXPECT_EQ(pit.pending(), 3u);
  EXPECT_FALSE(pit.irq_ack());
  // Another tick before the guest acked: owed, not injected.
  EXPECT_EQ(pit.on_timer(kT0 + T(4 * 1193)).irq0_pulses, 0u);
  EXPECT_EQ(pit.pending(), 4u);
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 1u);
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 1u);
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 1u);
  EXPECT_EQ(pit.pending(), 1u);
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 0u);  // the last one was acked: nothing owed
  EXPECT_EQ(pit.pending(), 0u);
  EXPECT_TRUE(pit.irq_ack());
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 0u);
  EXPECT_EQ(pit.on_timer(kT0 + T(5 * 1193)).irq0_pulses, 1u);
}

TEST_F(PitTest, DiscardPolicyCollapsesMissedTicks) {
  pit = Pit(PitConfig{.policy = LostTickPolicy::kDiscard});
  program(0, 2, 1193);
  PitOutput o = pit.on_timer(kT0 + T(3 * 1193));
  EXPECT_EQ(o.irq0_edges, 3u);
  EXPECT_EQ(o.irq0_pulses, 1u);
  EXPECT_EQ(pit.pending(), 0u);
  EXPECT_EQ(pit.ack_irq().irq0_pulses, 0u);
  // Next period injects regardless of acks.
  EXPECT_EQ(pit.on_timer(kT0 + T(4 * 1193)).irq0_pulses, 1u);
  EXPECT_EQ(pit.on_timer(kT0 + T(5 * 1193)).irq0_pulses, 1u);
}

TEST_F(PitTest, UnmaskAndReprogramDropTheBacklog) {
  program(0, 2, 1193);
  pit.on_timer(kT0 + T(10 * 1193));
  EXPECT_EQ(pit.pending(), 10u);
  pit.irq0_mask_changed(true);
  EXPECT_EQ(pit.pending(), 10u);
  pit.irq0_mask_changed(false);
  EXPECT_EQ(pit.pending(), 0u);
  EXPECT_TRUE(pit.irq_ack());
  pit.on_timer(kT0 + T(15 * 1193));
  EXPECT_EQ(pit.pending(), 5u);
  program(0, 2, 1193, kT0 + T(15 * 1193));
  EXPECT_EQ(pit.pending(), 0u);
  EXPECT_TRUE(pit.irq_ack());
}

TEST_F(PitTest, SwitchingPolicyResetsState) {
  program(0, 2, 1193);
  pit.on_timer(kT0 + T(4 * 1193));
  pit.set_lost_tick_policy(LostTickPolicy::kDelay);  // unchanged: no-op
  EXPECT_EQ(pit.pending(), 4u);
  pit.set_lost_tick_policy(LostTickPolicy::kDiscard);
  EXPECT_EQ(pit.pending(), 0u);
  EXPECT_TRUE(pit.irq_ack());
}

TEST_F(PitTest, PendingTicksSaturate) {
  pit = Pit(PitConfig{.max_pending = 10});
  program(0, 2, 2);
  pit.on_timer(kT0 + 1'000'000'000);
  EXPECT_EQ(pit.pending(), 10u);
  Pit big;
  big.pio_write(0x43, 0x34, 0);
  big.pio_write(0x40, 2, 0);
  big.pio_write(0x40, 0, 0);
  big.on_timer(3600ull * 1'000'000'000ull);  // an hour masked: ~2.1e9 ticks
  EXPECT_EQ(big.pending(), 0x7FFFFFFFu);
}

TEST_F(PitTest, MinimumPeriodClampsFastPeriodicTimers) {
  pit = Pit(PitConfig{.min_period_ns = 200'000});
  program(0, 2, 100);  // 83.8 us
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + 200'000);
  EXPECT_EQ(pit.on_timer(kT0 + 1'000'000).irq0_edges, 5u);
  program(0, 2, 1193, kT0 + 1'000'000);  // ~1 ms: not clamped
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + 1'000'000 + T(1193));
  program(0, 0, 100, kT0 + 2'000'000);  // one-shot: never clamped
  EXPECT_EQ(pit.next_deadline_ns(), kT0 + 2'000'000 + T(100));
}

// Random bytes on every port, timer expiries and acks, judged by what the 8254 and KVM's
// reinjection allow rather than by the model's own clamps: OUT0 cannot rise more often than the
// 1.193182 MHz input clock ticks (plus once per control word or count write, which can set OUT
// high at once); no IRQ0 and no owed tick without a rising edge behind it; with reinjection
// (lost_tick_policy=delay) a tick injected by an expiry or an ack stays outstanding until acked,
// and no timer expiry injects another before that ack (kvm_pit_ack_irq / pit_do_work; a count
// write resets reinjection, kvm_pit_reset_reinject, so it is not checked there).
TEST_F(PitTest, HostileBytesOnEveryPort) {
  const uint16_t ports[] = {0x40, 0x41, 0x42, 0x43, 0x61, 0x44};
  std::mt19937_64 rng(99);
  uint64_t now = 0;
  uint64_t edges = 0, pulses = 0, writes = 0;
  for (int i = 0; i < 300000; ++i) {
    now += rng() % 200'000;
    const bool outstanding = !pit.irq_ack();
    PitOutput o;
    switch (rng() % 5) {
      case 0:
      case 1: {
        const uint16_t port = ports[rng() % 6];
        if (port == 0x40 || port == 0x43) ++writes;
        o = pit.pio_write(port, static_cast<uint8_t>(rng()), now);
        break;
      }
      case 2:
        pit.pio_read(ports[rng() % 6], now);
        break;
      case 3:
        o = pit.on_timer(now);
        ASSERT_TRUE(pit.next_deadline_ns() > now);
        ASSERT_FALSE(outstanding && o.irq0_pulses > 0)
            << "a second IRQ0 before the ack, step " << i;
        ASSERT_FALSE(o.irq0_pulses > 0 && pit.irq_ack()) << "tick not outstanding, step " << i;
        break;
      default:
        o = pit.ack_irq();
        ASSERT_FALSE(o.irq0_pulses > 0 && pit.irq_ack()) << "tick not outstanding, step " << i;
        break;
    }
    edges += o.irq0_edges;
    pulses += o.irq0_pulses;
    ASSERT_LE(edges, now * 1193182 / 1'000'000'000 + 1 + writes) << "step " << i;
    ASSERT_LE(pulses, edges) << "step " << i;
    ASSERT_LE(pit.pending(), edges) << "step " << i;
  }
  EXPECT_GT(pulses, 0u);  // the random program did run channel 0
}

}  // namespace
}  // namespace apicv
