// Internal: translation of guest code into decoded blocks (Zydis decodes; apicv's Insn executes).
#pragma once

#include <cstdint>

#include "cpu/insn.h"

namespace apicv::cpu {

struct Core;

// Decodes the block starting at linear `lin` / physical `pa` in the current mode. Raises the
// fetch fault of the first instruction (a later instruction that cannot be fetched ends the block).
void decode_block(Core& c, uint64_t lin, uint64_t pa, Block& b);

}  // namespace apicv::cpu
