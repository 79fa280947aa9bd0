//! Decimal (BCD) adjustment: DAA, DAS, AAA, AAS, AAM, AAD. All are invalid in 64-bit mode
//! (iced already decodes their opcodes as invalid there; the handlers check again).
//!
//! The SDM leaves some flags undefined. What the host (AMD EPYC, Zen 4) does, measured by
//! running the instructions natively in 32-bit code over every AL, with AH in
//! {0, 1, 9, 0x12, 0x7f, 0x80, 0xfe, 0xff}, CF/AF in and out, and several immediates (see
//! `exhaustive_grid_matches_host` below):
//! - DAA/DAS: OF is set when the adjustment flipped AL's sign bit from 0 to 1 (DAA) or from
//!   1 to 0 (DAS), i.e. OF = !old7 & new7 (DAA) or old7 & !new7 (DAS).
//! - AAA/AAS: the adjustment is a 16-bit AX ± 0x106 (so AL's carry/borrow reaches AH), and
//!   SF/ZF/PF/OF are those of that 16-bit add/sub (of AX itself when there is no
//!   adjustment: SF = AX bit 15, ZF = (AX == 0), PF from AL before masking, OF = 0).
//! - AAM: SF/ZF/PF from AL; OF = AF = CF = 0.
//! - AAD: flags of the 8-bit ADD AL, (AH × imm8) & 0xff, i.e. CF/AF/OF too.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Exception, Flow, Trap, DE};
use crate::model::CpuModel;
use crate::state::rflags::{AF, ARITH, CF, OF};
use crate::state::RAX;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Daa => daa,
        Das => das,
        Aaa => aaa,
        Aas => aas,
        Aam => aam,
        Aad => aad,
        _ => return None,
    })
}

use crate::flags::{flag_if as bit, szp};

/// SF/ZF/PF of an 8-bit result.
fn szp8(v: u64) -> u64 {
    szp(1, v)
}

/// SF/ZF/PF of a 16-bit result (PF, as always, from the low byte).
fn szp16(v: u64) -> u64 {
    szp(2, v)
}

fn check_mode(c: &Cpu) -> Flow {
    if c.mode64 {
        Err(ud())
    } else {
        Ok(())
    }
}

fn set_al(c: &mut Cpu, al: u64) {
    c.set_reg(RAX, 1, al);
}

fn daa(c: &mut Cpu, _: &Insn) -> Flow {
    check_mode(c)?;
    let f = c.rflags();
    let old = c.reg(RAX, 1);
    let mut al = old;
    let mut out = 0;
    if al & 0xf > 9 || f & AF != 0 {
        al = (al + 6) & 0xff;
        out |= AF;
    }
    if old > 0x99 || f & CF != 0 {
        al = (al + 0x60) & 0xff;
        out |= CF;
    }
    out |= szp8(al) | bit(old & 0x80 == 0 && al & 0x80 != 0, OF);
    set_al(c, al);
    c.set_flags_masked(ARITH, out);
    Ok(())
}

fn das(c: &mut Cpu, _: &Insn) -> Flow {
    check_mode(c)?;
    let f = c.rflags();
    let old = c.reg(RAX, 1);
    let mut al = old;
    let mut out = 0;
    if al & 0xf > 9 || f & AF != 0 {
        if al < 6 {
            out |= CF;
        }
        al = al.wrapping_sub(6) & 0xff;
        out |= AF;
    }
    if old > 0x99 || f & CF != 0 {
        al = al.wrapping_sub(0x60) & 0xff;
        out |= CF;
    }
    out |= szp8(al) | bit(old & 0x80 != 0 && al & 0x80 == 0, OF);
    set_al(c, al);
    c.set_flags_masked(ARITH, out);
    Ok(())
}

/// AAA (`sub` = false) and AAS (`sub` = true).
fn ascii_adjust(c: &mut Cpu, sub: bool) -> Flow {
    check_mode(c)?;
    let f = c.rflags();
    let ax = c.reg(RAX, 2);
    let (res, out) = if ax & 0xf > 9 || f & AF != 0 {
        let t = if sub {
            ax.wrapping_sub(0x106)
        } else {
            ax + 0x106
        } & 0xffff;
        let of = if sub { ax & !t } else { !ax & t } & 0x8000 != 0;
        (t, AF | CF | szp16(t) | bit(of, OF))
    } else {
        (ax, szp16(ax))
    };
    c.set_reg(RAX, 2, res & 0xff0f);
    c.set_flags_masked(ARITH, out);
    Ok(())
}

fn aaa(c: &mut Cpu, _: &Insn) -> Flow {
    ascii_adjust(c, false)
}

fn aas(c: &mut Cpu, _: &Insn) -> Flow {
    ascii_adjust(c, true)
}

fn aam(c: &mut Cpu, i: &Insn) -> Flow {
    check_mode(c)?;
    let base = i.imm & 0xff;
    if base == 0 {
        return Err(Trap::Exception(Exception::new(DE)));
    }
    let al = c.reg(RAX, 1);
    let (q, r) = (al / base, al % base);
    c.set_reg(RAX, 2, (q << 8) | r);
    c.set_flags_masked(ARITH, szp8(r));
    Ok(())
}

fn aad(c: &mut Cpu, i: &Insn) -> Flow {
    check_mode(c)?;
    let base = i.imm & 0xff;
    let ax = c.reg(RAX, 2);
    let (al, m) = (ax & 0xff, ((ax >> 8) * base) & 0xff);
    let r = (al + m) & 0xff;
    let out = szp8(r)
        | bit(al + m > 0xff, CF)
        | bit((al ^ m ^ r) & 0x10 != 0, AF)
        | bit((al ^ r) & (m ^ r) & 0x80 != 0, OF);
    c.set_reg(RAX, 2, r);
    c.set_flags_masked(ARITH, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::exception::{Exception, DE, UD};
    use crate::interp::arith::rig::{asm_bits, Rig};
    use crate::state::rflags::*;
    use iced_x86::code_asm::*;

    fn rig(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Rig {
        Rig::new32(&asm_bits(32, f))
    }

    /// Runs one instruction in 32-bit code: (AX, flags) in → (AX, arithmetic flags) out.
    fn run(r: &mut Rig, v: u64, fl: u64) -> (u64, u64) {
        let s = r.run([v, 0, 0, 0], fl).expect("runs");
        (s.gpr[0], s.rflags & ARITH)
    }

    const FL_IN: [u64; 8] = [0, CF, AF, CF | AF, 0x8c4, 0x8c5, 0x8d4, 0x8d5];
    const AH: [u64; 8] = [0, 0xff, 0x7f, 0x12, 0x80, 0x09, 0x01, 0xfe];

    /// The input grid of the native 32-bit host program (gcc -m32) the rules were taken
    /// from: per instruction and immediate, every AL × AH in `AH` (first only for DAA/DAS/
    /// AAM) × the flag inputs `FL_IN` (CF, AF, and OF/SF/ZF/PF all clear or all set). Its
    /// output lines `op ax_in flags_in imm ax_out flags_out` hash (FNV-1a over the six
    /// fields as little-endian u64s, op = 0..5 for DAA, DAS, AAA, AAS, AAM, AAD) to
    /// `HOST_HASH` on the AMD EPYC (Zen 4) host. The program, per cell:
    /// `push f; popfl; daa (etc.); pushfl; pop f` with EAX = AX in.
    const HOST_HASH: u64 = 0x13e1_1a8a_006a_67dd;

    #[test]
    fn exhaustive_grid_matches_host() {
        type Emit = fn(&mut CodeAssembler, u32) -> Result<(), IcedError>;
        let cases: [(u64, Emit, &[u32], usize); 6] = [
            (0, |a, _| a.daa(), &[0], 1),
            (1, |a, _| a.das(), &[0], 1),
            (2, |a, _| a.aaa(), &[0], 8),
            (3, |a, _| a.aas(), &[0], 8),
            (4, |a, b| a.aam(b), &[10, 16, 1, 7, 255, 128], 1),
            (5, |a, b| a.aad(b), &[10, 16, 0, 7, 255, 128], 8),
        ];
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut n = 0;
        for (op, emit, bases, ahs) in cases {
            for &b in bases {
                let mut r = rig(|a| emit(a, b));
                for &hi in &AH[..ahs] {
                    for lo in 0..256u64 {
                        for fl in FL_IN {
                            let x = (hi << 8) | lo;
                            let (out, f) = run(&mut r, x, fl);
                            for v in [op, x, fl, b as u64, out & 0xffff, f] {
                                for byte in v.to_le_bytes() {
                                    h = (h ^ byte as u64).wrapping_mul(0x100_0000_01b3);
                                }
                            }
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 147_456);
        assert_eq!(h, HOST_HASH);
    }

    #[test]
    fn daa_das_examples() {
        let mut r = rig(|a| a.daa());
        // 0x19 + 0x28 = 0x41 (binary), AF set: DAA → 0x47.
        assert_eq!(run(&mut r, 0x41, AF), (0x47, AF | PF));
        // 0x99 + 0x01 = 0x9a: DAA → 0x00 with CF (decimal carry).
        assert_eq!(run(&mut r, 0x9a, 0), (0x00, CF | AF | ZF | PF));
        // Upper bits of EAX untouched.
        let s = r.run([0xdead_be7a, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0] & 0xffff_ffff, 0xdead_be80);
        assert_eq!(s.rflags & ARITH, AF | SF | OF);
        let mut r = rig(|a| a.das());
        // 0x47 - 0x28 = 0x1f (binary), AF: DAS → 0x19.
        assert_eq!(run(&mut r, 0x1f, AF), (0x19, AF));
        // 0x00 - 0x01 = 0xff with CF and AF: DAS → 0x99, CF.
        assert_eq!(run(&mut r, 0xff, CF | AF), (0x99, CF | AF | SF | PF));
        // AL < 6 with AF: the -6 borrows, CF set.
        assert_eq!(run(&mut r, 0x03, AF), (0xfd, CF | AF | SF));
    }

    #[test]
    fn aaa_aas_examples() {
        let mut r = rig(|a| a.aaa());
        // '9' + '5' = 0x6e: AAA → AH+1, AL = 4.
        assert_eq!(run(&mut r, 0x006e, 0), (0x0104, CF | AF | PF)); // PF of 0x0174
                                                                    // No adjustment: AL masked, CF/AF cleared, flags of AX.
        assert_eq!(run(&mut r, 0x0035, CF), (0x0005, PF));
        // AL = 0xfa: the +6 carries into AH (16-bit add), AH gets +2 in total.
        assert_eq!(run(&mut r, 0x00fa, 0), (0x0200, CF | AF | PF));
        let mut r = rig(|a| a.aas());
        // '3' - '5' = 0xfe: AAS → AH-1, AL = 8.
        assert_eq!(run(&mut r, 0x01fe, 0), (0x0008, CF | AF));
        assert_eq!(run(&mut r, 0x0006, AF), (0xff00, CF | AF | SF | PF));
    }

    #[test]
    fn aam_aad_examples() {
        let mut r = rig(|a| a.aam(10));
        assert_eq!(run(&mut r, 0xff3f, CF | OF | AF), (0x0603, PF));
        let mut r = rig(|a| a.aam(16));
        assert_eq!(run(&mut r, 0x00f0, 0), (0x0f00, ZF | PF));
        let mut r = rig(|a| a.aad(10));
        assert_eq!(run(&mut r, 0x0603, 0), (0x003f, PF));
        // AH × 10 + AL wraps: flags of the 8-bit add 0x0a + 0xf6.
        assert_eq!(run(&mut r, 0xff0a, 0), (0x0000, CF | AF | ZF | PF));
        let mut r = rig(|a| a.aad(0));
        assert_eq!(run(&mut r, 0x1234, 0), (0x0034, 0));
    }

    #[test]
    fn aam_zero_divides_by_zero() {
        let mut r = rig(|a| a.aam(0));
        assert_eq!(r.run([0x1234, 0, 0, 0], 0), Err(Exception::new(DE)));
        assert_eq!(r.it.cpu.s.gpr[0], 0x1234);
    }

    #[test]
    fn invalid_in_64bit_mode() {
        for op in [0x27u8, 0x2f, 0x37, 0x3f] {
            assert_eq!(
                Rig::new(&[op]).run([0; 4], 0).map(|_| ()),
                Err(Exception::new(UD))
            );
        }
        for op in [[0xd4u8, 0x0a], [0xd5, 0x0a]] {
            assert_eq!(
                Rig::new(&op).run([0; 4], 0).map(|_| ()),
                Err(Exception::new(UD))
            );
        }
    }
}
