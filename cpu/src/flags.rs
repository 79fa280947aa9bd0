//! Lazy arithmetic flags: the last flag-setting operation, its operands and result are kept,
//! and a flag is computed only when something reads it.

use crate::state::rflags::*;

/// The operation whose flags are pending. `Eager` means RFLAGS holds them already.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlagOp {
    #[default]
    Eager,
    Add,
    /// ADC: `aux` holds the carry in.
    Adc,
    Sub,
    /// SBB: `aux` holds the borrow in.
    Sbb,
    /// AND/OR/XOR/TEST: CF = OF = 0, AF = 0.
    Logic,
    /// INC: `aux` holds the preserved CF.
    Inc,
    /// DEC: `aux` holds the preserved CF.
    Dec,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LazyFlags {
    pub op: FlagOp,
    /// Operand size in bytes.
    pub size: u8,
    pub a: u64,
    pub b: u64,
    pub res: u64,
    pub aux: u64,
}

#[inline]
pub fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

#[inline]
pub fn sign_bit(size: u8) -> u64 {
    1u64 << (size as u32 * 8 - 1)
}

/// Even parity of the low byte (PF's definition).
#[inline]
pub fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

/// `flag` if `cond`, else 0.
#[inline(always)]
pub fn flag_if(cond: bool, flag: u64) -> u64 {
    if cond {
        flag
    } else {
        0
    }
}

/// SF, ZF and PF of a result of `size` bytes, for handlers that compute flags eagerly.
#[inline]
pub fn szp(size: u8, r: u64) -> u64 {
    flag_if(parity(r), PF)
        | flag_if(r & size_mask(size) == 0, ZF)
        | flag_if(r & sign_bit(size) != 0, SF)
}

impl LazyFlags {
    #[inline]
    pub fn set(&mut self, op: FlagOp, size: u8, a: u64, b: u64, res: u64) {
        self.op = op;
        self.size = size;
        self.a = a;
        self.b = b;
        self.res = res;
    }

    #[inline]
    pub fn zf(&self, rflags: u64) -> bool {
        match self.op {
            FlagOp::Eager => rflags & ZF != 0,
            _ => self.res & size_mask(self.size) == 0,
        }
    }

    #[inline]
    pub fn sf(&self, rflags: u64) -> bool {
        match self.op {
            FlagOp::Eager => rflags & SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }

    #[inline]
    pub fn cf(&self, rflags: u64) -> bool {
        let m = size_mask(self.size);
        let (a, b, r) = (self.a & m, self.b & m, self.res & m);
        match self.op {
            FlagOp::Eager => rflags & CF != 0,
            FlagOp::Add => r < a,
            FlagOp::Adc => r < a || (self.aux != 0 && r == a),
            FlagOp::Sub => a < b,
            FlagOp::Sbb => (a as u128) < (b as u128) + (self.aux as u128),
            FlagOp::Logic => false,
            FlagOp::Inc | FlagOp::Dec => self.aux != 0,
        }
    }

    #[inline]
    pub fn of(&self, rflags: u64) -> bool {
        // Eager first: `size` is meaningless (0 after reset) until a lazy op sets it.
        if self.op == FlagOp::Eager {
            return rflags & OF != 0;
        }
        let s = sign_bit(self.size);
        let (a, b, r) = (self.a, self.b, self.res);
        match self.op {
            FlagOp::Eager => rflags & OF != 0,
            FlagOp::Add | FlagOp::Adc => (a ^ r) & (b ^ r) & s != 0,
            FlagOp::Sub | FlagOp::Sbb => (a ^ b) & (a ^ r) & s != 0,
            FlagOp::Logic => false,
            FlagOp::Inc => r & size_mask(self.size) == s,
            FlagOp::Dec => r & size_mask(self.size) == s - 1,
        }
    }

    #[inline]
    pub fn pf(&self, rflags: u64) -> bool {
        match self.op {
            FlagOp::Eager => rflags & PF != 0,
            _ => parity(self.res),
        }
    }

    #[inline]
    pub fn af(&self, rflags: u64) -> bool {
        match self.op {
            FlagOp::Eager => rflags & AF != 0,
            FlagOp::Logic => false,
            FlagOp::Inc => self.res & 0xf == 0,
            FlagOp::Dec => self.res & 0xf == 0xf,
            _ => (self.a ^ self.b ^ self.res) & 0x10 != 0,
        }
    }

    /// RFLAGS with the pending arithmetic flags filled in.
    #[inline]
    pub fn materialize(&self, rflags: u64) -> u64 {
        if self.op == FlagOp::Eager {
            return rflags;
        }
        let mut f = rflags & !ARITH;
        f |= (self.cf(rflags) as u64) * CF;
        f |= (self.pf(rflags) as u64) * PF;
        f |= (self.af(rflags) as u64) * AF;
        f |= (self.zf(rflags) as u64) * ZF;
        f |= (self.sf(rflags) as u64) * SF;
        f |= (self.of(rflags) as u64) * OF;
        f
    }

    /// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline]
    pub fn condition(&self, rflags: u64, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(rflags),
            1 => self.cf(rflags),
            2 => self.zf(rflags),
            3 => self.cf(rflags) || self.zf(rflags),
            4 => self.sf(rflags),
            5 => self.pf(rflags),
            6 => self.sf(rflags) != self.of(rflags),
            _ => self.zf(rflags) || (self.sf(rflags) != self.of(rflags)),
        };
        r ^ (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(op: FlagOp, size: u8, a: u64, b: u64, res: u64, aux: u64) -> u64 {
        let lf = LazyFlags {
            op,
            size,
            a,
            b,
            res,
            aux,
        };
        lf.materialize(FIXED1) & ARITH
    }

    #[test]
    fn add_overflow_and_carry() {
        // 0x7f + 1 = 0x80: OF, SF, AF; no CF.
        assert_eq!(flags(FlagOp::Add, 1, 0x7f, 1, 0x80, 0), OF | SF | AF);
        // 0xff + 1 = 0x100: CF, ZF, AF, PF.
        assert_eq!(flags(FlagOp::Add, 1, 0xff, 1, 0x100, 0), CF | ZF | AF | PF);
    }

    #[test]
    fn sub_borrow() {
        // 0 - 1 = 0xffff_ffff: CF, SF, AF, PF.
        assert_eq!(
            flags(FlagOp::Sub, 4, 0, 1, 0xffff_ffff, 0),
            CF | SF | AF | PF
        );
    }

    #[test]
    fn eager_conditions_before_any_lazy_op() {
        // A fresh LazyFlags has size 0: reading OF (JO, JL, CMOVLE…) must not compute a
        // sign bit for it.
        let lf = LazyFlags::default();
        assert!(lf.condition(FIXED1 | OF, 0x0)); // O
        assert!(lf.condition(FIXED1 | OF, 0xc)); // L: SF != OF
        assert!(!lf.condition(FIXED1 | OF | SF, 0xc));
    }

    #[test]
    fn conditions() {
        let lf = LazyFlags {
            op: FlagOp::Sub,
            size: 4,
            a: 1,
            b: 2,
            res: u32::MAX as u64,
            aux: 0,
        };
        assert!(lf.condition(FIXED1, 0x2)); // B
        assert!(lf.condition(FIXED1, 0xc)); // L
        assert!(!lf.condition(FIXED1, 0x4)); // E
        assert!(lf.condition(FIXED1, 0x5)); // NE
    }
}
