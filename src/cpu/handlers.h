// Internal: the instruction handlers the decoder (decoder.cc) binds to decoded instructions.
// Operand conventions (filled by the decoder, see insn.h):
//  - binary ops with a Form: kRmReg dst = r/m, src = reg; kRegRm dst = reg, src = r/m;
//    kRmImm dst = r/m, src = imm. osz = operand size.
//  - unary ops: the operand is r/m.
//  - Jcc/SETcc/CMOVcc: op = condition code. Relative branches: imm = displacement.
//  - far pointers: imm = offset, imm2 = selector; m16:xx far operands are memory, osz = offset size.
//  - IN/OUT: op = 0 port in imm, op = 1 port in DX; osz = 1/2/4.
//  - MOV CR/DR: op = register number, rm = GPR. Segment-register forms: op = SegIndex.
//  - string ops: src_size = element size, seg = source segment (destination is always ES).
#pragma once

#include "cpu/insn.h"

namespace apicv::cpu {

enum class Form : uint8_t { kRmReg, kRegRm, kRmImm };
enum class AluOp : uint8_t { kAdd, kOr, kAdc, kSbb, kAnd, kSub, kXor, kCmp, kTest };
enum class ShiftOp : uint8_t { kRol, kRor, kRcl, kRcr, kShl, kShr, kSal, kSar };
enum class ShiftCount : uint8_t { kOne, kCl, kImm };
enum class BitOp : uint8_t { kBt, kBts, kBtr, kBtc };

// exec_alu.cc
Handler alu_handler(AluOp op, Form form);
Handler shift_handler(ShiftOp op, ShiftCount count);
Handler bit_handler(BitOp op, bool imm_source);
void h_inc(Core&, const Insn&);
void h_dec(Core&, const Insn&);
void h_neg(Core&, const Insn&);
void h_not(Core&, const Insn&);
void h_mov_rm_reg(Core&, const Insn&);  // mov r/m, reg
void h_mov_reg_rm(Core&, const Insn&);  // mov reg, r/m
void h_mov_rm_imm(Core&, const Insn&);  // mov r/m, imm (also mov reg, imm64)
void h_mov_reg_imm(Core&, const Insn&);  // mov reg (in rm), imm: register-only fast path
void h_mov_reg_reg(Core&, const Insn&);  // mov rm-reg, reg: register-only fast path
void h_mov_acc_moffs(Core&, const Insn&);  // mov acc, [moffs]: memory form with disp
void h_movzx(Core&, const Insn&);
void h_movsx(Core&, const Insn&);
void h_lea(Core&, const Insn&);
void h_xchg(Core&, const Insn&);   // xchg r/m, reg (always locked with memory)
void h_xadd(Core&, const Insn&);
void h_cmpxchg(Core&, const Insn&);
void h_cmpxchg8b(Core&, const Insn&);  // osz 8: CMPXCHG8B, 16: CMPXCHG16B
void h_bswap(Core&, const Insn&);
void h_mul(Core&, const Insn&);
void h_imul1(Core&, const Insn&);  // one-operand IMUL
void h_imul2(Core&, const Insn&);  // imul reg, r/m
void h_imul3(Core&, const Insn&);  // imul reg, r/m, imm
void h_div(Core&, const Insn&);
void h_idiv(Core&, const Insn&);
void h_cbw(Core&, const Insn&);    // CBW/CWDE/CDQE by osz
void h_cwd(Core&, const Insn&);    // CWD/CDQ/CQO by osz
void h_shld(Core&, const Insn&);   // op bit0: count from CL; rm dst, reg src, imm count
void h_shrd(Core&, const Insn&);
void h_bsf(Core&, const Insn&);
void h_bsr(Core&, const Insn&);
void h_tzcnt(Core&, const Insn&);
void h_lzcnt(Core&, const Insn&);
void h_popcnt(Core&, const Insn&);
void h_setcc(Core&, const Insn&);
void h_cmovcc(Core&, const Insn&);
void h_clc(Core&, const Insn&);
void h_stc(Core&, const Insn&);
void h_cmc(Core&, const Insn&);
void h_cld(Core&, const Insn&);
void h_std(Core&, const Insn&);
void h_lahf(Core&, const Insn&);
void h_sahf(Core&, const Insn&);
void h_aaa(Core&, const Insn&);
void h_aas(Core&, const Insn&);
void h_daa(Core&, const Insn&);
void h_das(Core&, const Insn&);
void h_aam(Core&, const Insn&);
void h_aad(Core&, const Insn&);
void h_xlat(Core&, const Insn&);
void h_nop(Core&, const Insn&);
void h_ud(Core&, const Insn&);     // #UD

// exec_control.cc
void h_jmp_rel(Core&, const Insn&);
void h_jmp_rm(Core&, const Insn&);
void h_jcc(Core&, const Insn&);
void h_call_rel(Core&, const Insn&);
void h_call_rm(Core&, const Insn&);
void h_ret(Core&, const Insn&);     // imm = bytes to release
void h_loop(Core&, const Insn&);    // op: 0 LOOP, 1 LOOPE, 2 LOOPNE, 3 JCXZ/JECXZ/JRCXZ (by asz)
void h_push_rm(Core&, const Insn&);
void h_push_imm(Core&, const Insn&);
void h_pop_rm(Core&, const Insn&);
void h_push_sreg(Core&, const Insn&);
void h_pop_sreg(Core&, const Insn&);
void h_pushf(Core&, const Insn&);
void h_popf(Core&, const Insn&);
void h_pusha(Core&, const Insn&);
void h_popa(Core&, const Insn&);
void h_enter(Core&, const Insn&);   // imm = size, imm2 = level
void h_leave(Core&, const Insn&);
void h_jmp_far(Core&, const Insn&);     // ptr16:xx
void h_jmp_far_m(Core&, const Insn&);   // m16:xx
void h_call_far(Core&, const Insn&);
void h_call_far_m(Core&, const Insn&);
void h_retf(Core&, const Insn&);        // imm = bytes to release
void h_int(Core&, const Insn&);
void h_int3(Core&, const Insn&);
void h_into(Core&, const Insn&);
void h_int1(Core&, const Insn&);
void h_iret(Core&, const Insn&);
void h_bound(Core&, const Insn&);

// exec_string.cc
void h_movs(Core&, const Insn&);
void h_stos(Core&, const Insn&);
void h_lods(Core&, const Insn&);
void h_cmps(Core&, const Insn&);
void h_scas(Core&, const Insn&);
void h_ins(Core&, const Insn&);
void h_outs(Core&, const Insn&);

// exec_system.cc
void h_hlt(Core&, const Insn&);
void h_cli(Core&, const Insn&);
void h_sti(Core&, const Insn&);
void h_in(Core&, const Insn&);
void h_out(Core&, const Insn&);
void h_cpuid(Core&, const Insn&);
void h_rdtsc(Core&, const Insn&);
void h_rdtscp(Core&, const Insn&);
void h_rdmsr(Core&, const Insn&);
void h_wrmsr(Core&, const Insn&);
void h_mov_to_cr(Core&, const Insn&);
void h_mov_from_cr(Core&, const Insn&);
void h_mov_to_dr(Core&, const Insn&);
void h_mov_from_dr(Core&, const Insn&);
void h_mov_to_sreg(Core&, const Insn&);
void h_mov_from_sreg(Core&, const Insn&);
void h_lxs(Core&, const Insn&);  // LDS/LES/LFS/LGS/LSS: op = sreg, reg = dst, memory m16:xx
void h_lgdt(Core&, const Insn&);
void h_lidt(Core&, const Insn&);
void h_sgdt(Core&, const Insn&);
void h_sidt(Core&, const Insn&);
void h_lldt(Core&, const Insn&);
void h_sldt(Core&, const Insn&);
void h_ltr(Core&, const Insn&);
void h_str(Core&, const Insn&);
void h_lmsw(Core&, const Insn&);
void h_smsw(Core&, const Insn&);
void h_clts(Core&, const Insn&);
void h_invlpg(Core&, const Insn&);
void h_wbinvd(Core&, const Insn&);  // WBINVD / INVD: no caches to write back
void h_swapgs(Core&, const Insn&);
void h_syscall(Core&, const Insn&);
void h_sysret(Core&, const Insn&);
void h_monitor(Core&, const Insn&);
void h_mwait(Core&, const Insn&);
void h_lar(Core&, const Insn&);
void h_lsl(Core&, const Insn&);
void h_verr(Core&, const Insn&);  // op 0 VERR, 1 VERW

}  // namespace apicv::cpu
