// 16550A transmit-only model; see uart_16550.h.
#include "platform/uart_16550.h"

namespace apicv::platform {

namespace {
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoop = 0x10;
}  // namespace

void Uart16550::Reset() {
  ier_ = lcr_ = mcr_ = scr_ = fcr_ = 0;
  dll_ = 0x0C;
  dlm_ = 0;
}

uint8_t Uart16550::Read(uint16_t port) {
  switch (port - kBase) {
    case 0:
      return (lcr_ & kLcrDlab) ? dll_ : 0;  // RBR: nothing is ever received
    case 1:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case 2:
      // IIR: no interrupt pending (bit 0 set); bits 7:6 report FIFOs enabled.
      return static_cast<uint8_t>(0x01 | ((fcr_ & 0x01) ? 0xC0 : 0));
    case 3:
      return lcr_;
    case 4:
      return mcr_;
    case 5:
      return kLsrThre | kLsrTemt;
    case 6:
      // MSR: in loopback, CTS/DSR/RI/DCD mirror RTS/DTR/OUT1/OUT2.
      if (mcr_ & kMcrLoop) {
        return static_cast<uint8_t>(((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return 0;
    case 7:
      return scr_;
    default:
      return 0xFF;
  }
}

void Uart16550::Write(uint16_t port, uint8_t value) {
  switch (port - kBase) {
    case 0:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
      } else if (!(mcr_ & kMcrLoop) && sink_) {
        sink_(value);  // loopback output never reaches the line
      }
      break;
    case 1:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
      } else {
        ier_ = value & 0x0F;  // bits 7:4 are reserved, read as zero
      }
      break;
    case 2:
      fcr_ = value & 0xC9;  // FIFO enable, DMA mode, trigger level; reset bits self-clear
      break;
    case 3:
      lcr_ = value;
      break;
    case 4:
      mcr_ = value & 0x1F;
      break;
    case 7:
      scr_ = value;
      break;
    default:
      break;  // LSR and MSR are read-only
  }
}

}  // namespace apicv::platform
