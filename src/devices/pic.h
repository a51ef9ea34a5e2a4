// The PC/AT pair of Intel 8259A PICs (master at 0x20, slave at 0xA0 cascaded on master IR2) plus
// the ELCR edge/level registers, as KVM's kvm_pic (arch/x86/kvm/i8259.c) emulates them.
// Intel 8259A datasheet: ICW1-ICW4, OCW1-OCW3, priority rotation, special mask mode, poll
// command, AEOI, special fully nested mode, cascade; spurious IR7 when INTA finds no request.
//
// Supported: everything above, ELCR per IRQ (masks 0xF8/0xDE as in KVM), INTA via acknowledge()
// returning the vector, the INT output (feeds LINT0 in ExtINT mode), ack notifications for
// every ISR bit cleared by EOI/AEOI and mask notifications on IMR changes (KVM's notifiers).
// NOT supported (reported through PicOutput::unsupported, never fatal): ICW1 LTIM (the ELCR
// decides edge/level, as in KVM and on PIIX), 8080/8085 mode (ICW4 uPM=0; vectors are always
// formed 8086-style), buffered mode and ICW3 values (the cascade is hard-wired to IR2).
// The poll command acts like an INTA (sets ISR, honours AEOI) per the datasheet; KVM instead
// clears the ISR bit. A poll with nothing pending reads 0x07 (KVM's value; the datasheet leaves
// bits 6:0 undefined).
// Threading: none inside; the owner serialises calls.
#pragma once

#include <array>
#include <cstdint>

#include "x86/pic_defs.h"

namespace apicv {

// What one call produced. IRQ numbers are 0-15 (slave IRQs are 8-15).
struct PicOutput {
  bool output_changed = false;  // the INT line (output()) changed during this call
  uint16_t acked_irqs = 0;      // bit n: ISR bit of IRQ n cleared by EOI/AEOI/init (ack notifiers)
  uint16_t mask_changed_irqs = 0;  // bit n: IMR bit of IRQ n changed (mask notifiers)
  // set_irq only: the assertion found its IRR bit already set on an unmasked input (an edge, or a
  // level going high) and merged with the pending request. KVM's pic_set_irq1() returns 0 then
  // (-1 for a masked input, 1 otherwise) and kvm_pic_set_irq traces " (coalesced)" for 0.
  bool coalesced = false;
  const char* unsupported = nullptr;  // guest asked for an unsupported feature; log it
};

class Pic {
 public:
  Pic();

  static bool handles_port(uint16_t port);

  // One byte on one of the six ports. Other ports are ignored / read 0xFF.
  PicOutput pio_write(uint16_t port, uint8_t value);
  PicOutput pio_read(uint16_t port, uint8_t* value);

  // Input IRQ line `irq` (0-15) now at `level`. Other numbers are ignored.
  PicOutput set_irq(unsigned irq, bool level);

  // Interrupt acknowledge cycle (INTA): the vector the CPU receives. Updates IRR/ISR, performs
  // AEOI, and returns the master's (or slave's) IR7 vector when nothing is requesting.
  uint8_t acknowledge(PicOutput* out = nullptr);

  // The master's INT pin.
  bool output() const { return output_; }

  // Power-on / system reset: both chips uninitialised, everything zero, ELCR edge.
  void reset();

  // Introspection. chip 0 = master, 1 = slave.
  uint8_t irr(unsigned chip) const { return chips_[chip & 1].irr; }
  uint8_t isr(unsigned chip) const { return chips_[chip & 1].isr; }
  uint8_t imr(unsigned chip) const { return chips_[chip & 1].imr; }
  uint8_t elcr(unsigned chip) const { return chips_[chip & 1].elcr; }
  uint8_t irq_base(unsigned chip) const { return chips_[chip & 1].irq_base; }
  uint8_t lowest_priority(unsigned chip) const { return (chips_[chip & 1].priority_add + 7) & 7; }
  bool special_mask_mode(unsigned chip) const { return chips_[chip & 1].special_mask; }

 private:
  struct Chip {
    uint8_t last_irr = 0;  // input levels seen (edge detector)
    uint8_t irr = 0;
    uint8_t imr = 0;
    uint8_t isr = 0;
    uint8_t priority_add = 0;  // IR with highest priority
    uint8_t irq_base = 0;
    uint8_t read_reg_select = 0;  // OCW3 RIS: 0 IRR, 1 ISR
    bool poll = false;
    bool special_mask = false;
    uint8_t init_state = 0;  // 0 ready, 1 awaiting ICW2, 2 ICW3, 3 ICW4
    bool init4 = false;
    bool single = false;
    bool auto_eoi = false;
    bool rotate_on_auto_eoi = false;
    bool special_fully_nested = false;
    uint8_t icw3 = 0;
    uint8_t elcr = 0;
    uint8_t elcr_mask = 0;
  };

  static unsigned irq_offset(unsigned chip) { return chip ? 8 : 0; }
  // Set IRR from an input level (edge detect unless ELCR says level). Returns true when a rising
  // input (or a level going high) found its IRR bit already set.
  bool set_irq1(unsigned chip, unsigned ir, bool level);
  // Priority 0 (highest) .. 7 of the first set bit of mask under rotation; 8 if none.
  unsigned priority(const Chip& c, uint8_t mask) const;
  // The IR this chip would present to its INT pin, or -1.
  int pending_ir(unsigned chip) const;
  void update_irq(PicOutput& out);
  void clear_isr(unsigned chip, unsigned ir, PicOutput& out);
  void intack(unsigned chip, unsigned ir, PicOutput& out);
  void write_command(unsigned chip, uint8_t value, PicOutput& out);
  void write_data(unsigned chip, uint8_t value, PicOutput& out);
  uint8_t poll_read(unsigned chip, PicOutput& out);
  void init(unsigned chip, uint8_t icw1, PicOutput& out);

  std::array<Chip, 2> chips_;
  bool output_ = false;
};

}  // namespace apicv
