//! Shifts and rotates: SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD.
//!
//! The count (imm8, CL or the implicit 1) is masked to 5 bits, or 6 with 64-bit operands.
//! A masked count of 0 changes no flags and no memory; a 32-bit register destination is
//! still written, i.e. zero-extended (as the host does for `shl eax, cl` with CL = 0).
//!
//! Undefined results and flags follow the host (AMD EPYC, Zen 4), measured with the
//! `host_*` differential tests below, which run each instruction natively on thousands of
//! random values and counts:
//! - SHL/SHR/SAR/SHLD/SHRD (count ≠ 0): AF = 1 always; SF/ZF/PF from the result.
//! - SHL: CF = last bit shifted out (0 once the count exceeds the width, for 8/16 bits),
//!   OF = MSB(result) XOR CF for every count.
//! - SHR: OF = bit (w-1) XOR bit (w-2) of the result, i.e. the sign change of the last
//!   1-bit step: MSB(original) for count 1, 0 for larger counts. SAR: OF = 0.
//! - ROL/ROR/RCL/RCR touch only CF and OF, and do so whenever the masked count is nonzero
//!   (even when the rotate amount mod width, or mod 9/17 for 8/16-bit RCL/RCR, is 0).
//!   ROL/RCL: OF = MSB(result) XOR CF; ROR/RCR: OF = bit (w-1) XOR bit (w-2) of the result;
//!   for every count, not just 1.
//! - SHLD: OF = MSB(result) XOR CF-style rule computed on the destination alone (see
//!   `shld_fn`); SHRD: OF = bit (w-1) XOR bit (w-2) of the result.
//! - 16-bit SHLD/SHRD with counts 17..31 (undefined): the result is that of shifting the
//!   48-bit value dst:src:src (SHLD) or src:src:dst (SHRD), i.e. the source rotated by
//!   count-16; CF = 0; SHLD's OF = 0, SHRD's OF per the rule above. The SDM leaves the
//!   result undefined; other (Intel) processors may produce something else.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{ud, Flow};
use crate::flags::{sign_bit, size_mask};
use crate::interp::arith::{read, write};
use crate::model::CpuModel;
use crate::state::rflags::{AF, CF, OF, PF, SF, ZF};

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Shl | Sal => shl,
        Shr => shr,
        Sar => sar,
        Rol => rol,
        Ror => ror,
        Rcl => rcl,
        Rcr => rcr,
        Shld => shld,
        Shrd => shrd,
        _ => return None,
    })
}

/// A shift by a nonzero masked count: (size, value, count, source for SHLD/SHRD, RFLAGS)
/// → (result, RFLAGS).
type ShiftFn = fn(u8, u64, u32, u64, u64) -> (u64, u64);

use crate::flags::{flag_if as bit, szp};

/// Runs `f` on operand 0 with a count already read by the caller; `src` is SHLD/SHRD's
/// second operand.
#[inline(always)]
fn shift_op<const ALL_FLAGS: bool>(
    c: &mut Cpu,
    i: &Insn,
    count: u64,
    src: u64,
    f: ShiftFn,
) -> Flow {
    // Shifts and rotates are not lockable (iced already decodes LOCK forms as invalid).
    if i.lock {
        return Err(ud());
    }
    let size = i.osize;
    let n = (count & if size == 8 { 63 } else { 31 }) as u32;
    if let Operand::Mem { size } = i.ops[0] {
        let lin = c.mem_write_addr(i, size)?;
        let a = c.read_lin_rmw(lin, size)?;
        if n == 0 {
            return Ok(());
        }
        let (r, fl) = f(size, a, n, src, flags_in::<ALL_FLAGS>(c));
        c.write_lin(lin, size, r)?;
        c.set_rflags(fl);
    } else {
        let a = read(c, i, 0)?;
        if n == 0 {
            // Still a register write: a 32-bit destination is zero-extended.
            return write(c, i, 0, a);
        }
        let (r, fl) = f(size, a, n, src, flags_in::<ALL_FLAGS>(c));
        write(c, i, 0, r)?;
        c.set_rflags(fl);
    }
    Ok(())
}

/// RFLAGS for a shift function. Shifts write all six arithmetic flags, so pending lazy
/// flags need not be computed; rotates keep some and RCL/RCR read CF.
#[inline(always)]
fn flags_in<const ALL_FLAGS: bool>(c: &Cpu) -> u64 {
    if ALL_FLAGS {
        c.s.rflags
    } else {
        c.rflags()
    }
}

#[inline(always)]
fn shift(c: &mut Cpu, i: &Insn, f: ShiftFn) -> Flow {
    let count = read(c, i, 1)?;
    shift_op::<true>(c, i, count, 0, f)
}

#[inline(always)]
fn rotate(c: &mut Cpu, i: &Insn, f: ShiftFn) -> Flow {
    let count = read(c, i, 1)?;
    shift_op::<false>(c, i, count, 0, f)
}

#[inline(always)]
fn double_shift(c: &mut Cpu, i: &Insn, f: ShiftFn) -> Flow {
    let src = read(c, i, 1)?;
    let count = read(c, i, 2)?;
    shift_op::<true>(c, i, count, src, f)
}

const ALL: u64 = CF | PF | AF | ZF | SF | OF;

fn shl(c: &mut Cpu, i: &Insn) -> Flow {
    shift(c, i, shl_fn)
}
fn shr(c: &mut Cpu, i: &Insn) -> Flow {
    shift(c, i, shr_fn)
}
fn sar(c: &mut Cpu, i: &Insn) -> Flow {
    shift(c, i, sar_fn)
}
fn rol(c: &mut Cpu, i: &Insn) -> Flow {
    rotate(c, i, rol_fn)
}
fn ror(c: &mut Cpu, i: &Insn) -> Flow {
    rotate(c, i, ror_fn)
}
fn rcl(c: &mut Cpu, i: &Insn) -> Flow {
    rotate(c, i, rcl_fn)
}
fn rcr(c: &mut Cpu, i: &Insn) -> Flow {
    rotate(c, i, rcr_fn)
}
fn shld(c: &mut Cpu, i: &Insn) -> Flow {
    double_shift(c, i, shld_fn)
}
fn shrd(c: &mut Cpu, i: &Insn) -> Flow {
    double_shift(c, i, shrd_fn)
}

#[inline]
fn msb(size: u8, v: u64) -> bool {
    v & sign_bit(size) != 0
}

fn shl_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let r = if n < bits { (a << n) & m } else { 0 };
    let cf = n <= bits && (a >> (bits - n)) & 1 != 0;
    let f = szp(size, r) | AF | bit(cf, CF) | bit(msb(size, r) != cf, OF);
    (r, (fl & !ALL) | f)
}

fn shr_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let r = if n < bits { a >> n } else { 0 };
    let cf = n <= bits && (a >> (n - 1)) & 1 != 0;
    let f = szp(size, r) | AF | bit(cf, CF) | bit(top2_differ(size, r), OF);
    (r, (fl & !ALL) | f)
}

fn sar_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let sa = sext(a, size);
    let r = (sa >> n.min(bits - 1)) as u64 & size_mask(size);
    let cf = (sa >> (n - 1).min(bits - 1)) & 1 != 0;
    let f = szp(size, r) | AF | bit(cf, CF);
    (r, (fl & !ALL) | f)
}

#[inline]
fn sext(v: u64, size: u8) -> i64 {
    let sh = 64 - size as u32 * 8;
    ((v << sh) as i64) >> sh
}

#[inline]
fn rotl(size: u8, a: u64, n: u32) -> u64 {
    let bits = size as u32 * 8;
    let n = n % bits;
    if n == 0 {
        a
    } else {
        ((a << n) | (a >> (bits - n))) & size_mask(size)
    }
}

fn rol_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let r = rotl(size, a, n);
    let cf = r & 1 != 0;
    (
        r,
        (fl & !(CF | OF)) | bit(cf, CF) | bit(msb(size, r) != cf, OF),
    )
}

fn ror_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let r = rotl(size, a, bits - n % bits);
    let cf = msb(size, r);
    let of = cf != ((r >> (bits - 2)) & 1 != 0);
    (r, (fl & !(CF | OF)) | bit(cf, CF) | bit(of, OF))
}

/// Rotates the (bits+1)-bit value CF:a left by `n` (already reduced below bits+1).
#[inline]
fn rcl_raw(size: u8, a: u64, n: u32, cf: bool) -> (u64, bool) {
    let bits = size as u32 * 8;
    let w = bits + 1;
    let v = ((cf as u128) << bits) | a as u128;
    let mw = (1u128 << w) - 1;
    let v = if n == 0 {
        v
    } else {
        ((v << n) | (v >> (w - n))) & mw
    };
    (v as u64 & size_mask(size), (v >> bits) & 1 != 0)
}

/// RCL/RCR count: 8- and 16-bit rotates go through 9/17 bits, so the count is taken mod
/// 9/17; the masked 5/6-bit count is already below 33/65 for 32/64 bits.
#[inline]
fn rc_count(size: u8, n: u32) -> u32 {
    match size {
        1 => n % 9,
        2 => n % 17,
        _ => n,
    }
}

fn rcl_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let (r, cf) = rcl_raw(size, a, rc_count(size, n), fl & CF != 0);
    (
        r,
        (fl & !(CF | OF)) | bit(cf, CF) | bit(msb(size, r) != cf, OF),
    )
}

fn rcr_fn(size: u8, a: u64, n: u32, _: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let k = rc_count(size, n);
    let (r, cf) = rcl_raw(size, a, if k == 0 { 0 } else { bits + 1 - k }, fl & CF != 0);
    let of = msb(size, r) != ((r >> (bits - 2)) & 1 != 0);
    (r, (fl & !(CF | OF)) | bit(cf, CF) | bit(of, OF))
}

fn shld_fn(size: u8, a: u64, n: u32, src: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let s = (src & m) as u128;
    let (w, width) = if size == 2 {
        (((a as u128) << 32) | (s << 16) | s, 48)
    } else {
        (((a as u128) << bits) | s, 2 * bits)
    };
    let r = (w << n >> (width - bits)) as u64 & m;
    // CF and OF are those of SHL on the destination alone: the last bit shifted out, and
    // whether the destination's top bit changed in the last 1-bit step. That also covers
    // the (undefined) 16-bit counts 16..31 as the host does them: for counts above 16 both
    // are 0, for 16 OF = CF.
    let cf = n <= bits && (a >> (bits - n)) & 1 != 0;
    let of = cf != (n < bits && (a >> (bits - 1 - n)) & 1 != 0);
    let f = szp(size, r) | AF | bit(cf, CF) | bit(of, OF);
    (r, (fl & !ALL) | f)
}

fn shrd_fn(size: u8, a: u64, n: u32, src: u64, fl: u64) -> (u64, u64) {
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let s = (src & m) as u128;
    let w = if size == 2 {
        (s << 32) | (s << 16) | a as u128
    } else {
        (s << bits) | a as u128
    };
    let r = (w >> n) as u64 & m;
    // 16-bit counts above 16 (undefined): the host clears CF.
    let cf = n <= bits && (w >> (n - 1)) & 1 != 0;
    let f = szp(size, r) | AF | bit(cf, CF) | bit(top2_differ(size, r), OF);
    (r, (fl & !ALL) | f)
}

/// Whether the two most significant bits of `r` differ: the OF the host produces for
/// right shifts, i.e. the sign change of the last 1-bit step.
#[inline]
fn top2_differ(size: u8, r: u64) -> bool {
    let bits = size as u32 * 8;
    ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1 != 0
}

#[cfg(all(test, target_arch = "x86_64"))]
mod host_tests {
    use crate::interp::arith::host::{diff, host_fn, Rng};
    use crate::interp::arith::rig::asm;
    use iced_x86::code_asm::*;

    /// RAX = value, RCX = count (mostly small, sometimes any byte), R8 = SHLD/SHRD source.
    fn counts(r: &mut Rng) -> Option<[u64; 4]> {
        let x = r.next();
        let cnt = if x & 3 == 0 {
            (x >> 8) & 0xff
        } else {
            (x >> 8) % 70
        };
        Some([r.edge(), r.edge(), cnt | (r.next() & !0xff), r.edge()])
    }

    macro_rules! diff_shift {
        ($op:ident, $h:literal) => {{
            let mut n = 0;
            n += diff(
                concat!($h, "8"),
                host_fn!(concat!($h, " al, cl")),
                &asm(|a| a.$op(al, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "8h"),
                host_fn!(concat!($h, " ah, cl")),
                &asm(|a| a.$op(ah, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "16"),
                host_fn!(concat!($h, " ax, cl")),
                &asm(|a| a.$op(ax, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "32"),
                host_fn!(concat!($h, " eax, cl")),
                &asm(|a| a.$op(eax, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "64"),
                host_fn!(concat!($h, " rax, cl")),
                &asm(|a| a.$op(rax, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "1_8"),
                host_fn!(concat!($h, " dl, 1")),
                &asm(|a| a.$op(dl, 1)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "1_64"),
                host_fn!(concat!($h, " rdx, 1")),
                &asm(|a| a.$op(rdx, 1)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "i_16"),
                host_fn!(concat!($h, " dx, 13")),
                &asm(|a| a.$op(dx, 13)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "i_32"),
                host_fn!(concat!($h, " eax, 33")),
                &asm(|a| a.$op(eax, 33)),
                0,
                counts,
            );
            n
        }};
    }

    macro_rules! diff_double {
        ($op:ident, $h:literal) => {{
            let mut n = 0;
            n += diff(
                concat!($h, "16"),
                host_fn!(concat!($h, " ax, r8w, cl")),
                &asm(|a| a.$op(ax, r8w, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "32"),
                host_fn!(concat!($h, " eax, r8d, cl")),
                &asm(|a| a.$op(eax, r8d, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "64"),
                host_fn!(concat!($h, " rax, r8, cl")),
                &asm(|a| a.$op(rax, r8, cl)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "i16"),
                host_fn!(concat!($h, " dx, r8w, 20")),
                &asm(|a| a.$op(dx, r8w, 20)),
                0,
                counts,
            );
            n += diff(
                concat!($h, "i64"),
                host_fn!(concat!($h, " rdx, r8, 1")),
                &asm(|a| a.$op(rdx, r8, 1)),
                0,
                counts,
            );
            n
        }};
    }

    #[test]
    fn host_shl() {
        assert!(diff_shift!(shl, "shl") > 20_000);
    }
    #[test]
    fn host_shr() {
        assert!(diff_shift!(shr, "shr") > 20_000);
    }
    #[test]
    fn host_sar() {
        assert!(diff_shift!(sar, "sar") > 20_000);
    }
    #[test]
    fn host_rol() {
        assert!(diff_shift!(rol, "rol") > 20_000);
    }
    #[test]
    fn host_ror() {
        assert!(diff_shift!(ror, "ror") > 20_000);
    }
    #[test]
    fn host_rcl() {
        assert!(diff_shift!(rcl, "rcl") > 20_000);
    }
    #[test]
    fn host_rcr() {
        assert!(diff_shift!(rcr, "rcr") > 20_000);
    }
    #[test]
    fn host_shld() {
        assert!(diff_double!(shld, "shld") > 10_000);
    }
    #[test]
    fn host_shrd() {
        assert!(diff_double!(shrd, "shrd") > 10_000);
    }
}

#[cfg(test)]
mod tests {
    use crate::interp::arith::rig::{asm, Rig};
    use crate::state::rflags::*;
    use crate::state::CpuState;
    use crate::testing::DATA;
    use iced_x86::code_asm::*;

    fn run(code: &[u8], regs: [u64; 4], flags: u64) -> CpuState {
        Rig::new(code).run(regs, flags).expect("runs")
    }

    fn fl(s: &CpuState) -> u64 {
        s.rflags & ARITH
    }

    #[test]
    fn count_zero_changes_nothing_but_zero_extends() {
        let s = run(
            &asm(|a| a.shl(eax, cl)),
            [u64::MAX, 0, 0x20, 0],
            CF | OF | ZF,
        );
        assert_eq!(s.gpr[0], 0xffff_ffff);
        assert_eq!(fl(&s), CF | OF | ZF);
        // 64-bit operands mask the count to 6 bits: 64 → 0.
        let s = run(&asm(|a| a.shr(rax, cl)), [u64::MAX, 0, 64, 0], SF);
        assert_eq!((s.gpr[0], fl(&s)), (u64::MAX, SF));
        // 16-bit: count 0x20 masks to 0, upper bits untouched.
        let s = run(&asm(|a| a.rol(ax, cl)), [0x1234_5678, 0, 0x20, 0], PF);
        assert_eq!((s.gpr[0], fl(&s)), (0x1234_5678, PF));
        // Memory: unchanged, flags unchanged.
        let mut r = Rig::new(&asm(|a| a.sar(dword_ptr(DATA), cl)));
        r.it.cpu.env.mem.write_u64(DATA, 0x8000_0001).unwrap();
        let s = r.run([0, 0, 0, 0], AF).unwrap();
        assert_eq!(fl(&s), AF);
        assert_eq!(r.it.cpu.env.mem.read_u64(DATA).unwrap(), 0x8000_0001);
    }

    #[test]
    fn shl_shr_sar() {
        // SHL by 1: 0x80 → 0, CF = 1, OF = 0 ^ 1 = 1.
        let s = run(&asm(|a| a.shl(al, 1)), [0x180, 0, 0, 0], 0);
        assert_eq!((s.gpr[0], fl(&s)), (0x100, CF | OF | ZF | PF | AF));
        // 8-bit SHL by 8: CF = old bit 0; by 9: CF = 0.
        let s = run(&asm(|a| a.shl(al, cl)), [0x01, 0, 8, 0], 0);
        assert_eq!((s.gpr[0], fl(&s) & (CF | ZF)), (0, CF | ZF));
        let s = run(&asm(|a| a.shl(al, cl)), [0xff, 0, 9, 0], CF);
        assert_eq!((s.gpr[0], fl(&s) & CF), (0, 0));
        // SHR by 1 of a negative value: OF = old MSB.
        let s = run(&asm(|a| a.shr(rax, 1)), [u64::MAX, 0, 0, 0], 0);
        assert_eq!((s.gpr[0], fl(&s)), (u64::MAX >> 1, CF | OF | AF | PF));
        // SHR by 2: OF = 0.
        let s = run(&asm(|a| a.shr(rax, 2)), [u64::MAX, 0, 0, 0], OF);
        assert_eq!(fl(&s) & OF, 0);
        // SAR of 8-bit by 31: all sign bits, CF = sign.
        let s = run(&asm(|a| a.sar(bh, cl)), [0, 0, 31, 0], 0);
        let mut r = Rig::new(&asm(|a| a.sar(bh, cl)));
        r.it.cpu.s.gpr[3] = 0x8000;
        let s2 = r.run([0, 0, 31, 0], 0).unwrap();
        assert_eq!(s2.gpr[3], 0xff00);
        assert_eq!(fl(&s2), CF | SF | PF | AF);
        assert_eq!(fl(&s), ZF | PF | AF);
        // Immediate count on memory.
        let mut r = Rig::new(&asm(|a| a.shl(qword_ptr(DATA), 4)));
        r.it.cpu
            .env
            .mem
            .write_u64(DATA, 0xf000_0000_0000_0001)
            .unwrap();
        let s = r.run([0; 4], 0).unwrap();
        assert_eq!(r.it.cpu.env.mem.read_u64(DATA).unwrap(), 0x10);
        assert_eq!(fl(&s), CF | OF | AF);
    }

    #[test]
    fn rotates() {
        // ROL 8-bit by 8: value unchanged but CF/OF written (CF = bit 0).
        let s = run(&asm(|a| a.rol(dl, cl)), [0, 0x81, 8, 0], ZF);
        assert_eq!((s.gpr[2], fl(&s)), (0x81, ZF | CF));
        // ROR by 1: CF = new MSB, OF = MSB ^ next bit.
        let s = run(&asm(|a| a.ror(eax, 1)), [1, 0, 0, 0], 0);
        assert_eq!((s.gpr[0], fl(&s)), (0x8000_0000, CF | OF));
        // RCL 8-bit by 9 (mod 9 = 0): value and CF unchanged.
        let s = run(&asm(|a| a.rcl(al, cl)), [0x40, 0, 9, 0], CF);
        assert_eq!(s.gpr[0], 0x40);
        assert_eq!(fl(&s), CF | OF);
        // RCL 16-bit by 1 with CF in.
        let s = run(&asm(|a| a.rcl(ax, 1)), [0x8000, 0, 0, 0], CF);
        assert_eq!((s.gpr[0], fl(&s)), (1, CF | OF));
        // RCR 64-bit by 1: CF comes in at the top.
        let s = run(&asm(|a| a.rcr(rax, 1)), [2, 0, 0, 0], CF | SF);
        assert_eq!((s.gpr[0], fl(&s)), (0x8000_0000_0000_0001, SF | OF));
        // RCR byte in memory by CL = 17 (mod 9 = 8).
        let mut r = Rig::new(&asm(|a| a.rcr(byte_ptr(DATA), cl)));
        r.it.cpu.env.mem.write_u64(DATA, 0x01).unwrap();
        let s = r.run([0, 0, 17, 0], 0).unwrap();
        assert_eq!(r.it.cpu.env.mem.read_u64(DATA).unwrap(), 0x02);
        assert_eq!(fl(&s), 0);
    }

    #[test]
    fn double_shifts() {
        let s = run(
            &asm(|a| a.shld(eax, r8d, 8)),
            [0x8123_4567, 0, 0, 0xab00_0000],
            0,
        );
        assert_eq!((s.gpr[0], fl(&s)), (0x2345_67ab, CF | OF | AF));
        let s = run(&asm(|a| a.shrd(rax, r8, cl)), [0xff, 0, 4, 0x5], 0);
        assert_eq!(s.gpr[0], 0x5000_0000_0000_000f);
        assert_eq!(fl(&s), CF | OF | AF | PF);
        // 16-bit count 20 (undefined): the source rotated by 4, CF = OF = 0 (host rule).
        let s = run(
            &asm(|a| a.shld(ax, r8w, cl)),
            [0xffff, 0, 20, 0x1234],
            CF | OF,
        );
        assert_eq!((s.gpr[0], fl(&s)), (0x2341, AF | PF));
        let s = run(&asm(|a| a.shrd(ax, r8w, cl)), [0xffff, 0, 20, 0x1234], CF);
        assert_eq!((s.gpr[0], fl(&s)), (0x4123, AF | OF));
        // Memory destination.
        let mut r = Rig::new(&asm(|a| a.shld(word_ptr(DATA), r8w, cl)));
        r.it.cpu.env.mem.write_u64(DATA, 0xaaaa_8001).unwrap();
        r.run([0, 0, 1, 0x8000], 0).unwrap();
        assert_eq!(r.it.cpu.env.mem.read_u64(DATA).unwrap(), 0xaaaa_0003);
    }

    #[test]
    fn lock_is_invalid() {
        use crate::exception::{Exception, UD};
        // LOCK SHL DWORD [RAX], 1
        let e = Rig::new(&[0xf0, 0xd1, 0x20])
            .run([DATA, 0, 0, 0], 0)
            .map(|_| ());
        assert_eq!(e, Err(Exception::new(UD)));
    }
}
