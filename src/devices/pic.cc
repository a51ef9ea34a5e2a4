// 8259A PIC pair state machine. See pic.h for the references and the unsupported features.
#include "devices/pic.h"

namespace apicv {

using namespace x86;

Pic::Pic() {
  reset();
}

void Pic::reset() {
  chips_ = {};
  chips_[0].elcr_mask = kPicElcrMaskMaster;
  chips_[1].elcr_mask = kPicElcrMaskSlave;
  output_ = false;
}

bool Pic::handles_port(uint16_t port) {
  return port == kPicMasterCmd || port == kPicMasterData || port == kPicSlaveCmd ||
         port == kPicSlaveData || port == kPicElcrMaster || port == kPicElcrSlave;
}

bool Pic::set_irq1(unsigned chip, unsigned ir, bool level) {
  Chip& c = chips_[chip];
  uint8_t bit = static_cast<uint8_t>(1u << ir);
  bool merged = false;
  if (c.elcr & bit) {
    // Level: IRR follows the line.
    if (level) {
      merged = c.irr & bit;
      c.irr |= bit;
      c.last_irr |= bit;
    } else {
      c.irr &= ~bit;
      c.last_irr &= ~bit;
    }
    return merged;
  }
  // Edge: a low-to-high transition latches IRR; the line falling does not clear it.
  if (level) {
    if (!(c.last_irr & bit)) {
      merged = c.irr & bit;
      c.irr |= bit;
    }
    c.last_irr |= bit;
  } else {
    c.last_irr &= ~bit;
  }
  return merged;
}

unsigned Pic::priority(const Chip& c, uint8_t mask) const {
  if (mask == 0) return 8;
  unsigned p = 0;
  while (!(mask & (1u << ((p + c.priority_add) & 7)))) ++p;
  return p;
}

int Pic::pending_ir(unsigned chip) const {
  const Chip& c = chips_[chip];
  unsigned request = priority(c, c.irr & ~c.imr);
  if (request == 8) return -1;
  uint8_t in_service = c.isr;
  // Special mask mode: a masked in-service level no longer blocks lower priorities.
  if (c.special_mask) in_service &= ~c.imr;
  // Special fully nested mode: the master lets further slave requests through while IR2 is in
  // service, so the slave can nest its own priorities.
  if (chip == 0 && c.special_fully_nested) in_service &= ~(1u << kPicCascadeIrq);
  if (request < priority(c, in_service)) return static_cast<int>((request + c.priority_add) & 7);
  return -1;
}

void Pic::update_irq(PicOutput& out) {
  if (pending_ir(1) >= 0) {
    // The slave's INT pulses master IR2 (edge, since ELCR bit 2 can never be set).
    set_irq1(0, kPicCascadeIrq, true);
    set_irq1(0, kPicCascadeIrq, false);
  }
  bool level = pending_ir(0) >= 0;
  if (level != output_) out.output_changed = true;
  output_ = level;
}

void Pic::clear_isr(unsigned chip, unsigned ir, PicOutput& out) {
  chips_[chip].isr &= ~(1u << ir);
  // KVM notifies ack notifiers on every ISR clear, even of a bit that was not set.
  out.acked_irqs |= static_cast<uint16_t>(1u << (ir + irq_offset(chip)));
}

void Pic::intack(unsigned chip, unsigned ir, PicOutput& out) {
  Chip& c = chips_[chip];
  uint8_t bit = static_cast<uint8_t>(1u << ir);
  c.isr |= bit;
  // A level request stays in IRR while the line is high.
  if (!(c.elcr & bit)) c.irr &= ~bit;
  if (c.auto_eoi) {
    if (c.rotate_on_auto_eoi) c.priority_add = (ir + 1) & 7;
    clear_isr(chip, ir, out);
  }
}

PicOutput Pic::set_irq(unsigned irq, bool level) {
  PicOutput out;
  if (irq >= kPicNumIrqs) return out;
  const bool merged = set_irq1(irq >> 3, irq & 7, level);
  // A masked input is reported as masked, never as coalesced (KVM returns -1 before ret == 0).
  out.coalesced = merged && !(chips_[irq >> 3].imr & (1u << (irq & 7)));
  update_irq(out);
  return out;
}

uint8_t Pic::acknowledge(PicOutput* out_opt) {
  PicOutput local;
  PicOutput& out = out_opt ? *out_opt : local;
  bool was = output_;
  uint8_t vector;
  int ir = pending_ir(0);
  if (ir >= 0) {
    intack(0, static_cast<unsigned>(ir), out);
    if (ir == static_cast<int>(kPicCascadeIrq)) {
      int ir2 = pending_ir(1);
      if (ir2 >= 0)
        intack(1, static_cast<unsigned>(ir2), out);
      else
        ir2 = 7;  // the slave's request went away: spurious IRQ15
      vector = static_cast<uint8_t>(chips_[1].irq_base + ir2);
    } else {
      vector = static_cast<uint8_t>(chips_[0].irq_base + ir);
    }
  } else {
    vector = static_cast<uint8_t>(chips_[0].irq_base + 7);  // spurious IRQ7
  }
  update_irq(out);
  out.output_changed = output_ != was;
  return vector;
}

void Pic::init(unsigned chip, uint8_t icw1, PicOutput& out) {
  Chip& c = chips_[chip];
  if (icw1 & kIcw1Ltim)
    out.unsupported = "8259A ICW1 LTIM (level-triggered mode) unsupported: ELCR decides edge/level";
  c.init4 = icw1 & kIcw1Ic4;
  c.single = icw1 & kIcw1Sngl;
  // Edge requests latched before initialisation are dropped; tell ack notifiers (as KVM does)
  // so a source waiting for an ack (PIT reinjection) is not stuck.
  uint8_t edge_irr = c.irr & ~c.elcr;
  for (unsigned ir = 0; ir < 8; ++ir)
    if (edge_irr & (1u << ir))
      out.acked_irqs |= static_cast<uint16_t>(1u << (ir + irq_offset(chip)));
  // Datasheet: edge sense reset, IMR cleared, IR7 lowest priority, special mask cleared, read
  // register = IRR, and ICW4 functions cleared when IC4 = 0.
  c.last_irr = 0;
  c.irr &= c.elcr;
  c.isr = 0;
  uint8_t old_imr = c.imr;
  c.imr = 0;
  out.mask_changed_irqs |= static_cast<uint16_t>(old_imr << irq_offset(chip));
  c.priority_add = 0;
  c.special_mask = false;
  c.read_reg_select = 0;
  c.poll = false;
  if (!c.init4) {
    c.special_fully_nested = false;
    c.auto_eoi = false;
  }
  c.init_state = 1;
  update_irq(out);
}

void Pic::write_command(unsigned chip, uint8_t value, PicOutput& out) {
  Chip& c = chips_[chip];
  if (value & kIcw1Init) {
    init(chip, value, out);
    return;
  }
  if (value & kOcw3Select) {
    // OCW3.
    if (value & kOcw3Poll) c.poll = true;
    if (value & kOcw3Rr) c.read_reg_select = value & kOcw3Ris;
    if (value & kOcw3Esmm) c.special_mask = value & kOcw3Smm;
    update_irq(out);
    return;
  }
  // OCW2: R SL EOI in bits 7:5, level in 2:0.
  unsigned cmd = value >> 5;
  unsigned level = value & 7;
  switch (cmd) {
    case 0:  // rotate in AEOI mode: clear
    case 4:  // rotate in AEOI mode: set
      c.rotate_on_auto_eoi = cmd == 4;
      break;
    case 1:    // non-specific EOI
    case 5: {  // rotate on non-specific EOI
      unsigned p = priority(c, c.isr);
      if (p == 8) break;
      unsigned ir = (p + c.priority_add) & 7;
      if (cmd == 5) c.priority_add = (ir + 1) & 7;
      clear_isr(chip, ir, out);
      break;
    }
    case 3:  // specific EOI
      clear_isr(chip, level, out);
      break;
    case 6:  // set priority: `level` becomes the lowest
      c.priority_add = (level + 1) & 7;
      break;
    case 7:  // rotate on specific EOI
      c.priority_add = (level + 1) & 7;
      clear_isr(chip, level, out);
      break;
    default:  // 2: no operation
      break;
  }
  update_irq(out);
}

void Pic::write_data(unsigned chip, uint8_t value, PicOutput& out) {
  Chip& c = chips_[chip];
  switch (c.init_state) {
    case 0: {  // OCW1
      uint8_t diff = c.imr ^ value;
      c.imr = value;
      out.mask_changed_irqs |= static_cast<uint16_t>(diff << irq_offset(chip));
      break;
    }
    case 1:  // ICW2: T7-T3 (8086 mode)
      c.irq_base = value & 0xF8;
      c.init_state = c.single ? (c.init4 ? 3 : 0) : 2;
      break;
    case 2:  // ICW3: stored only; the PC cascade is wired to IR2
      c.icw3 = value;
      c.init_state = c.init4 ? 3 : 0;
      break;
    default:  // ICW4
      if (!(value & kIcw4Upm))
        out.unsupported = "8259A ICW4 8080/8085 mode unsupported: using 8086 vectors";
      c.special_fully_nested = value & kIcw4Sfnm;
      c.auto_eoi = value & kIcw4Aeoi;
      c.init_state = 0;
      break;
  }
  // ICW4 can change the priority logic (SFNM); keep INT consistent with it.
  update_irq(out);
}

uint8_t Pic::poll_read(unsigned chip, PicOutput& out) {
  int ir = pending_ir(chip);
  if (ir < 0) {
    update_irq(out);
    return 0x07;
  }
  intack(chip, static_cast<unsigned>(ir), out);
  // Polling the slave services its request directly, so the cascade request it left latched
  // in master IR2 is withdrawn.
  if (chip == 1) chips_[0].irr &= ~(1u << kPicCascadeIrq);
  update_irq(out);
  return static_cast<uint8_t>(0x80 | ir);
}

PicOutput Pic::pio_write(uint16_t port, uint8_t value) {
  PicOutput out;
  bool was = output_;
  switch (port) {
    case kPicMasterCmd:
      write_command(0, value, out);
      break;
    case kPicMasterData:
      write_data(0, value, out);
      break;
    case kPicSlaveCmd:
      write_command(1, value, out);
      break;
    case kPicSlaveData:
      write_data(1, value, out);
      break;
    case kPicElcrMaster:
      chips_[0].elcr = value & chips_[0].elcr_mask;
      break;
    case kPicElcrSlave:
      chips_[1].elcr = value & chips_[1].elcr_mask;
      break;
    default:
      break;
  }
  out.output_changed = output_ != was;
  return out;
}

PicOutput Pic::pio_read(uint16_t port, uint8_t* value) {
  PicOutput out;
  bool was = output_;
  uint8_t result = 0xFF;
  unsigned chip = (port == kPicSlaveCmd || port == kPicSlaveData) ? 1 : 0;
  switch (port) {
    case kPicMasterCmd:
    case kPicMasterData:
    case kPicSlaveCmd:
    case kPicSlaveData: {
      Chip& c = chips_[chip];
      if (c.poll) {
        c.poll = false;
        result = poll_read(chip, out);
      } else if (port == kPicMasterCmd || port == kPicSlaveCmd) {
        result = c.read_reg_select ? c.isr : c.irr;
      } else {
        result = c.imr;
      }
      break;
    }
    case kPicElcrMaster:
      result = chips_[0].elcr;
      break;
    case kPicElcrSlave:
      result = chips_[1].elcr;
      break;
    default:
      break;
  }
  if (value) *value = result;
  out.output_changed = output_ != was;
  return out;
}

}  // namespace apicv
