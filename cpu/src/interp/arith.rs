//! Integer arithmetic: ADD, ADC, SUB, SBB, CMP, INC, DEC, NEG (lazy flags), MUL, IMUL (one-,
//! two- and three-operand forms), DIV and IDIV.
//!
//! Undefined flags, as measured on the host (AMD EPYC, family 19h "Zen 4"; see the
//! `host_*` differential tests, which run the same instructions natively):
//! - MUL/IMUL: SF, ZF, AF and PF are left unchanged; only CF and OF are written. (Intel
//!   processors instead write SF/ZF/PF from the result, so this is vendor-specific.)
//! - DIV/IDIV: CF and OF are left unchanged, SF = ZF = PF = 0 and AF = 1, whatever the
//!   operands. (Intel leaves different values; also vendor-specific.)

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{ud, Exception, Flow, Trap, DE};
use crate::flags::{size_mask, FlagOp};
use crate::model::CpuModel;
use crate::state::rflags::{AF, ARITH, CF, OF};
use crate::state::{RAX, RDX};

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Add => add,
        Adc => adc,
        Sub => sub,
        Sbb => sbb,
        Cmp => cmp,
        Inc => inc,
        Dec => dec,
        Neg => neg,
        Mul => mul,
        Imul => match i.op_count() {
            1 => imul1,
            2 => imul2,
            _ => imul3,
        },
        Div => div,
        Idiv => idiv,
        _ => return None,
    })
}

#[inline]
fn de() -> Trap {
    Trap::Exception(Exception::new(DE))
}

/// Reads operand `n`, with registers and immediates inline (the hot cases; `read_op` is
/// too big to be inlined everywhere).
#[inline(always)]
pub(crate) fn read(c: &mut Cpu, i: &Insn, n: usize) -> Result<u64, Trap> {
    match i.ops[n] {
        Operand::Reg { idx, size } => Ok(c.reg(idx as usize, size)),
        Operand::Imm => Ok(i.imm),
        _ => c.read_op(i, n),
    }
}

/// Writes operand `n`, with full-width registers inline.
#[inline(always)]
pub(crate) fn write(c: &mut Cpu, i: &Insn, n: usize, v: u64) -> Flow {
    match i.ops[n] {
        Operand::Reg { idx, size } => {
            c.set_reg(idx as usize, size, v);
            Ok(())
        }
        _ => c.write_op(i, n, v),
    }
}

/// Read-modify-write of operand 0 with `f`, returning (old value, new value masked to the
/// operand size). A memory destination is resolved once; the write happens before the
/// caller touches flags, so a faulting write changes nothing. LOCK is only valid with a
/// memory destination.
#[inline(always)]
pub(crate) fn rmw(c: &mut Cpu, i: &Insn, f: impl FnOnce(u64) -> u64) -> Result<(u64, u64), Trap> {
    let m = size_mask(i.osize);
    match i.ops[0] {
        Operand::Reg { idx, size } if !i.lock => {
            let a = c.reg(idx as usize, size);
            let r = f(a) & m;
            c.set_reg(idx as usize, size, r);
            Ok((a, r))
        }
        Operand::Mem { size } => {
            let lin = c.mem_write_addr(i, size)?;
            let a = c.read_lin_rmw(lin, size)?;
            let r = f(a) & m;
            c.write_lin(lin, size, r)?;
            Ok((a, r))
        }
        _ if i.lock => Err(ud()),
        _ => {
            let a = c.read_op(i, 0)?;
            let r = f(a) & m;
            c.write_op(i, 0, r)?;
            Ok((a, r))
        }
    }
}

/// The source operand of a two-operand ALU instruction, masked to the operand size
/// (immediates arrive sign-extended to 64 bits).
#[inline(always)]
pub(crate) fn src(c: &mut Cpu, i: &Insn) -> Result<u64, Trap> {
    Ok(read(c, i, 1)? & size_mask(i.osize))
}

fn add(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (a, r) = rmw(c, i, |a| a.wrapping_add(b))?;
    c.set_lazy(FlagOp::Add, i.osize, a, b, r);
    Ok(())
}

fn adc(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let cin = c.cf() as u64;
    let (a, r) = rmw(c, i, |a| a.wrapping_add(b).wrapping_add(cin))?;
    c.set_lazy(FlagOp::Adc, i.osize, a, b, r);
    c.lf.aux = cin;
    Ok(())
}

fn sub(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (a, r) = rmw(c, i, |a| a.wrapping_sub(b))?;
    c.set_lazy(FlagOp::Sub, i.osize, a, b, r);
    Ok(())
}

fn sbb(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let bin = c.cf() as u64;
    let (a, r) = rmw(c, i, |a| a.wrapping_sub(b).wrapping_sub(bin))?;
    c.set_lazy(FlagOp::Sbb, i.osize, a, b, r);
    c.lf.aux = bin;
    Ok(())
}

fn cmp(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let a = read(c, i, 0)?;
    let b = src(c, i)?;
    c.set_lazy(
        FlagOp::Sub,
        i.osize,
        a,
        b,
        a.wrapping_sub(b) & size_mask(i.osize),
    );
    Ok(())
}

fn inc(c: &mut Cpu, i: &Insn) -> Flow {
    let (a, r) = rmw(c, i, |a| a.wrapping_add(1))?;
    let cf = c.cf() as u64;
    c.set_lazy(FlagOp::Inc, i.osize, a, 1, r);
    c.lf.aux = cf;
    Ok(())
}

fn dec(c: &mut Cpu, i: &Insn) -> Flow {
    let (a, r) = rmw(c, i, |a| a.wrapping_sub(1))?;
    let cf = c.cf() as u64;
    c.set_lazy(FlagOp::Dec, i.osize, a, 1, r);
    c.lf.aux = cf;
    Ok(())
}

fn neg(c: &mut Cpu, i: &Insn) -> Flow {
    let (a, r) = rmw(c, i, |a| a.wrapping_neg())?;
    // NEG is 0 - a: CF = (a != 0), and OF/AF/SF/ZF/PF as for that subtraction.
    c.set_lazy(FlagOp::Sub, i.osize, 0, a, r);
    Ok(())
}

#[inline]
fn sext(v: u64, size: u8) -> i64 {
    let sh = 64 - size as u32 * 8;
    ((v << sh) as i64) >> sh
}

/// Writes a double-width result to AX (8-bit) or rDX:rAX.
fn write_wide(c: &mut Cpu, size: u8, lo: u64, hi: u64) {
    if size == 1 {
        c.set_reg(RAX, 2, (hi << 8) | (lo & 0xff));
    } else {
        c.set_reg(RAX, size, lo);
        c.set_reg(RDX, size, hi);
    }
}

/// CF = OF = `overflow`; SF, ZF, AF, PF unchanged (as on the AMD host, see the module docs).
#[inline]
fn mul_flags(c: &mut Cpu, overflow: bool) {
    c.set_flags_masked(CF | OF, if overflow { CF | OF } else { 0 });
}

fn mul(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let size = i.osize;
    let b = read(c, i, 0)?;
    let a = c.reg(RAX, size);
    let p = a as u128 * b as u128;
    let bits = size as u32 * 8;
    let lo = p as u64 & size_mask(size);
    let hi = (p >> bits) as u64;
    write_wide(c, size, lo, hi);
    mul_flags(c, hi != 0);
    Ok(())
}

fn imul1(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let size = i.osize;
    let b = sext(read(c, i, 0)?, size);
    let a = sext(c.reg(RAX, size), size);
    let p = a as i128 * b as i128;
    let bits = size as u32 * 8;
    let m = size_mask(size);
    let lo = p as u64 & m;
    let hi = (p >> bits) as u64 & m;
    write_wide(c, size, lo, hi);
    mul_flags(c, sext(lo, size) as i128 != p);
    Ok(())
}

/// Truncating signed multiply for the two- and three-operand forms.
#[inline]
fn imul_trunc(c: &mut Cpu, i: &Insn, a: u64, b: u64) -> Flow {
    let size = i.osize;
    let p = sext(a, size) as i128 * sext(b, size) as i128;
    let lo = p as u64 & size_mask(size);
    write(c, i, 0, lo)?;
    mul_flags(c, sext(lo, size) as i128 != p);
    Ok(())
}

fn imul2(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let a = read(c, i, 0)?;
    let b = read(c, i, 1)?;
    imul_trunc(c, i, a, b)
}

fn imul3(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let a = read(c, i, 1)?;
    imul_trunc(c, i, a, i.imm)
}

/// The dividend: AX for byte division, else rDX:rAX.
#[inline]
fn dividend(c: &Cpu, size: u8) -> u128 {
    if size == 1 {
        c.reg(RAX, 2) as u128
    } else {
        ((c.reg(RDX, size) as u128) << (size as u32 * 8)) | c.reg(RAX, size) as u128
    }
}

/// Writes quotient and remainder: AL/AH for byte division, else rAX/rDX.
#[inline]
fn write_qr(c: &mut Cpu, size: u8, q: u64, r: u64) {
    if size == 1 {
        c.set_reg(RAX, 2, ((r & 0xff) << 8) | (q & 0xff));
    } else {
        c.set_reg(RAX, size, q);
        c.set_reg(RDX, size, r);
    }
}

/// Flags after DIV/IDIV on the AMD host: CF/OF kept, SF = ZF = PF = 0, AF = 1.
#[inline]
fn div_flags(c: &mut Cpu) {
    c.set_flags_masked(ARITH & !(CF | OF), AF);
}

fn div(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let size = i.osize;
    let d = read(c, i, 0)?;
    if d == 0 {
        return Err(de());
    }
    let n = dividend(c, size);
    // 128-by-64 division is slow in software; most 64-bit dividends have RDX = 0.
    let (q, r) = if n >> 64 == 0 {
        let n = n as u64;
        (n / d, n % d)
    } else {
        let q = n / d as u128;
        if q >> 64 != 0 {
            return Err(de());
        }
        (q as u64, (n % d as u128) as u64)
    };
    if q > size_mask(size) {
        return Err(de());
    }
    write_qr(c, size, q, r);
    div_flags(c);
    Ok(())
}

fn idiv(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let size = i.osize;
    let d = sext(read(c, i, 0)?, size) as i128;
    if d == 0 {
        return Err(de());
    }
    let bits = size as u32 * 8 * 2;
    // Sign-extend the double-width dividend to 128 bits.
    let n = ((dividend(c, size) << (128 - bits)) as i128) >> (128 - bits);
    // i128::MIN / -1 (only reachable with 64-bit operands) overflows like any other
    // quotient that does not fit.
    let q = n.checked_div(d).ok_or_else(de)?;
    let r = n.checked_rem(d).ok_or_else(de)?;
    let half = size as u32 * 8 - 1;
    if q < -(1i128 << half) || q >= (1i128 << half) {
        return Err(de());
    }
    let m = size_mask(size);
    write_qr(c, size, q as u64 & m, r as u64 & m);
    div_flags(c);
    Ok(())
}

/// A reusable test machine: the code is decoded once and run many times with different
/// register and flag inputs.
#[cfg(test)]
pub(crate) mod rig {
    use iced_x86::code_asm::CodeAssembler;
    use iced_x86::IcedError;

    use crate::exception::Exception;
    use crate::exec::{Interpreter, RunExit};
    use crate::state::{rflags, CpuState};
    use crate::testing::{machine64, CODE, STACK_TOP};

    pub fn asm_bits(
        bits: u32,
        f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    ) -> Vec<u8> {
        let mut a = CodeAssembler::new(bits).expect("assembler");
        f(&mut a).expect("instruction");
        a.assemble(CODE).expect("assemble")
    }

    pub fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
        asm_bits(64, f)
    }

    pub struct Rig {
        pub it: Interpreter,
    }

    impl Rig {
        /// 64-bit code.
        pub fn new(code: &[u8]) -> Rig {
            Self::with(machine64(), code)
        }

        /// 32-bit flat protected mode, paging off.
        pub fn new32(code: &[u8]) -> Rig {
            let e = crate::testing::env(64 << 20);
            let mut s = CpuState::protected_flat();
            s.gpr[crate::state::RSP] = STACK_TOP;
            let mut it = Interpreter::new(e, s);
            it.stop_on_exception = true;
            Self::with(it, code)
        }

        fn with(mut it: Interpreter, code: &[u8]) -> Rig {
            let mut bytes = code.to_vec();
            bytes.push(0xf4);
            it.cpu.env.mem.write(CODE, &bytes).expect("code fits");
            it.cache.clear(&mut it.cpu);
            Rig { it }
        }

        /// Runs with RAX, RDX, RCX, R8 = `regs` and the arithmetic flags in `flags`.
        pub fn run(&mut self, regs: [u64; 4], flags: u64) -> Result<CpuState, Exception> {
            let c = &mut self.it.cpu;
            c.s.gpr[crate::state::RAX] = regs[0];
            c.s.gpr[crate::state::RDX] = regs[1];
            c.s.gpr[crate::state::RCX] = regs[2];
            c.s.gpr[8] = regs[3];
            c.set_rflags(rflags::FIXED1 | (flags & rflags::ARITH));
            c.s.rip = CODE;
            c.s.events.halted = false;
            match self.it.run(100) {
                RunExit::Halted => Ok(self.it.cpu.state()),
                RunExit::Exception(e) => Err(e),
                other => panic!("unexpected exit {other:?}"),
            }
        }
    }
}

/// Differential testing against the host CPU: the same instruction runs natively (inline
/// asm, RAX/RDX/RCX/R8 and the arithmetic flags as inputs) and in the interpreter.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod host {
    use super::rig::Rig;
    use crate::state::rflags::ARITH;

    /// (RAX, RDX, RCX, R8), flags in → (RAX, RDX, flags) out.
    pub type HostFn = fn([u64; 4], u64) -> (u64, u64, u64);

    /// A `HostFn` running the given Intel-syntax instruction(s) natively.
    macro_rules! host_fn {
        ($($ins:expr),+) => {{
            fn f(r: [u64; 4], fl: u64) -> (u64, u64, u64) {
                let (mut a, mut d, mut f) = (r[0], r[1], (fl & 0x8d5) | 2);
                // SAFETY: only the named registers and the flags are touched; the stack is
                // used for PUSHF/POPF, which the default (non-`nostack`) options allow.
                unsafe {
                    std::arch::asm!("push {f}", "popfq", $($ins,)+ "pushfq", "pop {f}",
                        f = inout(reg) f, inout("rax") a, inout("rdx") d,
                        in("rcx") r[2], in("r8") r[3]);
                }
                (a, d, f & 0x8d5)
            }
            f as $crate::interp::arith::host::HostFn
        }};
    }
    pub(crate) use host_fn;

    /// Whether the host is an AMD processor (the undefined-flag rules were taken from one).
    pub fn amd() -> bool {
        let r = core::arch::x86_64::__cpuid(0);
        r.ebx == 0x6874_7541
    }

    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Mostly boundary values (at every operand width), sometimes random ones.
        pub fn edge(&mut self) -> u64 {
            const E: [u64; 16] = [
                0,
                1,
                2,
                0x0f,
                0x10,
                0x7f,
                0x80,
                0xff,
                0x7fff,
                0x8000,
                0xffff,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                0x7fff_ffff_ffff_ffff,
                0x8000_0000_0000_0000,
            ];
            let r = self.next();
            match r % 8 {
                0..=2 => E[(r >> 8) as usize % 16],
                3 => E[(r >> 8) as usize % 16].wrapping_neg(),
                4 => (r >> 8) % 64,
                _ => self.next(),
            }
        }
    }

    /// Runs `n` random cases of `code` (in the interpreter) and `host` (natively) and
    /// asserts equal RAX, RDX and arithmetic flags. Flags in `undef` are compared only on
    /// AMD hosts (they are where vendors differ). `gen` returns None for inputs to skip.
    pub fn diff(
        name: &str,
        host: HostFn,
        code: &[u8],
        undef: u64,
        mut gen: impl FnMut(&mut Rng) -> Option<[u64; 4]>,
    ) -> usize {
        let mut rig = Rig::new(code);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (name.len() as u64 * 0x1234_5678));
        let mask = if amd() { ARITH } else { ARITH & !undef };
        let mut bad = Vec::new();
        let mut n = 0;
        for _ in 0..3000 {
            let Some(regs) = gen(&mut rng) else { continue };
            let fl = rng.next() & ARITH;
            let (ha, hd, hf) = host(regs, fl);
            let s = rig
                .run(regs, fl)
                .unwrap_or_else(|e| panic!("{name}: {e} for {regs:x?}"));
            let got = (s.gpr[0], s.gpr[2], s.rflags & mask);
            let want = (ha, hd, hf & mask);
            n += 1;
            if got != want && bad.len() < 12 {
                bad.push(format!(
                    "{name} in rax={:#x} rdx={:#x} rcx={:#x} r8={:#x} fl={fl:#05x}: got {:#x} {:#x} {:#05x}, host {:#x} {:#x} {:#05x}",
                    regs[0], regs[1], regs[2], regs[3], got.0, got.1, got.2, want.0, want.1, want.2
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
        n
    }

    /// Any inputs.
    pub fn any(r: &mut Rng) -> Option<[u64; 4]> {
        Some([r.edge(), r.edge(), r.edge(), r.edge()])
    }
}

#[cfg(test)]
mod tests {
    use super::host::{any, diff, host_fn, Rng};
    use super::rig::{asm, Rig};
    use crate::exception::{Exception, DE, UD};
    use crate::state::rflags::*;
    use crate::testing::DATA;
    use iced_x86::code_asm::*;

    const MULU: u64 = SF | ZF | AF | PF;

    /// One differential case per operand size: `$op` is the code_asm method, `$h` the host
    /// instruction text for AL/AX/EAX/RAX with R8B/R8W/R8D/R8 as the source.
    macro_rules! diff_rr {
        ($op:ident, $h:literal, $undef:expr) => {{
            let mut n = 0;
            n += diff(
                concat!($h, "8"),
                host_fn!(concat!($h, " al, r8b")),
                &asm(|a| a.$op(al, r8b)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "16"),
                host_fn!(concat!($h, " ax, r8w")),
                &asm(|a| a.$op(ax, r8w)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "32"),
                host_fn!(concat!($h, " eax, r8d")),
                &asm(|a| a.$op(eax, r8d)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "64"),
                host_fn!(concat!($h, " rax, r8")),
                &asm(|a| a.$op(rax, r8)),
                $undef,
                any,
            );
            n
        }};
    }

    macro_rules! diff_r {
        ($op:ident, $h:literal, $undef:expr) => {{
            let mut n = 0;
            n += diff(
                concat!($h, "8"),
                host_fn!(concat!($h, " r8b")),
                &asm(|a| a.$op(r8b)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "16"),
                host_fn!(concat!($h, " r8w")),
                &asm(|a| a.$op(r8w)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "32"),
                host_fn!(concat!($h, " r8d")),
                &asm(|a| a.$op(r8d)),
                $undef,
                any,
            );
            n += diff(
                concat!($h, "64"),
                host_fn!(concat!($h, " r8")),
                &asm(|a| a.$op(r8)),
                $undef,
                any,
            );
            n
        }};
    }

    macro_rules! diff_dst {
        ($op:ident, $h:literal) => {{
            let mut n = 0;
            n += diff(
                concat!($h, "8"),
                host_fn!(concat!($h, " al")),
                &asm(|a| a.$op(al)),
                0,
                any,
            );
            n += diff(
                concat!($h, "8h"),
                host_fn!(concat!($h, " ah")),
                &asm(|a| a.$op(ah)),
                0,
                any,
            );
            n += diff(
                concat!($h, "16"),
                host_fn!(concat!($h, " ax")),
                &asm(|a| a.$op(ax)),
                0,
                any,
            );
            n += diff(
                concat!($h, "32"),
                host_fn!(concat!($h, " eax")),
                &asm(|a| a.$op(eax)),
                0,
                any,
            );
            n += diff(
                concat!($h, "64"),
                host_fn!(concat!($h, " rax")),
                &asm(|a| a.$op(rax)),
                0,
                any,
            );
            n
        }};
    }

    #[test]
    fn host_add_sub_family() {
        let mut n = 0;
        n += diff_rr!(add, "add", 0);
        n += diff_rr!(adc, "adc", 0);
        n += diff_rr!(sub, "sub", 0);
        n += diff_rr!(sbb, "sbb", 0);
        n += diff_rr!(cmp, "cmp", 0);
        n += diff_rr!(and, "and", AF);
        n += diff_rr!(or, "or", AF);
        n += diff_rr!(xor, "xor", AF);
        n += diff_rr!(test, "test", AF);
        n += diff(
            "adc ah,dh",
            host_fn!("adc ah, dh"),
            &asm(|a| a.adc(ah, dh)),
            0,
            any,
        );
        n += diff(
            "sbb dh,al",
            host_fn!("sbb dh, al"),
            &asm(|a| a.sbb(dh, al)),
            0,
            any,
        );
        assert!(n > 30_000);
    }

    #[test]
    fn host_inc_dec_neg_not() {
        let mut n = diff_dst!(inc, "inc");
        n += diff_dst!(dec, "dec");
        n += diff_dst!(neg, "neg");
        n += diff_dst!(not, "not");
        assert!(n > 50_000);
    }

    #[test]
    fn host_mul_imul() {
        let mut n = diff_r!(mul, "mul", MULU);
        n += diff_r!(imul, "imul", MULU);
        n += diff(
            "imul2_16",
            host_fn!("imul ax, r8w"),
            &asm(|a| a.imul_2(ax, r8w)),
            MULU,
            any,
        );
        n += diff(
            "imul2_32",
            host_fn!("imul eax, r8d"),
            &asm(|a| a.imul_2(eax, r8d)),
            MULU,
            any,
        );
        n += diff(
            "imul2_64",
            host_fn!("imul rax, r8"),
            &asm(|a| a.imul_2(rax, r8)),
            MULU,
            any,
        );
        n += diff(
            "imul3_16",
            host_fn!("imul ax, r8w, -3"),
            &asm(|a| a.imul_3(ax, r8w, -3)),
            MULU,
            any,
        );
        n += diff(
            "imul3_32",
            host_fn!("imul eax, r8d, 0x12345"),
            &asm(|a| a.imul_3(eax, r8d, 0x12345)),
            MULU,
            any,
        );
        n += diff(
            "imul3_64",
            host_fn!("imul rax, r8, -0x7000"),
            &asm(|a| a.imul_3(rax, r8, -0x7000)),
            MULU,
            any,
        );
        n += diff(
            "imul3_64b",
            host_fn!("imul rax, r8, 0x7f"),
            &asm(|a| a.imul_3(rax, r8, 0x7f)),
            MULU,
            any,
        );
        assert!(n > 40_000);
    }

    fn sext(v: u64, bits: u32) -> i128 {
        ((v as i128) << (128 - bits)) >> (128 - bits)
    }

    /// Division inputs that do not fault (the host would die of SIGFPE).
    fn div_ok(signed: bool, size: u32) -> impl FnMut(&mut Rng) -> Option<[u64; 4]> {
        move |r| {
            let (a, d, s) = (r.edge(), r.edge(), r.edge());
            let bits = size * 8;
            let m = if size == 8 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let (lo, hi) = if size == 1 {
                (a & 0xffff, 0)
            } else {
                (a & m, d & m)
            };
            let n = if size == 1 {
                lo as u128
            } else {
                ((hi as u128) << bits) | lo as u128
            };
            let dv = s & m;
            if dv == 0 {
                return None;
            }
            let fits = if signed {
                let n = if size == 8 {
                    n as i128
                } else {
                    sext(n as u64, 2 * bits)
                };
                let q = n.checked_div(sext(dv, bits))?;
                q >= -(1i128 << (bits - 1)) && q < (1i128 << (bits - 1))
            } else {
                n / dv as u128 <= m as u128
            };
            fits.then_some([a, d, r.edge(), s])
        }
    }

    #[test]
    fn host_div_idiv() {
        let u = ARITH;
        let mut n = 0;
        n += diff(
            "div8",
            host_fn!("div r8b"),
            &asm(|a| a.div(r8b)),
            u,
            div_ok(false, 1),
        );
        n += diff(
            "div16",
            host_fn!("div r8w"),
            &asm(|a| a.div(r8w)),
            u,
            div_ok(false, 2),
        );
        n += diff(
            "div32",
            host_fn!("div r8d"),
            &asm(|a| a.div(r8d)),
            u,
            div_ok(false, 4),
        );
        n += diff(
            "div64",
            host_fn!("div r8"),
            &asm(|a| a.div(r8)),
            u,
            div_ok(false, 8),
        );
        n += diff(
            "idiv8",
            host_fn!("idiv r8b"),
            &asm(|a| a.idiv(r8b)),
            u,
            div_ok(true, 1),
        );
        n += diff(
            "idiv16",
            host_fn!("idiv r8w"),
            &asm(|a| a.idiv(r8w)),
            u,
            div_ok(true, 2),
        );
        n += diff(
            "idiv32",
            host_fn!("idiv r8d"),
            &asm(|a| a.idiv(r8d)),
            u,
            div_ok(true, 4),
        );
        n += diff(
            "idiv64",
            host_fn!("idiv r8"),
            &asm(|a| a.idiv(r8)),
            u,
            div_ok(true, 8),
        );
        assert!(n > 5_000, "{n}");
    }

    fn run(code: &[u8], regs: [u64; 4], flags: u64) -> Result<crate::state::CpuState, Exception> {
        Rig::new(code).run(regs, flags)
    }

    fn arith(s: &crate::state::CpuState) -> u64 {
        s.rflags & ARITH
    }

    #[test]
    fn add_forms_and_flags() {
        // Accumulator form with imm8: 0x7f + 1 = 0x80 (OF, SF, AF; no CF); upper RAX kept.
        let s = run(&asm(|a| a.add(al, 1)), [0x1234_567f, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0x1234_5680);
        assert_eq!(arith(&s), OF | SF | AF);
        // Sign-extended imm8 with a 64-bit operand: -1 + 1 = 0 (CF, ZF, AF, PF).
        let s = run(&asm(|a| a.add(rax, -1)), [1, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0);
        assert_eq!(arith(&s), CF | ZF | AF | PF);
        // imm32 sign-extended to 64 bits.
        let s = run(
            &asm(|a| a.add(rax, -0x8000_0000i32)),
            [0x8000_0000, 0, 0, 0],
            0,
        )
        .unwrap();
        assert_eq!(s.gpr[0], 0);
        assert_eq!(arith(&s), CF | ZF | PF);
        // 32-bit destination zero-extends.
        let s = run(&asm(|a| a.add(eax, edx)), [u64::MAX, 1, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0);
        // 16-bit destination merges.
        let s = run(&asm(|a| a.add(ax, dx)), [0xdead_ffff, 1, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0xdead_0000);
        assert_eq!(arith(&s), CF | ZF | AF | PF);
        // High-byte registers.
        let s = run(&asm(|a| a.add(ah, dh)), [0x7f00, 0x0100, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0x8000);
        assert_eq!(arith(&s), OF | SF | AF);
    }

    #[test]
    fn memory_forms() {
        let mut r = Rig::new(&asm(|a| {
            a.add(qword_ptr(DATA), rax)?;
            a.sub(dword_ptr(DATA + 8), 5)?;
            a.adc(word_ptr(DATA + 16), 0x1234)?;
            a.sbb(byte_ptr(DATA + 24), 1)?;
            a.neg(qword_ptr(DATA + 32))?;
            a.inc(dword_ptr(DATA + 40))?;
            a.dec(word_ptr(DATA + 48))?;
            a.not(byte_ptr(DATA + 56))?;
            a.add(rdx, qword_ptr(DATA + 64))?;
            a.cmp(byte_ptr(DATA + 72), 3)
        }));
        let m = r.it.cpu.env.mem.clone();
        for (k, v) in [10u64, 3, 0xffff, 0, 7, 0xffff_ffff, 0, 0x0f, 40, 3]
            .iter()
            .enumerate()
        {
            m.write_u64(DATA + 8 * k as u64, *v).unwrap();
        }
        let s = r.run([5, 2, 0, 0], CF).unwrap();
        let q = |k: u64| m.read_u64(DATA + 8 * k).unwrap();
        assert_eq!(q(0), 15);
        // Only the operand's bytes change.
        assert_eq!(q(1), 0xffff_fffe);
        assert_eq!(q(2), 0x1234); // 0xffff + 0x1234 + CF (3 - 5 borrowed), wraps
        assert_eq!(q(3), 0xfe); // 0 - 1 - CF (the ADC carried)
        assert_eq!(q(4), 7u64.wrapping_neg());
        assert_eq!(q(5), 0);
        assert_eq!(q(6), 0xffff);
        assert_eq!(q(7), 0xf0);
        assert_eq!(s.gpr[2], 42);
        assert_eq!(arith(&s), ZF | PF);
    }

    #[test]
    fn adc_sbb_chains() {
        // 128-bit add: (2^64 - 1) + 1 carries into the high half.
        let s = run(
            &asm(|a| {
                a.add(rax, r8)?;
                a.adc(rdx, rcx)
            }),
            [u64::MAX, 5, 0, 1],
            0,
        )
        .unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (0, 6));
        assert_eq!(arith(&s), PF);
        // ADC with carry in: 0xff + 0 + 1 = 0 with CF, ZF, AF.
        let s = run(&asm(|a| a.adc(al, 0)), [0xff, 0, 0, 0], CF).unwrap();
        assert_eq!(s.gpr[0], 0);
        assert_eq!(arith(&s), CF | ZF | AF | PF);
        // ADC 0x7f + 0 + 1 overflows.
        let s = run(&asm(|a| a.adc(al, 0)), [0x7f, 0, 0, 0], CF).unwrap();
        assert_eq!(arith(&s), OF | SF | AF);
        // SBB 0 - 0 - 1 borrows.
        let s = run(&asm(|a| a.sbb(eax, 0)), [0, 0, 0, 0], CF).unwrap();
        assert_eq!(s.gpr[0], 0xffff_ffff);
        assert_eq!(arith(&s), CF | SF | AF | PF);
        // SBB x - x - 1 with x = max borrows too.
        let s = run(&asm(|a| a.sbb(rax, r8)), [u64::MAX, 0, 0, u64::MAX], CF).unwrap();
        assert_eq!(s.gpr[0], u64::MAX);
        assert_eq!(arith(&s) & CF, CF);
    }

    #[test]
    fn inc_dec_keep_cf() {
        let s = run(&asm(|a| a.inc(al)), [0xff, 0, 0, 0], CF).unwrap();
        assert_eq!(s.gpr[0], 0);
        assert_eq!(arith(&s), CF | ZF | AF | PF);
        let s = run(&asm(|a| a.inc(eax)), [0x7fff_ffff, 0, 0, 0], 0).unwrap();
        assert_eq!(arith(&s), OF | SF | AF | PF);
        let s = run(&asm(|a| a.dec(rax)), [0x8000_0000_0000_0000, 0, 0, 0], CF).unwrap();
        assert_eq!(s.gpr[0], 0x7fff_ffff_ffff_ffff);
        assert_eq!(arith(&s), CF | OF | AF | PF);
        let s = run(&asm(|a| a.dec(ch)), [0, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[1], 0xff00);
        assert_eq!(arith(&s), SF | AF | PF);
    }

    #[test]
    fn neg_edges() {
        let s = run(&asm(|a| a.neg(eax)), [0, 0, 0, 0], CF | OF).unwrap();
        assert_eq!(arith(&s), ZF | PF);
        let s = run(&asm(|a| a.neg(al)), [0x80, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], 0x80);
        assert_eq!(arith(&s), CF | OF | SF);
        let s = run(&asm(|a| a.neg(rax)), [1, 0, 0, 0], 0).unwrap();
        assert_eq!(s.gpr[0], u64::MAX);
        assert_eq!(arith(&s), CF | SF | AF | PF);
    }

    #[test]
    fn mul_imul_results() {
        // MUL r/m8 writes AX only.
        let s = run(&asm(|a| a.mul(r8b)), [0xaaaa_bbff, 0x77, 0, 0xff], 0).unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (0xaaaa_fe01, 0x77));
        assert_eq!(arith(&s), CF | OF);
        // MUL r/m32 zero-extends EDX and EAX; SF/ZF/AF/PF keep their old values (AMD).
        let s = run(
            &asm(|a| a.mul(r8d)),
            [0xffff_ffff_0000_0002, u64::MAX, 0, 3],
            ZF | AF,
        )
        .unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (6, 0));
        assert_eq!(arith(&s), ZF | AF);
        let s = run(&asm(|a| a.mul(qword_ptr(DATA))), [u64::MAX, 0, 0, 0], 0);
        let s = s.unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (0, 0));
        // IMUL one-operand: -1 * -1 = 1 fits.
        let s = run(&asm(|a| a.imul(r8)), [u64::MAX, 0, 0, u64::MAX], 0).unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (1, 0));
        assert_eq!(arith(&s), 0);
        // IMUL r/m16: -0x8000 * -1 = 0x8000 does not fit.
        let s = run(&asm(|a| a.imul(r8w)), [0x8000, 0xffff_0000, 0, 0xffff], 0).unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (0x8000, 0xffff_0000));
        assert_eq!(arith(&s), CF | OF);
        // Two- and three-operand forms truncate.
        let s = run(
            &asm(|a| a.imul_2(eax, dword_ptr(DATA))),
            [0x10000, 0, 0, 0],
            0,
        )
        .unwrap();
        assert_eq!(s.gpr[0], 0);
        let s = run(
            &asm(|a| a.imul_3(rdx, r8, -2)),
            [0, 0, 0, 0x4000_0000_0000_0000],
            0,
        )
        .unwrap();
        assert_eq!(s.gpr[2], 0x8000_0000_0000_0000);
        assert_eq!(arith(&s), 0);
        let s = run(
            &asm(|a| a.imul_3(dx, r8w, 300)),
            [0, 0xdead_0000, 0, 300],
            0,
        )
        .unwrap();
        assert_eq!(s.gpr[2], 0xdead_0000 | (90000u64 & 0xffff));
        assert_eq!(arith(&s), CF | OF);
    }

    fn de(code: &[u8], regs: [u64; 4]) {
        let mut r = Rig::new(code);
        assert_eq!(r.run(regs, 0), Err(Exception::new(DE)), "{regs:x?}");
        // Precise: nothing changed, RIP at the instruction.
        assert_eq!(r.it.cpu.s.gpr[0], regs[0]);
        assert_eq!(r.it.cpu.s.gpr[2], regs[1]);
        assert_eq!(r.it.cpu.s.rip, crate::testing::CODE);
    }

    #[test]
    fn divide_errors() {
        // Divide by zero at every size.
        de(&asm(|a| a.div(r8b)), [100, 0, 0, 0]);
        de(&asm(|a| a.div(r8w)), [100, 0, 0, 0]);
        de(&asm(|a| a.idiv(r8d)), [100, 0, 0, 0]);
        de(&asm(|a| a.idiv(r8)), [100, 0, 0, 0]);
        de(&asm(|a| a.div(qword_ptr(DATA))), [100, 0, 0, 0]);
        // Quotient overflow.
        de(&asm(|a| a.div(r8b)), [0x100, 0, 0, 1]);
        de(&asm(|a| a.div(r8w)), [0, 1, 0, 1]);
        de(&asm(|a| a.div(r8d)), [0, 5, 0, 5]);
        de(&asm(|a| a.div(r8)), [0, 1, 0, 1]);
        // Most negative value / -1.
        de(&asm(|a| a.idiv(r8b)), [0xff80, 0, 0, 0xff]);
        de(&asm(|a| a.idiv(r8w)), [0x8000, 0xffff, 0, 0xffff]);
        de(
            &asm(|a| a.idiv(r8d)),
            [0x8000_0000, 0xffff_ffff, 0, 0xffff_ffff],
        );
        de(&asm(|a| a.idiv(r8)), [1 << 63, u64::MAX, 0, u64::MAX]);
        // The 128-bit most negative dividend.
        de(&asm(|a| a.idiv(r8)), [0, 1 << 63, 0, u64::MAX]);
        // Positive quotient 0x80 does not fit in a signed byte.
        de(&asm(|a| a.idiv(r8b)), [0x80, 0, 0, 1]);
    }

    #[test]
    fn divide_results() {
        // -128 / 1 fits in a byte; remainder takes the dividend's sign.
        let s = run(&asm(|a| a.idiv(r8b)), [0xff80, 0, 0, 1], 0).unwrap();
        assert_eq!(s.gpr[0], 0x0080);
        let s = run(&asm(|a| a.idiv(cl)), [(-7i16) as u16 as u64, 0, 2, 0], 0).unwrap();
        assert_eq!(s.gpr[0] & 0xffff, 0xfffd); // AH = -1, AL = -3
                                               // 128/64 unsigned.
        let s = run(&asm(|a| a.div(r8)), [5, 3, 0, 4], CF | OF).unwrap();
        let n = (3u128 << 64) | 5;
        assert_eq!((s.gpr[0], s.gpr[2]), ((n / 4) as u64, (n % 4) as u64));
        assert_eq!(arith(&s), CF | OF | AF);
        // 32-bit division zero-extends both results.
        let s = run(
            &asm(|a| a.div(r8d)),
            [0xffff_ffff_0000_0007, 0xffff_ffff_0000_0000, 0, 2],
            0,
        )
        .unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (3, 1));
        assert_eq!(arith(&s), AF);
        // 16-bit division merges.
        let s = run(&asm(|a| a.div(r8w)), [0xaaaa_0007, 0xbbbb_0000, 0, 2], 0).unwrap();
        assert_eq!((s.gpr[0], s.gpr[2]), (0xaaaa_0003, 0xbbbb_0001));
    }

    #[test]
    fn lock_rules() {
        let ud = Err(Exception::new(UD));
        // LOCK ADD EAX, EBX: register destination.
        assert_eq!(run(&[0xf0, 0x01, 0xd8], [0; 4], 0).map(|_| ()), ud);
        // LOCK ADD [RAX], EBX is fine.
        let mut r = Rig::new(&[0xf0, 0x01, 0x18]);
        r.it.cpu.s.gpr[3] = 7;
        r.run([DATA, 0, 0, 0], 0).unwrap();
        assert_eq!(r.it.cpu.env.mem.read_u64(DATA).unwrap(), 7);
        // LOCK CMP [RAX], EBX and LOCK MUL are never valid.
        assert_eq!(run(&[0xf0, 0x39, 0x18], [DATA, 0, 0, 0], 0).map(|_| ()), ud);
        assert_eq!(run(&[0xf0, 0xf7, 0x20], [DATA, 0, 0, 0], 0).map(|_| ()), ud);
        // LOCK NEG/INC on memory are valid.
        run(&[0xf0, 0xf7, 0x18, 0xf0, 0xff, 0x00], [DATA, 0, 0, 0], 0).unwrap();
    }
}
