//! Logical operations: AND, OR, XOR, TEST (lazy `FlagOp::Logic` flags: CF = OF = 0, SF/ZF/PF
//! from the result) and NOT (no flags).
//!
//! AF is undefined after AND/OR/XOR/TEST; the AMD host (EPYC, Zen 4) clears it, which is
//! what `FlagOp::Logic` produces (Intel processors clear it too). Checked natively by the
//! `host_*` differential tests in arith.rs's test module.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Flow};
use crate::flags::FlagOp;
use crate::interp::arith::{rmw, src};
use crate::model::CpuModel;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        And => and,
        Or => or,
        Xor => xor,
        Not => not,
        Test => test,
        _ => return None,
    })
}

fn and(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a & b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn or(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a | b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn xor(c: &mut Cpu, i: &Insn) -> Flow {
    let b = src(c, i)?;
    let (_, r) = rmw(c, i, |a| a ^ b)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, r);
    Ok(())
}

fn not(c: &mut Cpu, i: &Insn) -> Flow {
    rmw(c, i, |a| !a)?;
    Ok(())
}

fn test(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock {
        return Err(ud());
    }
    let a = c.read_op(i, 0)?;
    let b = src(c, i)?;
    c.set_lazy(FlagOp::Logic, i.osize, 0, 0, a & b);
    Ok(())
}
