//! Bit instructions: BT/BTS/BTR/BTC, BSF/BSR, POPCNT, LZCNT/TZCNT and SETcc.
//!
//! Flags the SDM leaves undefined follow this project's reference host (AMD EPYC), measured
//! natively with inline asm run from every combination of initial flags:
//! - BT/BTS/BTR/BTC: only CF changes; OF, SF, ZF, AF, PF keep their old values.
//! - BSF/BSR: CF, OF, SF, AF are cleared; PF is the parity of the result (set when the source
//!   is 0); ZF is set only for a zero source, which leaves the destination (all 64 bits,
//!   even for 16/32-bit operands) unchanged.
//! - LZCNT/TZCNT: CF and ZF as defined; SF, AF, PF are cleared and OF keeps its value.
//! - POPCNT: defined (ZF from the source, the others cleared).
//!
//! BMI1/BMI2/ADX are not in the CPU model, so their lookups fail and they raise #UD. TZCNT
//! without BMI1 and LZCNT without ABM decode as BSF/BSR, as they execute on CPUs without them.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::{Cpu, Loc};
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{ud, Flow, Trap};
use crate::flags::size_mask;
use crate::model::{feat, CpuModel};
use crate::state::rflags::{AF, ARITH, CF, PF, SF, ZF};

const BT: u8 = 0;
const BTS: u8 = 1;
const BTR: u8 = 2;
const BTC: u8 = 3;

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    let reg_dest = i.op_count() > 0 && i.op0_kind() == iced_x86::OpKind::Register;
    Some(match i.mnemonic() {
        // BT never writes, so LOCK is invalid even on memory; the others need memory.
        Bt if i.has_lock_prefix() => lock_ud,
        Bts | Btr | Btc if i.has_lock_prefix() && reg_dest => lock_ud,
        Bt => bit_op::<BT>,
        Bts => bit_op::<BTS>,
        Btr => bit_op::<BTR>,
        Btc => bit_op::<BTC>,
        Bsf => bsf,
        Bsr => bsr,
        Popcnt if model.has_leaf1_ecx(feat::POPCNT) => popcnt,
        Lzcnt if model.has_ext1_ecx(feat::ABM) => lzcnt,
        Lzcnt => bsr,
        Tzcnt if model.has_leaf7_ebx(feat::BMI1) => tzcnt,
        Tzcnt => bsf,
        Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp | Setnp
        | Setl | Setge | Setle | Setg => setcc,
        _ => return None,
    })
}

fn lock_ud(_: &mut Cpu, _: &Insn) -> Flow {
    Err(ud())
}

pub(crate) use crate::flags::{flag_if as flag, parity};

/// Whether a write's outcome is a fault. `Trap::Stop` means the write happened and the
/// machine stops after this instruction, so the instruction must still complete.
#[inline]
pub(crate) fn write_faulted(r: &Flow) -> bool {
    matches!(r, Err(t) if *t != Trap::Stop)
}

#[inline]
fn sign_extend(v: u64, size: u8) -> i64 {
    let shift = 64 - size as u32 * 8;
    ((v << shift) as i64) >> shift
}

/// BT/BTS/BTR/BTC. With a memory operand and a register offset the offset is a signed bit
/// index relative to the operand, so it selects another operand-sized word of memory; an
/// immediate offset (and any offset on a register operand) is taken modulo the width.
#[inline(always)]
fn bit_op<const OP: u8>(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let bits = size as u64 * 8;
    let reg_offset = !matches!(i.ops[1], Operand::Imm);
    let off = if reg_offset { c.read_op(i, 1)? } else { i.imm };
    let loc = match i.ops[0] {
        Operand::Reg { idx, size } => Loc::Reg { idx, size },
        Operand::Mem { .. } => {
            let mut ea = c.ea(i);
            if reg_offset {
                // (offset SAR log2(width)) words of `size` bytes away.
                let words = sign_extend(off, size) >> bits.trailing_zeros();
                ea = ea.wrapping_add((words as u64).wrapping_mul(size as u64)) & size_mask(i.asize);
            }
            // BT only reads; BTS/BTR/BTC write.
            Loc::Mem(c.seg_addr(i.mem.seg as usize, ea, size, OP != BT)?)
        }
        _ => return Err(ud()),
    };
    let m = 1u64 << (off & (bits - 1));
    // BTS/BTR/BTC load with write intent (a fault is reported as a write).
    let v = if OP == BT {
        c.read_loc(loc, size)?
    } else {
        c.read_loc_rmw(loc, size)?
    };
    let r = match OP {
        BT => Ok(()),
        BTS => c.write_loc(loc, size, v | m),
        BTR => c.write_loc(loc, size, v & !m),
        _ => c.write_loc(loc, size, v ^ m),
    };
    if write_faulted(&r) {
        return r;
    }
    c.set_flags_masked(CF, flag(v & m != 0, CF));
    r
}

/// Flags after BSF/BSR (see the module comment for the undefined ones).
#[inline]
fn scan_flags(c: &mut Cpu, src: u64, res: u64) {
    let f = if src == 0 {
        ZF | PF
    } else {
        flag(parity(res), PF)
    };
    c.set_flags_masked(ARITH, f);
}

fn bsf(c: &mut Cpu, i: &Insn) -> Flow {
    let src = c.read_op(i, 1)?;
    if src == 0 {
        scan_flags(c, 0, 0);
        return Ok(());
    }
    let r = src.trailing_zeros() as u64;
    c.write_op(i, 0, r)?;
    scan_flags(c, src, r);
    Ok(())
}

fn bsr(c: &mut Cpu, i: &Insn) -> Flow {
    let src = c.read_op(i, 1)?;
    if src == 0 {
        scan_flags(c, 0, 0);
        return Ok(());
    }
    let r = 63 - src.leading_zeros() as u64;
    c.write_op(i, 0, r)?;
    scan_flags(c, src, r);
    Ok(())
}

/// Flags after LZCNT/TZCNT: CF = source was 0, ZF = result is 0; OF is left alone and
/// SF/AF/PF cleared, as the host does.
#[inline]
fn count_flags(c: &mut Cpu, src: u64, res: u64) {
    let f = flag(src == 0, CF) | flag(res == 0, ZF);
    c.set_flags_masked(CF | ZF | SF | AF | PF, f);
}

fn lzcnt(c: &mut Cpu, i: &Insn) -> Flow {
    let src = c.read_op(i, 1)?;
    let bits = i.osize as u64 * 8;
    let r = if src == 0 {
        bits
    } else {
        src.leading_zeros() as u64 - (64 - bits)
    };
    c.write_op(i, 0, r)?;
    count_flags(c, src, r);
    Ok(())
}

fn tzcnt(c: &mut Cpu, i: &Insn) -> Flow {
    let src = c.read_op(i, 1)?;
    let r = if src == 0 {
        i.osize as u64 * 8
    } else {
        src.trailing_zeros() as u64
    };
    c.write_op(i, 0, r)?;
    count_flags(c, src, r);
    Ok(())
}

fn popcnt(c: &mut Cpu, i: &Insn) -> Flow {
    let src = c.read_op(i, 1)?;
    c.write_op(i, 0, src.count_ones() as u64)?;
    c.set_flags_masked(ARITH, flag(src == 0, ZF));
    Ok(())
}

fn setcc(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.condition(i.cc) as u64;
    c.write_op(i, 0, v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exec::RunExit;
    use crate::state::rflags::{FIXED1, OF};
    use crate::state::RAX;
    use crate::testing::{machine64, DATA};
    use iced_x86::code_asm::*;

    /// `testing::run64` for a machine that may have halted before.
    pub(crate) fn run64(it: &mut crate::exec::Interpreter, code: &[u8]) -> RunExit {
        it.cpu.s.events.halted = false;
        // LazyFlags::of computes sign_bit(size) even when eager, which overflows for the
        // initial size 0 in debug builds (flags.rs, reported); give it a valid size.
        if it.cpu.lf.size == 0 {
            it.cpu.lf.size = 8;
        }
        crate::testing::run64(it, code)
    }

    fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        a.assemble(crate::testing::CODE).unwrap()
    }

    /// Runs `code` with `regs` (rax..r15) and initial arithmetic flags; returns the machine.
    fn run(code: &[u8], regs: &[(usize, u64)], flags: u64) -> crate::exec::Interpreter {
        let mut it = machine64();
        for &(r, v) in regs {
            it.cpu.s.gpr[r] = v;
        }
        it.cpu.set_rflags(FIXED1 | flags);
        assert_eq!(run64(&mut it, code), RunExit::Halted);
        it
    }

    fn arith(it: &crate::exec::Interpreter) -> u64 {
        it.cpu.state().rflags & ARITH
    }

    #[test]
    fn bt_register_forms_keep_other_flags() {
        // (op, value, bit, result, cf)
        let cases: &[(u8, u64, u64, u64, bool)] = &[
            (BT, 0x1234_5678_9abc_def0, 7, 0x1234_5678_9abc_def0, true),
            (BTS, 0x1234_5678_9abc_def0, 0, 0x1234_5678_9abc_def1, false),
            (BTR, 0x1234_5678_9abc_def0, 7, 0x1234_5678_9abc_de70, true),
            (BTC, 0x1234_5678_9abc_def0, 63, 0x9234_5678_9abc_def0, false),
            (
                BTC,
                0x1234_5678_9abc_def0,
                63 + 64,
                0x9234_5678_9abc_def0,
                false,
            ),
            (BTR, u64::MAX, 63, 0x7fff_ffff_ffff_ffff, true),
        ];
        for &(op, v, bit, res, cf) in cases {
            for init in [0, ARITH] {
                let code = asm(|a| match op {
                    BT => a.bt(rax, rbx),
                    BTS => a.bts(rax, rbx),
                    BTR => a.btr(rax, rbx),
                    _ => a.btc(rax, rbx),
                });
                let it = run(&code, &[(0, v), (3, bit)], init);
                assert_eq!(it.cpu.s.gpr[RAX], res, "op {op} v {v:#x} bit {bit}");
                assert_eq!(
                    arith(&it),
                    (init & !CF) | flag(cf, CF),
                    "op {op} bit {bit} init {init:#x}"
                );
            }
        }
    }

    #[test]
    fn bt_32_and_16_bit_registers() {
        // 32-bit: bit 35 mod 32 = 3; BTS zero-extends the destination.
        let it = run(
            &asm(|a| a.bts(eax, ebx)),
            &[(0, 0xffff_ffff_0000_0000), (3, 35)],
            0,
        );
        assert_eq!(it.cpu.s.gpr[RAX], 8);
        assert_eq!(arith(&it), 0);
        // BT r32 does not write, so the upper half survives.
        let it = run(
            &asm(|a| a.bt(eax, ebx)),
            &[(0, 0xffff_ffff_0000_0008), (3, 35)],
            0,
        );
        assert_eq!(it.cpu.s.gpr[RAX], 0xffff_ffff_0000_0008);
        assert_eq!(arith(&it), CF);
        // 16-bit: bit 17 mod 16 = 1; upper bits merge.
        let it = run(
            &asm(|a| a.btc(ax, bx)),
            &[(0, 0xaaaa_aaaa_aaaa_0002), (3, 17)],
            ARITH,
        );
        assert_eq!(it.cpu.s.gpr[RAX], 0xaaaa_aaaa_aaaa_0000);
        assert_eq!(arith(&it), ARITH);
    }

    #[test]
    fn bt_immediate_is_modulo_width_even_on_memory() {
        let mut it = machine64();
        it.cpu.env.mem.write_u64(DATA, 0).unwrap();
        it.cpu.env.mem.write_u64(DATA + 8, 0).unwrap();
        // 0x47 = 71: modulo 64 is bit 7 of the same qword.
        let code = asm(|a| a.bts(qword_ptr(DATA), 0x47));
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        assert_eq!(it.cpu.env.mem.read_u64(DATA).unwrap(), 0x80);
        assert_eq!(it.cpu.env.mem.read_u64(DATA + 8).unwrap(), 0);
        // 16-bit memory with an immediate: 0x13 mod 16 = 3.
        let code = asm(|a| a.btc(word_ptr(DATA), 0x13));
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        assert_eq!(it.cpu.env.mem.read_u64(DATA).unwrap(), 0x88);
        assert_eq!(arith(&it), 0);
    }

    #[test]
    fn bt_register_offset_addresses_memory_beyond_operand() {
        // (size, offset, byte of the bit relative to the operand, bit within that byte)
        let cases: &[(u8, i64, i64, u32)] = &[
            (8, -3, -1, 5),
            (8, 67, 8, 3),
            (8, 64 * 1000 + 1, 8000, 1),
            (4, -1, -1, 7),
            (4, 33, 4, 1),
            (2, -17, -3, 7),
            (2, 0x7fff, 0xfff, 7),
            (4, i32::MIN as i64, -0x1000_0000, 0),
        ];
        for &(size, off, rel, bit) in cases {
            let mut it = machine64();
            let mem = it.cpu.env.mem.clone();
            let code = asm(|a| match size {
                8 => a.bts(qword_ptr(rsi + 0x100), rbx),
                4 => a.bts(dword_ptr(rsi + 0x100), ebx),
                _ => a.bts(word_ptr(rsi + 0x100), bx),
            });
            // RSI chosen so that even the most negative offset stays in RAM.
            let base = if rel < -0x10_0000 {
                DATA + 0x1000_0000
            } else {
                DATA
            };
            let byte = (base + 0x100).wrapping_add(rel as u64);
            it.cpu.s.gpr[6] = base;
            it.cpu.s.gpr[3] = off as u64;
            assert_eq!(
                run64(&mut it, &code),
                RunExit::Halted,
                "size {size} off {off}"
            );
            let mut b = [0u8];
            mem.read(byte, &mut b).unwrap();
            assert_eq!(b[0], 1 << bit, "size {size} off {off}");
            assert_eq!(arith(&it), 0);
            // A second BTS sees the bit set.
            assert_eq!(run64(&mut it, &code), RunExit::Halted);
            assert_eq!(arith(&it), CF);
        }
    }

    #[test]
    fn bt_memory_reads_only_and_btr_writes() {
        let mut it = machine64();
        it.cpu.env.mem.write_u32(DATA, 0x8000_0001).unwrap();
        let code = asm(|a| {
            a.bt(dword_ptr(DATA), 31)?;
            a.setb(cl)?;
            a.btr(dword_ptr(DATA), 0)?;
            a.setb(dl)
        });
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[1] & 0xff, 1);
        assert_eq!(it.cpu.s.gpr[2] & 0xff, 1);
        assert_eq!(it.cpu.env.mem.read_u32(DATA).unwrap(), 0x8000_0000);
    }

    #[test]
    fn lock_forms() {
        // LOCK BTS on memory is fine.
        let mut it = machine64();
        let code = asm(|a| a.lock().bts(dword_ptr(DATA), 1));
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        assert_eq!(it.cpu.env.mem.read_u32(DATA).unwrap(), 2);
        // LOCK BT (F0 0F A3 /r) and LOCK BTS with a register destination raise #UD.
        for bytes in [[0xf0u8, 0x0f, 0xa3, 0x00], [0xf0, 0x0f, 0xab, 0xc0]] {
            let mut it = machine64();
            assert!(
                matches!(run64(&mut it, &bytes), RunExit::Exception(e) if e.vector == crate::exception::UD)
            );
        }
    }

    #[test]
    fn bsf_bsr_results_and_flags() {
        // (value, bsf, bsr)
        let cases: &[(u64, u64, u64)] = &[
            (1, 0, 0),
            (0x80, 7, 7),
            (0x8000, 15, 15),
            (0x300, 8, 9),
            (0x8000_0000_0000_0000, 63, 63),
            (u64::MAX, 0, 63),
        ];
        for &(v, f, r) in cases {
            for init in [0, ARITH] {
                let it = run(&asm(|a| a.bsf(rax, rbx)), &[(0, 0xdead), (3, v)], init);
                assert_eq!(it.cpu.s.gpr[RAX], f);
                assert_eq!(arith(&it), flag(parity(f), PF), "bsf {v:#x}");
                let it = run(&asm(|a| a.bsr(rax, rbx)), &[(0, 0xdead), (3, v)], init);
                assert_eq!(it.cpu.s.gpr[RAX], r);
                assert_eq!(arith(&it), flag(parity(r), PF), "bsr {v:#x}");
            }
        }
    }

    #[test]
    fn bsf_bsr_zero_source_leaves_destination() {
        let d = 0xdead_beef_cafe_babe;
        for init in [0, ARITH] {
            for code in [
                asm(|a| a.bsf(eax, ebx)),
                asm(|a| a.bsr(rax, rbx)),
                asm(|a| a.bsf(ax, bx)),
                asm(|a| a.bsr(eax, ebx)),
            ] {
                // RBX's low 32 bits are 0: 16/32-bit forms see a zero source.
                let it = run(&code, &[(0, d), (3, 0)], init);
                assert_eq!(it.cpu.s.gpr[RAX], d);
                assert_eq!(arith(&it), ZF | PF);
            }
            // A 32-bit source that is zero even though the 64-bit register is not.
            let it = run(
                &asm(|a| a.bsf(eax, ebx)),
                &[(0, d), (3, 0x8000_0000_0000_0000)],
                init,
            );
            assert_eq!(it.cpu.s.gpr[RAX], d);
            assert_eq!(arith(&it), ZF | PF);
        }
        // Non-zero 32-bit source zero-extends; 16-bit merges.
        let it = run(&asm(|a| a.bsr(eax, ebx)), &[(0, d), (3, 0x8000_0000)], 0);
        assert_eq!(it.cpu.s.gpr[RAX], 31);
        let it = run(&asm(|a| a.bsf(ax, bx)), &[(0, d), (3, 0x10)], 0);
        assert_eq!(it.cpu.s.gpr[RAX], 0xdead_beef_cafe_0004);
    }

    #[test]
    fn bsf_memory_source() {
        let mut it = machine64();
        it.cpu
            .env
            .mem
            .write(DATA, &0x0400u16.to_le_bytes())
            .unwrap();
        let code = asm(|a| a.bsf(cx, word_ptr(DATA)));
        assert_eq!(run64(&mut it, &code), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[1] & 0xffff, 10);
    }

    #[test]
    fn lzcnt_tzcnt_popcnt() {
        // (size, src, lzcnt, tzcnt as BSF-with-BMI1-absent is checked separately)
        let cases: &[(u8, u64, u64)] = &[
            (8, 0, 64),
            (8, 1, 63),
            (8, u64::MAX, 0),
            (4, 0, 32),
            (4, 0x8000_0000, 0),
            (4, 0x80, 24),
            (2, 0, 16),
            (2, 0x8000, 0),
            (2, 1, 15),
        ];
        for &(size, src, lz) in cases {
            for init in [0, ARITH] {
                let code = asm(|a| match size {
                    8 => a.lzcnt(rax, rbx),
                    4 => a.lzcnt(eax, ebx),
                    _ => a.lzcnt(ax, bx),
                });
                let it = run(&code, &[(0, 0x5555_5555_5555_5555), (3, src)], init);
                let want = match size {
                    2 => 0x5555_5555_5555_0000 | lz,
                    _ => lz,
                };
                assert_eq!(it.cpu.s.gpr[RAX], want, "lzcnt{size} {src:#x}");
                let f = (init & OF) | flag(src == 0, CF) | flag(lz == 0, ZF);
                assert_eq!(arith(&it), f, "lzcnt{size} {src:#x} init {init:#x}");
            }
        }
        for (src, n) in [(0u64, 0u64), (1, 1), (0xff00, 8), (u64::MAX, 64)] {
            for init in [0, ARITH] {
                let it = run(&asm(|a| a.popcnt(rax, rbx)), &[(3, src)], init);
                assert_eq!(it.cpu.s.gpr[RAX], n);
                assert_eq!(arith(&it), flag(src == 0, ZF));
            }
        }
        // POPCNT r32 of a value whose 1s are all above bit 31.
        let it = run(
            &asm(|a| a.popcnt(eax, ebx)),
            &[(0, u64::MAX), (3, 0xffff_0000_0000_0000)],
            0,
        );
        assert_eq!(it.cpu.s.gpr[RAX], 0);
        assert_eq!(arith(&it), ZF);
    }

    #[test]
    fn tzcnt_without_bmi1_is_bsf() {
        // F3 48 0F BC C3 = tzcnt rax, rbx: BSF semantics on this model (no BMI1).
        let it = run(&[0xf3, 0x48, 0x0f, 0xbc, 0xc3], &[(0, 7), (3, 0)], 0);
        assert_eq!(it.cpu.s.gpr[RAX], 7);
        assert_eq!(arith(&it), ZF | PF);
        let it = run(&[0xf3, 0x48, 0x0f, 0xbc, 0xc3], &[(0, 7), (3, 0x10)], ARITH);
        assert_eq!(it.cpu.s.gpr[RAX], 4);
        assert_eq!(arith(&it), 0);
    }

    #[test]
    fn tzcnt_and_lzcnt_handlers_when_advertised() {
        let mut m = CpuModel::max();
        m.leaf7_ebx |= feat::BMI1;
        let raw = iced_x86::Decoder::new(64, &[0xf3, 0x48, 0x0f, 0xbc, 0xc3], 0).decode();
        assert_eq!(
            lookup(&raw, &m).map(|h| h as *const ()),
            Some(tzcnt as Handler as *const ())
        );
        m.ext1_ecx &= !feat::ABM;
        let raw = iced_x86::Decoder::new(64, &[0xf3, 0x48, 0x0f, 0xbd, 0xc3], 0).decode();
        assert_eq!(
            lookup(&raw, &m).map(|h| h as *const ()),
            Some(bsr as Handler as *const ())
        );
        m.leaf1_ecx &= !feat::POPCNT;
        let raw = iced_x86::Decoder::new(64, &[0xf3, 0x48, 0x0f, 0xb8, 0xc3], 0).decode();
        assert!(lookup(&raw, &m).is_none());
        // BMI1 ANDN and ADX ADCX are not implemented: they must not get a handler.
        let raw = iced_x86::Decoder::new(64, &[0xc4, 0xe2, 0x78, 0xf2, 0xc1], 0).decode();
        assert_eq!(raw.mnemonic(), Mnemonic::Andn);
        assert!(crate::interp::lookup(&raw, &CpuModel::max()).is_none());
    }

    #[test]
    fn tzcnt_handler_semantics() {
        let mut it = machine64();
        let mut m = CpuModel::max();
        m.leaf7_ebx |= feat::BMI1;
        it.cpu.env.model = std::sync::Arc::new(m);
        for (src, n) in [(0u64, 64u64), (1, 0), (0x8000_0000_0000_0000, 63)] {
            it.cpu.s.gpr[3] = src;
            it.cpu.set_rflags(FIXED1 | ARITH);
            assert_eq!(
                run64(&mut it, &[0xf3, 0x48, 0x0f, 0xbc, 0xc3]),
                RunExit::Halted
            );
            assert_eq!(it.cpu.s.gpr[RAX], n);
            assert_eq!(arith(&it), OF | flag(src == 0, CF) | flag(n == 0, ZF));
        }
    }

    #[test]
    fn setcc_all_conditions() {
        // Flags chosen so that each condition pair differs: CF=1, ZF=0, SF=1, OF=0, PF=1.
        let flags = CF | SF | PF;
        let expect = [
            false, true, true, false, false, true, true, false, true, false, true, false, true,
            false, true, false,
        ];
        for (cc, &want) in expect.iter().enumerate() {
            // 0F 90+cc C4 = setcc ah; also setcc bl (0F 90+cc C3).
            let it = run(
                &[0x0f, 0x90 + cc as u8, 0xc4, 0x0f, 0x90 + cc as u8, 0xc3],
                &[(0, u64::MAX), (3, u64::MAX)],
                flags,
            );
            assert_eq!(
                it.cpu.s.gpr[RAX],
                0xffff_ffff_ffff_00ff | (want as u64) << 8,
                "cc {cc}"
            );
            assert_eq!(
                it.cpu.s.gpr[3],
                0xffff_ffff_ffff_ff00 | want as u64,
                "cc {cc}"
            );
            assert_eq!(arith(&it), flags);
        }
        // SETcc to memory; SETG with ZF=0 and SF=OF.
        let mut it = machine64();
        it.cpu.env.mem.write(DATA, &[0x55]).unwrap();
        it.cpu.set_rflags(FIXED1 | SF | OF);
        assert_eq!(
            run64(&mut it, &asm(|a| a.setg(byte_ptr(DATA)))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.env.mem.read_u32(DATA).unwrap() & 0xff, 1);
    }

    #[test]
    fn bts_to_read_only_page_faults_without_changing_flags() {
        let mut it = machine64();
        // Make the 2 MiB page holding DATA read-only (WP is set in CR0).
        let pde = 0x3000 + (DATA >> 21) * 8;
        let mem = it.cpu.env.mem.clone();
        mem.write_u64(pde, DATA | 0x81).unwrap();
        it.cpu.flush_tlb();
        it.cpu.set_rflags(FIXED1 | ZF);
        let r = run64(&mut it, &asm(|a| a.bts(dword_ptr(DATA), 0)));
        assert!(matches!(r, RunExit::Exception(e) if e.vector == crate::exception::PF));
        assert_eq!(arith(&it), ZF);
        assert_eq!(it.cpu.s.rip, crate::testing::CODE);
    }

    #[test]
    fn bit_ops_in_16_and_32_bit_code() {
        use crate::testing::env;
        // 32-bit flat protected mode, paging off.
        let e = env(16 << 20);
        let mut s = crate::state::CpuState::protected_flat();
        s.rip = 0x1000;
        s.gpr[4] = 0x8000;
        let mut it = crate::exec::Interpreter::new(e, s);
        it.stop_on_exception = true;
        // bts [esi], ebx with ebx = -33 → dword at esi-8, bit 31; bsr eax, ebx.
        let mut a = CodeAssembler::new(32).unwrap();
        a.bts(dword_ptr(esi), ebx).unwrap();
        a.bsr(eax, ebx).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(0x1000).unwrap();
        it.cpu.env.mem.write(0x1000, &code).unwrap();
        it.cpu.s.gpr[6] = 0x5000;
        it.cpu.s.gpr[3] = (-33i32) as u32 as u64;
        assert_eq!(it.run(100), RunExit::Halted);
        assert_eq!(it.cpu.env.mem.read_u32(0x5000 - 8).unwrap(), 0x8000_0000);
        assert_eq!(it.cpu.s.gpr[RAX], 31);
        // 16-bit real mode: bt word [si], bx with bx = -1 → word at si-2, bit 15.
        let e = env(16 << 20);
        let mut s = crate::state::CpuState::reset();
        s.seg = [crate::state::Segment::real(0); 6];
        s.rip = 0x7c00;
        s.gpr[4] = 0x7000;
        let mut it = crate::exec::Interpreter::new(e, s);
        it.stop_on_exception = true;
        let mut a = CodeAssembler::new(16).unwrap();
        a.bt(word_ptr(si), bx).unwrap();
        a.setb(al).unwrap();
        a.bsf(cx, bx).unwrap();
        a.hlt().unwrap();
        let code = a.assemble(0x7c00).unwrap();
        it.cpu.env.mem.write(0x7c00, &code).unwrap();
        it.cpu
            .env
            .mem
            .write(0x4ffe, &0x8000u16.to_le_bytes())
            .unwrap();
        it.cpu.s.gpr[6] = 0x5000;
        it.cpu.s.gpr[3] = 0xffff;
        assert_eq!(it.run(100), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[RAX] & 0xff, 1);
        assert_eq!(it.cpu.s.gpr[1] & 0xffff, 0);
    }
}
