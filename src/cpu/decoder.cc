// Decoding: Zydis (a maintained x86 decoder) turns bytes into a decoded instruction once; this
// file maps it to apicv's compact Insn (handler + pre-resolved operands) and groups instructions
// into blocks. Mnemonics without a handler decode to #UD, so the guest, never the VMM, sees them.
// Not supported (decode to #UD): x87, MMX, SSE/AVX and every other vector extension, XSAVE,
// VMX/SVM instructions, TSX, MPX, RDRAND/RDSEED, CET shadow-stack instructions (ENDBR is a NOP).
#include "cpu/decoder.h"

#include <Zydis/Zydis.h>

#include <algorithm>

#include "cpu/core.h"
#include "cpu/handlers.h"

namespace apicv::cpu {

namespace {

struct Decoders {
  ZydisDecoder d[6];
  Decoders() {
    ZydisDecoderInit(&d[0], ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16);
    ZydisDecoderInit(&d[1], ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16);
    ZydisDecoderInit(&d[2], ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
    ZydisDecoderInit(&d[3], ZYDIS_MACHINE_MODE_LONG_COMPAT_16, ZYDIS_STACK_WIDTH_16);
    ZydisDecoderInit(&d[4], ZYDIS_MACHINE_MODE_LONG_COMPAT_32, ZYDIS_STACK_WIDTH_32);
    ZydisDecoderInit(&d[5], ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  }
};

const ZydisDecoder& decoder_for(DecodeMode m) {
  static const Decoders decoders;
  return decoders.d[static_cast<unsigned>(m)];
}

uint8_t gpr(ZydisRegister r) {
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_BL)
    return static_cast<uint8_t>(r - ZYDIS_REGISTER_AL);
  if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH)
    return static_cast<uint8_t>(16 + r - ZYDIS_REGISTER_AH);
  if (r >= ZYDIS_REGISTER_SPL && r <= ZYDIS_REGISTER_R15B)
    return static_cast<uint8_t>(4 + r - ZYDIS_REGISTER_SPL);
  if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W)
    return static_cast<uint8_t>(r - ZYDIS_REGISTER_AX);
  if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D)
    return static_cast<uint8_t>(r - ZYDIS_REGISTER_EAX);
  if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15)
    return static_cast<uint8_t>(r - ZYDIS_REGISTER_RAX);
  if (r == ZYDIS_REGISTER_RIP || r == ZYDIS_REGISTER_EIP || r == ZYDIS_REGISTER_IP) return kRipReg;
  return kNoReg;
}

uint8_t sreg(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES:
      return kEs;
    case ZYDIS_REGISTER_CS:
      return kCs;
    case ZYDIS_REGISTER_SS:
      return kSs;
    case ZYDIS_REGISTER_DS:
      return kDs;
    case ZYDIS_REGISTER_FS:
      return kFs;
    case ZYDIS_REGISTER_GS:
      return kGs;
    default:
      return kSegNone;
  }
}

bool is_mem(const ZydisDecodedOperand& o) {
  return o.type == ZYDIS_OPERAND_TYPE_MEMORY;
}
bool is_imm(const ZydisDecodedOperand& o) {
  return o.type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
}

void set_mem(Insn& in, const ZydisDecodedOperand& o) {
  in.flags |= kInsnMem;
  in.base = o.mem.base == ZYDIS_REGISTER_NONE ? kNoReg : gpr(o.mem.base);
  in.index = o.mem.index == ZYDIS_REGISTER_NONE ? kNoReg : gpr(o.mem.index);
  in.scale = static_cast<uint8_t>(o.mem.scale == 8   ? 3
                                  : o.mem.scale == 4 ? 2
                                  : o.mem.scale == 2 ? 1
                                                     : 0);
  in.disp = o.mem.disp.has_displacement ? o.mem.disp.value : 0;
  const uint8_t s = sreg(o.mem.segment);
  in.seg = s == kSegNone ? static_cast<uint8_t>(kDs) : s;
}

// Puts a register-or-memory operand in the r/m slot.
void set_rm(Insn& in, const ZydisDecodedOperand& o) {
  if (is_mem(o)) {
    set_mem(in, o);
  } else {
    in.rm = gpr(o.reg.value);
  }
}

uint8_t cc_of(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_JO:
    case ZYDIS_MNEMONIC_SETO:
    case ZYDIS_MNEMONIC_CMOVO:
      return 0;
    case ZYDIS_MNEMONIC_JNO:
    case ZYDIS_MNEMONIC_SETNO:
    case ZYDIS_MNEMONIC_CMOVNO:
      return 1;
    case ZYDIS_MNEMONIC_JB:
    case ZYDIS_MNEMONIC_SETB:
    case ZYDIS_MNEMONIC_CMOVB:
      return 2;
    case ZYDIS_MNEMONIC_JNB:
    case ZYDIS_MNEMONIC_SETNB:
    case ZYDIS_MNEMONIC_CMOVNB:
      return 3;
    case ZYDIS_MNEMONIC_JZ:
    case ZYDIS_MNEMONIC_SETZ:
    case ZYDIS_MNEMONIC_CMOVZ:
      return 4;
    case ZYDIS_MNEMONIC_JNZ:
    case ZYDIS_MNEMONIC_SETNZ:
    case ZYDIS_MNEMONIC_CMOVNZ:
      return 5;
    case ZYDIS_MNEMONIC_JBE:
    case ZYDIS_MNEMONIC_SETBE:
    case ZYDIS_MNEMONIC_CMOVBE:
      return 6;
    case ZYDIS_MNEMONIC_JNBE:
    case ZYDIS_MNEMONIC_SETNBE:
    case ZYDIS_MNEMONIC_CMOVNBE:
      return 7;
    case ZYDIS_MNEMONIC_JS:
    case ZYDIS_MNEMONIC_SETS:
    case ZYDIS_MNEMONIC_CMOVS:
      return 8;
    case ZYDIS_MNEMONIC_JNS:
    case ZYDIS_MNEMONIC_SETNS:
    case ZYDIS_MNEMONIC_CMOVNS:
      return 9;
    case ZYDIS_MNEMONIC_JP:
    case ZYDIS_MNEMONIC_SETP:
    case ZYDIS_MNEMONIC_CMOVP:
      return 10;
    case ZYDIS_MNEMONIC_JNP:
    case ZYDIS_MNEMONIC_SETNP:
    case ZYDIS_MNEMONIC_CMOVNP:
      return 11;
    case ZYDIS_MNEMONIC_JL:
    case ZYDIS_MNEMONIC_SETL:
    case ZYDIS_MNEMONIC_CMOVL:
      return 12;
    case ZYDIS_MNEMONIC_JNL:
    case ZYDIS_MNEMONIC_SETNL:
    case ZYDIS_MNEMONIC_CMOVNL:
      return 13;
    case ZYDIS_MNEMONIC_JLE:
    case ZYDIS_MNEMONIC_SETLE:
    case ZYDIS_MNEMONIC_CMOVLE:
      return 14;
    case ZYDIS_MNEMONIC_JNLE:
    case ZYDIS_MNEMONIC_SETNLE:
    case ZYDIS_MNEMONIC_CMOVNLE:
      return 15;
    default:
      return 0xFF;
  }
}

// Fills `in` for one decoded instruction; returns true when the block must end after it.
bool build(const Core& c, const ZydisDecodedInstruction& z, const ZydisDecodedOperand* o,
           Insn& in) {
  const unsigned nv = z.operand_count_visible;
  in.len = z.length;
  in.asz = static_cast<uint8_t>(z.address_width / 8);
  in.osz = static_cast<uint8_t>(z.operand_width / 8);
  if (nv > 0 && (o[0].size == 8 || o[0].size == 16 || o[0].size == 32 || o[0].size == 64)) {
    in.osz = static_cast<uint8_t>(o[0].size / 8);
  }
  if (z.attributes & ZYDIS_ATTRIB_HAS_LOCK) in.flags |= kInsnLock;
  if (z.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) in.flags |= kInsnRep;
  if (z.attributes & ZYDIS_ATTRIB_HAS_REPNE) in.flags |= kInsnRepne;
  const ZydisMnemonic m = z.mnemonic;
  const bool lock_ok_mem = nv > 0 && is_mem(o[0]);
  auto binary = [&](AluOp op) {
    if (nv < 2) return false;
    if (is_imm(o[1])) {
      set_rm(in, o[0]);
      in.imm = o[1].imm.value.u;
      in.fn = alu_handler(op, Form::kRmImm);
    } else if (is_mem(o[1])) {
      in.reg = gpr(o[0].reg.value);
      set_mem(in, o[1]);
      in.fn = alu_handler(op, Form::kRegRm);
    } else {
      set_rm(in, o[0]);
      in.reg = gpr(o[1].reg.value);
      in.fn = alu_handler(op, Form::kRmReg);
    }
    return true;
  };
  auto unary = [&](Handler h) {
    set_rm(in, o[0]);
    in.fn = h;
  };
  // LOCK is valid only on these read-modify-write forms with a memory destination (SDM vol. 2
  // "LOCK"); anything else with LOCK is #UD.
  bool lockable = false;
  bool ends = false;
  const uint8_t cc = cc_of(m);
  switch (m) {
    case ZYDIS_MNEMONIC_ADD:
      lockable = binary(AluOp::kAdd);
      break;
    case ZYDIS_MNEMONIC_OR:
      lockable = binary(AluOp::kOr);
      break;
    case ZYDIS_MNEMONIC_ADC:
      lockable = binary(AluOp::kAdc);
      break;
    case ZYDIS_MNEMONIC_SBB:
      lockable = binary(AluOp::kSbb);
      break;
    case ZYDIS_MNEMONIC_AND:
      lockable = binary(AluOp::kAnd);
      break;
    case ZYDIS_MNEMONIC_SUB:
      lockable = binary(AluOp::kSub);
      break;
    case ZYDIS_MNEMONIC_XOR:
      lockable = binary(AluOp::kXor);
      break;
    case ZYDIS_MNEMONIC_CMP:
      binary(AluOp::kCmp);
      break;
    case ZYDIS_MNEMONIC_TEST:
      binary(AluOp::kTest);
      break;
    case ZYDIS_MNEMONIC_INC:
      unary(h_inc);
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_DEC:
      unary(h_dec);
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_NEG:
      unary(h_neg);
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_NOT:
      unary(h_not);
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_MOV: {
      const auto c0 = ZydisRegisterGetClass(o[0].reg.value);
      const auto c1 = ZydisRegisterGetClass(o[1].reg.value);
      if (o[0].type == ZYDIS_OPERAND_TYPE_REGISTER && c0 == ZYDIS_REGCLASS_CONTROL) {
        in.op = static_cast<uint8_t>(ZydisRegisterGetId(o[0].reg.value));
        in.rm = gpr(o[1].reg.value);
        in.osz = c.long64 ? 8 : 4;
        in.fn = h_mov_to_cr;
        ends = true;
      } else if (o[1].type == ZYDIS_OPERAND_TYPE_REGISTER && c1 == ZYDIS_REGCLASS_CONTROL) {
        in.op = static_cast<uint8_t>(ZydisRegisterGetId(o[1].reg.value));
        in.rm = gpr(o[0].reg.value);
        in.osz = c.long64 ? 8 : 4;
        in.fn = h_mov_from_cr;
        ends = true;
      } else if (o[0].type == ZYDIS_OPERAND_TYPE_REGISTER && c0 == ZYDIS_REGCLASS_DEBUG) {
        in.op = static_cast<uint8_t>(ZydisRegisterGetId(o[0].reg.value));
        in.rm = gpr(o[1].reg.value);
        in.osz = c.long64 ? 8 : 4;
        in.fn = h_mov_to_dr;
        ends = true;
      } else if (o[1].type == ZYDIS_OPERAND_TYPE_REGISTER && c1 == ZYDIS_REGCLASS_DEBUG) {
        in.op = static_cast<uint8_t>(ZydisRegisterGetId(o[1].reg.value));
        in.rm = gpr(o[0].reg.value);
        in.osz = c.long64 ? 8 : 4;
        in.fn = h_mov_from_dr;
      } else if (o[0].type == ZYDIS_OPERAND_TYPE_REGISTER && c0 == ZYDIS_REGCLASS_SEGMENT) {
        in.op = sreg(o[0].reg.value);
        set_rm(in, o[1]);
        in.osz = 2;
        in.fn = h_mov_to_sreg;
        ends = true;
      } else if (o[1].type == ZYDIS_OPERAND_TYPE_REGISTER && c1 == ZYDIS_REGCLASS_SEGMENT) {
        in.op = sreg(o[1].reg.value);
        set_rm(in, o[0]);
        in.fn = h_mov_from_sreg;
      } else if (is_imm(o[1])) {
        set_rm(in, o[0]);
        in.imm = o[1].imm.value.u;
        in.fn = is_mem(o[0]) ? h_mov_rm_imm : h_mov_reg_imm;
      } else if (is_mem(o[1])) {
        in.reg = gpr(o[0].reg.value);
        set_mem(in, o[1]);
        in.fn = h_mov_reg_rm;
      } else {
        set_rm(in, o[0]);
        in.reg = gpr(o[1].reg.value);
        in.fn = is_mem(o[0]) ? h_mov_rm_reg : h_mov_reg_reg;
      }
      break;
    }
    case ZYDIS_MNEMONIC_MOVZX:
    case ZYDIS_MNEMONIC_MOVSX:
    case ZYDIS_MNEMONIC_MOVSXD:
      in.reg = gpr(o[0].reg.value);
      set_rm(in, o[1]);
      in.src_size = static_cast<uint8_t>(o[1].size / 8);
      in.fn = m == ZYDIS_MNEMONIC_MOVZX ? h_movzx : h_movsx;
      break;
    case ZYDIS_MNEMONIC_LEA:
      in.reg = gpr(o[0].reg.value);
      set_mem(in, o[1]);
      in.fn = h_lea;
      break;
    case ZYDIS_MNEMONIC_XCHG:
      if (is_mem(o[1])) {
        set_mem(in, o[1]);
        in.reg = gpr(o[0].reg.value);
      } else {
        set_rm(in, o[0]);
        in.reg = gpr(o[1].reg.value);
      }
      in.fn = h_xchg;
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_XADD:
    case ZYDIS_MNEMONIC_CMPXCHG:
      set_rm(in, o[0]);
      in.reg = gpr(o[1].reg.value);
      in.fn = m == ZYDIS_MNEMONIC_XADD ? h_xadd : h_cmpxchg;
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_CMPXCHG8B:
    case ZYDIS_MNEMONIC_CMPXCHG16B:
      set_mem(in, o[0]);
      in.osz = m == ZYDIS_MNEMONIC_CMPXCHG8B ? 8 : 16;
      in.fn = h_cmpxchg8b;
      lockable = true;
      break;
    case ZYDIS_MNEMONIC_BSWAP:
      unary(h_bswap);
      break;
    case ZYDIS_MNEMONIC_MUL:
      unary(h_mul);
      break;
    case ZYDIS_MNEMONIC_DIV:
      unary(h_div);
      break;
    case ZYDIS_MNEMONIC_IDIV:
      unary(h_idiv);
      break;
    case ZYDIS_MNEMONIC_IMUL:
      if (nv == 1) {
        unary(h_imul1);
      } else {
        in.reg = gpr(o[0].reg.value);
        set_rm(in, o[1]);
        if (nv == 3) {
          in.imm = o[2].imm.value.u;
          in.fn = h_imul3;
        } else {
          in.fn = h_imul2;
        }
      }
      break;
    case ZYDIS_MNEMONIC_CBW:
    case ZYDIS_MNEMONIC_CWDE:
    case ZYDIS_MNEMONIC_CDQE:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_cbw;
      break;
    case ZYDIS_MNEMONIC_CWD:
    case ZYDIS_MNEMONIC_CDQ:
    case ZYDIS_MNEMONIC_CQO:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_cwd;
      break;
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR:
    case ZYDIS_MNEMONIC_RCL:
    case ZYDIS_MNEMONIC_RCR:
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR: {
      ShiftOp op = m == ZYDIS_MNEMONIC_ROL   ? ShiftOp::kRol
                   : m == ZYDIS_MNEMONIC_ROR ? ShiftOp::kRor
                   : m == ZYDIS_MNEMONIC_RCL ? ShiftOp::kRcl
                   : m == ZYDIS_MNEMONIC_RCR ? ShiftOp::kRcr
                   : m == ZYDIS_MNEMONIC_SHL ? ShiftOp::kShl
                   : m == ZYDIS_MNEMONIC_SHR ? ShiftOp::kShr
                                             : ShiftOp::kSar;
      set_rm(in, o[0]);
      ShiftCount cnt = ShiftCount::kOne;
      if (nv >= 2 && is_imm(o[1])) {
        cnt = ShiftCount::kImm;
        in.imm = o[1].imm.value.u;
      } else if (nv >= 2 && o[1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        cnt = ShiftCount::kCl;
      } else {
        cnt = ShiftCount::kImm;
        in.imm = 1;
      }
      in.fn = shift_handler(op, cnt);
      break;
    }
    case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD:
      set_rm(in, o[0]);
      in.reg = gpr(o[1].reg.value);
      if (is_imm(o[2])) {
        in.imm = o[2].imm.value.u;
      } else {
        in.op = 1;
      }
      in.fn = m == ZYDIS_MNEMONIC_SHLD ? h_shld : h_shrd;
      break;
    case ZYDIS_MNEMONIC_BT:
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC: {
      const BitOp op = m == ZYDIS_MNEMONIC_BT    ? BitOp::kBt
                       : m == ZYDIS_MNEMONIC_BTS ? BitOp::kBts
                       : m == ZYDIS_MNEMONIC_BTR ? BitOp::kBtr
                                                 : BitOp::kBtc;
      set_rm(in, o[0]);
      if (is_imm(o[1])) {
        in.imm = o[1].imm.value.u;
        in.fn = bit_handler(op, true);
      } else {
        in.reg = gpr(o[1].reg.value);
        in.fn = bit_handler(op, false);
      }
      lockable = op != BitOp::kBt;
      break;
    }
    case ZYDIS_MNEMONIC_BSF:
    case ZYDIS_MNEMONIC_BSR:
    case ZYDIS_MNEMONIC_TZCNT:
    case ZYDIS_MNEMONIC_LZCNT:
    case ZYDIS_MNEMONIC_POPCNT:
      in.reg = gpr(o[0].reg.value);
      set_rm(in, o[1]);
      in.fn = m == ZYDIS_MNEMONIC_BSF      ? h_bsf
              : m == ZYDIS_MNEMONIC_BSR    ? h_bsr
              : m == ZYDIS_MNEMONIC_POPCNT ? (c.features.popcnt ? h_popcnt : h_ud)
              : m == ZYDIS_MNEMONIC_TZCNT  ? (c.features.lzcnt_tzcnt ? h_tzcnt : h_bsf)
                                           : (c.features.lzcnt_tzcnt ? h_lzcnt : h_bsr);
      break;
    case ZYDIS_MNEMONIC_JMP:
      if (z.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) {
        if (o[0].type == ZYDIS_OPERAND_TYPE_POINTER) {
          in.imm = o[0].ptr.offset;
          in.imm2 = o[0].ptr.segment;
          in.fn = h_jmp_far;
        } else {
          set_mem(in, o[0]);
          in.osz = static_cast<uint8_t>(z.operand_width / 8);
          in.fn = h_jmp_far_m;
        }
      } else if (is_imm(o[0])) {
        in.imm = o[0].imm.value.u;
        in.osz = static_cast<uint8_t>(z.operand_width / 8);
        in.fn = h_jmp_rel;
      } else {
        unary(h_jmp_rm);
      }
      ends = true;
      break;
    case ZYDIS_MNEMONIC_CALL:
      if (z.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) {
        if (o[0].type == ZYDIS_OPERAND_TYPE_POINTER) {
          in.imm = o[0].ptr.offset;
          in.imm2 = o[0].ptr.segment;
          in.fn = h_call_far;
        } else {
          set_mem(in, o[0]);
          in.osz = static_cast<uint8_t>(z.operand_width / 8);
          in.fn = h_call_far_m;
        }
      } else if (is_imm(o[0])) {
        in.imm = o[0].imm.value.u;
        in.osz = static_cast<uint8_t>(z.operand_width / 8);
        in.fn = h_call_rel;
      } else {
        unary(h_call_rm);
      }
      ends = true;
      break;
    case ZYDIS_MNEMONIC_RET:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.imm = nv > 0 && is_imm(o[0]) ? o[0].imm.value.u & 0xFFFF : 0;
      in.fn = z.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR ? h_retf : h_ret;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_LOOP:
    case ZYDIS_MNEMONIC_LOOPE:
    case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ:
    case ZYDIS_MNEMONIC_JECXZ:
    case ZYDIS_MNEMONIC_JRCXZ:
      in.op = m == ZYDIS_MNEMONIC_LOOP     ? 0
              : m == ZYDIS_MNEMONIC_LOOPE  ? 1
              : m == ZYDIS_MNEMONIC_LOOPNE ? 2
                                           : 3;
      in.imm = o[0].imm.value.u;
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_loop;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_PUSH:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      if (o[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
          ZydisRegisterGetClass(o[0].reg.value) == ZYDIS_REGCLASS_SEGMENT) {
        in.op = sreg(o[0].reg.value);
        in.fn = h_push_sreg;
      } else if (is_imm(o[0])) {
        in.imm = o[0].imm.value.u;
        in.fn = h_push_imm;
      } else {
        set_rm(in, o[0]);
        in.fn = h_push_rm;
      }
      break;
    case ZYDIS_MNEMONIC_POP:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      if (o[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
          ZydisRegisterGetClass(o[0].reg.value) == ZYDIS_REGCLASS_SEGMENT) {
        in.op = sreg(o[0].reg.value);
        in.fn = h_pop_sreg;
        ends = true;
      } else {
        set_rm(in, o[0]);
        in.fn = h_pop_rm;
      }
      break;
    case ZYDIS_MNEMONIC_PUSHF:
    case ZYDIS_MNEMONIC_PUSHFD:
    case ZYDIS_MNEMONIC_PUSHFQ:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_pushf;
      break;
    case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_POPFD:
    case ZYDIS_MNEMONIC_POPFQ:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_popf;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_PUSHA:
    case ZYDIS_MNEMONIC_PUSHAD:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_pusha;
      break;
    case ZYDIS_MNEMONIC_POPA:
    case ZYDIS_MNEMONIC_POPAD:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_popa;
      break;
    case ZYDIS_MNEMONIC_ENTER:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.imm = o[0].imm.value.u & 0xFFFF;
      in.imm2 = o[1].imm.value.u & 0xFF;
      in.fn = h_enter;
      break;
    case ZYDIS_MNEMONIC_LEAVE:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_leave;
      break;
    case ZYDIS_MNEMONIC_INT:
      in.imm = o[0].imm.value.u & 0xFF;
      in.fn = h_int;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_INT3:
      in.fn = h_int3;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_INTO:
      in.fn = h_into;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_INT1:
      in.fn = h_int1;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD:
    case ZYDIS_MNEMONIC_IRETQ:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_iret;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_BOUND:
      in.reg = gpr(o[0].reg.value);
      set_mem(in, o[1]);
      in.fn = h_bound;
      break;
    case ZYDIS_MNEMONIC_MOVSB:
    case ZYDIS_MNEMONIC_MOVSW:
    case ZYDIS_MNEMONIC_MOVSD:
    case ZYDIS_MNEMONIC_MOVSQ:
    case ZYDIS_MNEMONIC_STOSB:
    case ZYDIS_MNEMONIC_STOSW:
    case ZYDIS_MNEMONIC_STOSD:
    case ZYDIS_MNEMONIC_STOSQ:
    case ZYDIS_MNEMONIC_LODSB:
    case ZYDIS_MNEMONIC_LODSW:
    case ZYDIS_MNEMONIC_LODSD:
    case ZYDIS_MNEMONIC_LODSQ:
    case ZYDIS_MNEMONIC_CMPSB:
    case ZYDIS_MNEMONIC_CMPSW:
    case ZYDIS_MNEMONIC_CMPSD:
    case ZYDIS_MNEMONIC_CMPSQ:
    case ZYDIS_MNEMONIC_SCASB:
    case ZYDIS_MNEMONIC_SCASW:
    case ZYDIS_MNEMONIC_SCASD:
    case ZYDIS_MNEMONIC_SCASQ:
    case ZYDIS_MNEMONIC_INSB:
    case ZYDIS_MNEMONIC_INSW:
    case ZYDIS_MNEMONIC_INSD:
    case ZYDIS_MNEMONIC_OUTSB:
    case ZYDIS_MNEMONIC_OUTSW:
    case ZYDIS_MNEMONIC_OUTSD: {
      if (z.meta.category != ZYDIS_CATEGORY_STRINGOP &&
          z.meta.category != ZYDIS_CATEGORY_IOSTRINGOP) {
        in.fn = h_ud;  // SSE MOVSD/CMPSD
        break;
      }
      // Element size and the source segment from the (hidden) operands.
      in.src_size = 0;
      in.seg = kDs;
      for (unsigned k = 0; k < z.operand_count; ++k) {
        if (is_mem(o[k])) {
          in.src_size = std::max<uint8_t>(in.src_size, static_cast<uint8_t>(o[k].size / 8));
          const uint8_t b = gpr(o[k].mem.base);
          if (b == kRsi) in.seg = sreg(o[k].mem.segment);
        }
      }
      const char* name = ZydisMnemonicGetString(m);
      const char last = name[std::char_traits<char>::length(name) - 1];
      in.src_size = last == 'b' ? 1 : last == 'w' ? 2 : last == 'd' ? 4 : 8;
      if (in.seg == kSegNone) in.seg = kDs;
      switch (m) {
        case ZYDIS_MNEMONIC_MOVSB:
        case ZYDIS_MNEMONIC_MOVSW:
        case ZYDIS_MNEMONIC_MOVSD:
        case ZYDIS_MNEMONIC_MOVSQ:
          in.fn = h_movs;
          break;
        case ZYDIS_MNEMONIC_STOSB:
        case ZYDIS_MNEMONIC_STOSW:
        case ZYDIS_MNEMONIC_STOSD:
        case ZYDIS_MNEMONIC_STOSQ:
          in.fn = h_stos;
          break;
        case ZYDIS_MNEMONIC_LODSB:
        case ZYDIS_MNEMONIC_LODSW:
        case ZYDIS_MNEMONIC_LODSD:
        case ZYDIS_MNEMONIC_LODSQ:
          in.fn = h_lods;
          break;
        case ZYDIS_MNEMONIC_CMPSB:
        case ZYDIS_MNEMONIC_CMPSW:
        case ZYDIS_MNEMONIC_CMPSD:
        case ZYDIS_MNEMONIC_CMPSQ:
          in.fn = h_cmps;
          break;
        case ZYDIS_MNEMONIC_SCASB:
        case ZYDIS_MNEMONIC_SCASW:
        case ZYDIS_MNEMONIC_SCASD:
        case ZYDIS_MNEMONIC_SCASQ:
          in.fn = h_scas;
          break;
        case ZYDIS_MNEMONIC_INSB:
        case ZYDIS_MNEMONIC_INSW:
        case ZYDIS_MNEMONIC_INSD:
          in.fn = h_ins;
          break;
        default:
          in.fn = h_outs;
          break;
      }
      // A REP string instruction retires one iteration at a time (docs/cpu.md).
      if (in.flags & (kInsnRep | kInsnRepne)) ends = true;
      if (in.fn == h_ins || in.fn == h_outs) ends = true;
      break;
    }
    case ZYDIS_MNEMONIC_CLC:
      in.fn = h_clc;
      break;
    case ZYDIS_MNEMONIC_STC:
      in.fn = h_stc;
      break;
    case ZYDIS_MNEMONIC_CMC:
      in.fn = h_cmc;
      break;
    case ZYDIS_MNEMONIC_CLD:
      in.fn = h_cld;
      break;
    case ZYDIS_MNEMONIC_STD:
      in.fn = h_std;
      break;
    case ZYDIS_MNEMONIC_LAHF:
      in.fn = h_lahf;
      break;
    case ZYDIS_MNEMONIC_SAHF:
      in.fn = h_sahf;
      break;
    case ZYDIS_MNEMONIC_AAA:
      in.fn = h_aaa;
      break;
    case ZYDIS_MNEMONIC_AAS:
      in.fn = h_aas;
      break;
    case ZYDIS_MNEMONIC_DAA:
      in.fn = h_daa;
      break;
    case ZYDIS_MNEMONIC_DAS:
      in.fn = h_das;
      break;
    case ZYDIS_MNEMONIC_AAM:
      in.imm = o[0].imm.value.u & 0xFF;
      in.fn = h_aam;
      break;
    case ZYDIS_MNEMONIC_AAD:
      in.imm = o[0].imm.value.u & 0xFF;
      in.fn = h_aad;
      break;
    case ZYDIS_MNEMONIC_XLAT:
      for (unsigned k = 0; k < z.operand_count; ++k) {
        if (is_mem(o[k])) set_mem(in, o[k]);
      }
      in.fn = h_xlat;
      break;
    case ZYDIS_MNEMONIC_NOP:
    case ZYDIS_MNEMONIC_PAUSE:
    case ZYDIS_MNEMONIC_ENDBR32:
    case ZYDIS_MNEMONIC_ENDBR64:
    case ZYDIS_MNEMONIC_LFENCE:
    case ZYDIS_MNEMONIC_SFENCE:
    case ZYDIS_MNEMONIC_MFENCE:
    case ZYDIS_MNEMONIC_PREFETCH:
    case ZYDIS_MNEMONIC_PREFETCHW:
    case ZYDIS_MNEMONIC_PREFETCHT0:
    case ZYDIS_MNEMONIC_PREFETCHT1:
    case ZYDIS_MNEMONIC_PREFETCHT2:
    case ZYDIS_MNEMONIC_PREFETCHNTA:
    case ZYDIS_MNEMONIC_CLFLUSH:
      in.fn = h_nop;
      break;
    case ZYDIS_MNEMONIC_SETO:
    case ZYDIS_MNEMONIC_SETNO:
    case ZYDIS_MNEMONIC_SETB:
    case ZYDIS_MNEMONIC_SETNB:
    case ZYDIS_MNEMONIC_SETZ:
    case ZYDIS_MNEMONIC_SETNZ:
    case ZYDIS_MNEMONIC_SETBE:
    case ZYDIS_MNEMONIC_SETNBE:
    case ZYDIS_MNEMONIC_SETS:
    case ZYDIS_MNEMONIC_SETNS:
    case ZYDIS_MNEMONIC_SETP:
    case ZYDIS_MNEMONIC_SETNP:
    case ZYDIS_MNEMONIC_SETL:
    case ZYDIS_MNEMONIC_SETNL:
    case ZYDIS_MNEMONIC_SETLE:
    case ZYDIS_MNEMONIC_SETNLE:
      in.op = cc;
      unary(h_setcc);
      in.osz = 1;
      break;
    case ZYDIS_MNEMONIC_CMOVO:
    case ZYDIS_MNEMONIC_CMOVNO:
    case ZYDIS_MNEMONIC_CMOVB:
    case ZYDIS_MNEMONIC_CMOVNB:
    case ZYDIS_MNEMONIC_CMOVZ:
    case ZYDIS_MNEMONIC_CMOVNZ:
    case ZYDIS_MNEMONIC_CMOVBE:
    case ZYDIS_MNEMONIC_CMOVNBE:
    case ZYDIS_MNEMONIC_CMOVS:
    case ZYDIS_MNEMONIC_CMOVNS:
    case ZYDIS_MNEMONIC_CMOVP:
    case ZYDIS_MNEMONIC_CMOVNP:
    case ZYDIS_MNEMONIC_CMOVL:
    case ZYDIS_MNEMONIC_CMOVNL:
    case ZYDIS_MNEMONIC_CMOVLE:
    case ZYDIS_MNEMONIC_CMOVNLE:
      in.op = cc;
      in.reg = gpr(o[0].reg.value);
      set_rm(in, o[1]);
      in.fn = h_cmovcc;
      break;
    case ZYDIS_MNEMONIC_JO:
    case ZYDIS_MNEMONIC_JNO:
    case ZYDIS_MNEMONIC_JB:
    case ZYDIS_MNEMONIC_JNB:
    case ZYDIS_MNEMONIC_JZ:
    case ZYDIS_MNEMONIC_JNZ:
    case ZYDIS_MNEMONIC_JBE:
    case ZYDIS_MNEMONIC_JNBE:
    case ZYDIS_MNEMONIC_JS:
    case ZYDIS_MNEMONIC_JNS:
    case ZYDIS_MNEMONIC_JP:
    case ZYDIS_MNEMONIC_JNP:
    case ZYDIS_MNEMONIC_JL:
    case ZYDIS_MNEMONIC_JNL:
    case ZYDIS_MNEMONIC_JLE:
    case ZYDIS_MNEMONIC_JNLE:
      in.op = cc;
      in.imm = o[0].imm.value.u;
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_jcc;
      ends = true;
      break;
    // System instructions.
    case ZYDIS_MNEMONIC_HLT:
      in.fn = h_hlt;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_CLI:
      in.fn = h_cli;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_STI:
      in.fn = h_sti;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_IN:
      in.osz = static_cast<uint8_t>(o[0].size / 8);
      if (is_imm(o[1])) {
        in.imm = o[1].imm.value.u & 0xFF;
      } else {
        in.op = 1;
      }
      in.fn = h_in;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_OUT:
      in.osz = static_cast<uint8_t>(o[1].size / 8);
      if (is_imm(o[0])) {
        in.imm = o[0].imm.value.u & 0xFF;
      } else {
        in.op = 1;
      }
      in.fn = h_out;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_CPUID:
      in.fn = h_cpuid;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_RDTSC:
      in.fn = h_rdtsc;
      break;
    case ZYDIS_MNEMONIC_RDTSCP:
      in.fn = c.features.rdtscp ? h_rdtscp : h_ud;
      break;
    case ZYDIS_MNEMONIC_RDMSR:
      in.fn = h_rdmsr;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_WRMSR:
      in.fn = h_wrmsr;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_LGDT:
      set_mem(in, o[0]);
      in.fn = h_lgdt;
      break;
    case ZYDIS_MNEMONIC_LIDT:
      set_mem(in, o[0]);
      in.fn = h_lidt;
      break;
    case ZYDIS_MNEMONIC_SGDT:
      set_mem(in, o[0]);
      in.fn = h_sgdt;
      break;
    case ZYDIS_MNEMONIC_SIDT:
      set_mem(in, o[0]);
      in.fn = h_sidt;
      break;
    case ZYDIS_MNEMONIC_LLDT:
      unary(h_lldt);
      ends = true;
      break;
    case ZYDIS_MNEMONIC_SLDT:
      unary(h_sldt);
      break;
    case ZYDIS_MNEMONIC_LTR:
      unary(h_ltr);
      ends = true;
      break;
    case ZYDIS_MNEMONIC_STR:
      unary(h_str);
      break;
    case ZYDIS_MNEMONIC_LMSW:
      unary(h_lmsw);
      in.osz = 2;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_SMSW:
      unary(h_smsw);
      break;
    case ZYDIS_MNEMONIC_CLTS:
      in.fn = h_clts;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_INVLPG:
      set_mem(in, o[0]);
      in.fn = h_invlpg;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_WBINVD:
    case ZYDIS_MNEMONIC_INVD:
      in.fn = h_wbinvd;
      break;
    case ZYDIS_MNEMONIC_SWAPGS:
      in.fn = h_swapgs;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_SYSCALL:
      in.fn = h_syscall;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_SYSRET:
      in.osz = static_cast<uint8_t>(z.operand_width / 8);
      in.fn = h_sysret;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_MONITOR:
      in.fn = h_monitor;
      break;
    case ZYDIS_MNEMONIC_MWAIT:
      in.fn = h_mwait;
      ends = true;
      break;
    case ZYDIS_MNEMONIC_LAR:
      in.reg = gpr(o[0].reg.value);
      set_rm(in, o[1]);
      in.fn = h_lar;
      break;
    case ZYDIS_MNEMONIC_LSL:
      in.reg = gpr(o[0].reg.value);
      set_rm(in, o[1]);
      in.fn = h_lsl;
      break;
    case ZYDIS_MNEMONIC_VERR:
      unary(h_verr);
      in.op = 0;
      break;
    case ZYDIS_MNEMONIC_VERW:
      unary(h_verr);
      in.op = 1;
      break;
    case ZYDIS_MNEMONIC_LDS:
    case ZYDIS_MNEMONIC_LES:
    case ZYDIS_MNEMONIC_LFS:
    case ZYDIS_MNEMONIC_LGS:
    case ZYDIS_MNEMONIC_LSS:
      in.op = m == ZYDIS_MNEMONIC_LDS   ? kDs
              : m == ZYDIS_MNEMONIC_LES ? kEs
              : m == ZYDIS_MNEMONIC_LFS ? kFs
              : m == ZYDIS_MNEMONIC_LGS ? kGs
                                        : kSs;
      in.reg = gpr(o[0].reg.value);
      set_mem(in, o[1]);
      in.osz = static_cast<uint8_t>(o[0].size / 8);
      in.fn = h_lxs;
      ends = true;
      break;
    default:
      in.fn = h_ud;
      break;
  }
  if (in.fn == nullptr) in.fn = h_ud;
  if ((in.flags & kInsnLock) && !(lockable && lock_ok_mem)) in.fn = h_ud;
  if (in.fn == h_ud) ends = true;
  // An operand that names a register the handlers do not know (e.g. a vector register) is #UD.
  if ((in.reg == kRipReg) || (in.rm == kRipReg)) in.fn = h_ud;
  return ends;
}

}  // namespace

void decode_block(Core& c, uint64_t lin, uint64_t pa, Block& b) {
  b.pa = pa;
  b.mode = c.mode;
  b.pfn0 = pa >> 12;
  b.pfn1 = ~0ull;
  b.insns.clear();
  const bool ram_code = c.ram.contains(pa, 1);
  if (ram_code) {
    // The generation before the mark: a store that clears the mark (GuestRam::code_written) bumps
    // the generation after clearing it, so either this decode sets the mark again or the block
    // is already stale. Read the other way round, a mark cleared between the two could leave a
    // valid block on an unmarked page, which later stores never invalidate.
    b.gen0 = c.ram.generation(b.pfn0);
    c.ram.mark_code_page(b.pfn0);
  }
  const ZydisDecoder& dec = decoder_for(c.mode);
  uint64_t cur_lin = lin, cur_pa = pa;
  const bool user = c.user_access();
  while (b.insns.size() < Block::kMaxInsns) {
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    const unsigned in_page = 0x1000 - static_cast<unsigned>(cur_pa & 0xFFF);
    unsigned avail = std::min<unsigned>(sizeof buf, in_page);
    for (unsigned k = 0; k < avail; ++k) buf[k] = static_cast<uint8_t>(c.read_phys(cur_pa + k, 1));
    uint64_t next_pa = ~0ull;
    bool next_fault = false;
    GuestFault fetch_fault{};
    if (avail < sizeof buf) {
      // The instruction may continue on the next page: fetch it through its own translation.
      try {
        const uint64_t nlin = c.long64 ? cur_lin + avail : ((cur_lin + avail) & 0xFFFFFFFFu);
        const uint64_t nlin_chk = c.linear(kCs, c.s.rip + (cur_lin - lin) + avail, 1, false);
        (void)nlin;
        next_pa = c.translate(nlin_chk, kFetch, user);
        for (unsigned k = avail; k < sizeof buf; ++k) {
          buf[k] = static_cast<uint8_t>(c.read_phys(next_pa + (k - avail), 1));
        }
      } catch (const GuestFault& f) {
        next_fault = true;
        fetch_fault = f;
      }
    }
    const unsigned len_avail = next_fault ? avail : static_cast<unsigned>(sizeof buf);
    ZydisDecodedInstruction z;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    const ZyanStatus st = ZydisDecoderDecodeFull(&dec, buf, len_avail, &z, ops);
    if (!ZYAN_SUCCESS(st)) {
      if (next_fault && st == ZYDIS_STATUS_NO_MORE_DATA) {
        if (b.insns.empty()) throw fetch_fault;  // the instruction's own bytes cannot be fetched
        break;
      }
      if (b.insns.empty()) {
        Insn ud;
        ud.fn = h_ud;
        ud.len = 1;
        b.insns.push_back(ud);
      }
      break;
    }
    Insn in;
    const bool ends = build(c, z, ops, in);
    const bool crosses = z.length > avail;
    if (crosses) {
      if (!b.insns.empty()) break;  // start a fresh block at the crossing instruction
      if (c.ram.contains(next_pa, 1)) {
        b.pfn1 = next_pa >> 12;
        b.gen1 = c.ram.generation(b.pfn1);  // before the mark, as for the first page
        c.ram.mark_code_page(b.pfn1);
        // The tail bytes were read before the page was marked: a store by another CPU in
        // between bumped no generation. Read them again; if they moved, this block runs once as
        // decoded (either order of the race is valid) and is decoded again next time.
        for (unsigned k = avail; k < z.length; ++k) {
          if (static_cast<uint8_t>(c.read_phys(next_pa + (k - avail), 1)) != buf[k]) {
            --b.gen1;
            break;
          }
        }
      }
    }
    b.insns.push_back(in);
    if (ends || crosses || z.length == avail) break;
    cur_lin += z.length;
    cur_pa += z.length;
  }
}

}  // namespace apicv::cpu
