// A 16550A UART, transmit side only (NS16550A datasheet, register map at base+0..7). Output bytes
// go to a sink; the line status register always reports the transmitter empty (THRE|TEMT) so
// polled-output guests never spin. Not supported: receive (DR stays 0), interrupts (IIR always
// "none pending"; IER bits are stored but never raise a line), FIFO trigger levels, modem lines
// (MSR reads 0 except loopback echo of MCR), baud-rate timing.
#pragma once

#include <cstdint>
#include <functional>

namespace apicv::platform {

class Uart16550 {
 public:
  static constexpr uint16_t kBase = 0x3F8;
  static constexpr uint16_t kCount = 8;
  // LSR bits (datasheet table "Line Status Register").
  static constexpr uint8_t kLsrThre = 0x20;
  static constexpr uint8_t kLsrTemt = 0x40;

  explicit Uart16550(std::function<void(uint8_t)> sink) : sink_(std::move(sink)) {}

  bool Claims(uint16_t port) const { return port >= kBase && port < kBase + kCount; }
  uint8_t Read(uint16_t port);
  void Write(uint16_t port, uint8_t value);
  void Reset();

 private:
  std::function<void(uint8_t)> sink_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, fcr_ = 0;
  uint8_t dll_ = 0x0C, dlm_ = 0;  // 9600 baud divisor after reset
};

}  // namespace apicv::platform
