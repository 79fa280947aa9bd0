//! Atomic read-modify-write instructions: XADD, CMPXCHG, CMPXCHG8B, CMPXCHG16B.
//!
//! One vCPU runs per interpreter thread and handlers run to completion, so LOCK needs no
//! host atomics here; it is only validated (memory destinations only).
//!
//! Register-width details measured on the reference host (AMD EPYC), 64-bit mode:
//! - CMPXCHG r/m32 success: the destination is written (a register is zero-extended), RAX is
//!   not touched (its upper half survives). Failure: EAX is loaded (zero-extending RAX); a
//!   register destination is not written (its upper half survives), a memory destination is
//!   written back with its own value (SDM), so a read-only page faults either way.
//! - CMPXCHG8B success leaves RAX/RDX untouched; failure loads EAX/EDX, zero-extending.

use iced_x86::{Instruction, Mnemonic, OpKind};

use crate::cpu::{Cpu, Loc};
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{gp0, ud, Flow};
use crate::flags::{size_mask, FlagOp};
use crate::interp::bits::write_faulted;
use crate::model::{feat, CpuModel};
use crate::state::rflags::ZF;
use crate::state::{RAX, RBX, RCX, RDX};

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    let reg_dest = i.op_count() > 0 && i.op0_kind() == OpKind::Register;
    Some(match i.mnemonic() {
        Xadd | Cmpxchg | Cmpxchg8b | Cmpxchg16b if i.has_lock_prefix() && reg_dest => undefined,
        Xadd => xadd,
        Cmpxchg => cmpxchg,
        Cmpxchg8b if model.leaf1_edx & feat::CX8 != 0 => cmpxchg8b,
        Cmpxchg16b if model.has_leaf1_ecx(feat::CX16) => cmpxchg16b,
        _ => return None,
    })
}

fn undefined(_: &mut Cpu, _: &Insn) -> Flow {
    Err(ud())
}

fn xadd(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let Operand::Reg { idx: src_reg, .. } = i.ops[1] else {
        // The source is always a register; AH..BH forms go through the generic path.
        return xadd_generic(c, i);
    };
    let loc = c.loc(i, 0)?;
    let d = c.read_loc_rmw(loc, size)?;
    let s = c.reg(src_reg as usize, size);
    let sum = d.wrapping_add(s) & size_mask(size);
    if let Loc::Mem(_) = loc {
        let w = c.write_loc(loc, size, sum);
        if write_faulted(&w) {
            return w;
        }
        c.set_reg(src_reg as usize, size, d);
        c.set_lazy(FlagOp::Add, size, d, s, sum);
        return w;
    }
    // Register destination: the source is written first, so XADD r, r (same register)
    // leaves the sum, as hardware does.
    c.set_reg(src_reg as usize, size, d);
    c.write_loc(loc, size, sum)?;
    c.set_lazy(FlagOp::Add, size, d, s, sum);
    Ok(())
}

/// XADD with a high-byte source register (AH, CH, DH, BH).
fn xadd_generic(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let loc = c.loc(i, 0)?;
    let src = c.loc(i, 1)?;
    let d = c.read_loc_rmw(loc, size)?;
    let s = c.read_loc(src, size)?;
    let sum = d.wrapping_add(s) & size_mask(size);
    let w = if let Loc::Mem(_) = loc {
        let w = c.write_loc(loc, size, sum);
        if write_faulted(&w) {
            return w;
        }
        c.write_loc(src, size, d)?;
        w
    } else {
        c.write_loc(src, size, d)?;
        c.write_loc(loc, size, sum)
    };
    c.set_lazy(FlagOp::Add, size, d, s, sum);
    w
}

fn cmpxchg(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let loc = c.loc(i, 0)?;
    let d = c.read_loc_rmw(loc, size)?;
    let acc = c.reg(RAX, size);
    let equal = acc == d;
    let w = if equal {
        let s = c.read_op(i, 1)?;
        c.write_loc(loc, size, s)
    } else if let Loc::Mem(_) = loc {
        c.write_loc(loc, size, d)
    } else {
        Ok(())
    };
    if write_faulted(&w) {
        return w;
    }
    if !equal {
        c.set_reg(RAX, size, d);
    }
    c.set_lazy(FlagOp::Sub, size, acc, d, acc.wrapping_sub(d));
    w
}

fn cmpxchg8b(c: &mut Cpu, i: &Insn) -> Flow {
    if !matches!(i.ops[0], Operand::Mem { .. }) {
        return Err(ud());
    }
    let lin = c.mem_write_addr(i, 8)?;
    let m = c.read_lin_rmw(lin, 8)?;
    let expected = (c.reg(RDX, 4) << 32) | c.reg(RAX, 4);
    let equal = m == expected;
    let new = if equal {
        (c.reg(RCX, 4) << 32) | c.reg(RBX, 4)
    } else {
        m
    };
    let w = c.write_lin(lin, 8, new);
    if write_faulted(&w) {
        return w;
    }
    if !equal {
        c.set_reg(RAX, 4, m & 0xffff_ffff);
        c.set_reg(RDX, 4, m >> 32);
    }
    c.set_flags_masked(ZF, crate::interp::bits::flag(equal, ZF));
    w
}

fn cmpxchg16b(c: &mut Cpu, i: &Insn) -> Flow {
    if !matches!(i.ops[0], Operand::Mem { .. }) {
        return Err(ud());
    }
    let lin = c.mem_write_addr(i, 16)?;
    if lin & 15 != 0 {
        return Err(gp0());
    }
    // Aligned: both halves are in one page, so the second access cannot fault alone.
    let lo = c.read_lin_rmw(lin, 8)?;
    let hi = c.read_lin_rmw(lin + 8, 8)?;
    let equal = lo == c.s.gpr[RAX] && hi == c.s.gpr[RDX];
    let (nlo, nhi) = if equal {
        (c.s.gpr[RBX], c.s.gpr[RCX])
    } else {
        (lo, hi)
    };
    let w = c.write_lin(lin, 8, nlo);
    if write_faulted(&w) {
        return w;
    }
    let w = c.write_lin(lin + 8, 8, nhi).and(w);
    if write_faulted(&w) {
        return w;
    }
    if !equal {
        c.s.gpr[RAX] = lo;
        c.s.gpr[RDX] = hi;
    }
    c.set_flags_masked(ZF, crate::interp::bits::flag(equal, ZF));
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::{GP, PF, UD};
    use crate::exec::{Interpreter, RunExit};
    use crate::interp::bits::tests::run64;
    use crate::state::rflags::{ARITH, CF, FIXED1, OF, PF as PFL, SF};
    use crate::testing::{machine64, CODE, DATA};
    use iced_x86::code_asm::*;

    fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        a.assemble(CODE).unwrap()
    }

    fn arith(it: &Interpreter) -> u64 {
        it.cpu.state().rflags & ARITH
    }

    fn make_read_only(it: &mut Interpreter) {
        let pde = 0x3000 + (DATA >> 21) * 8;
        it.cpu.env.mem.write_u64(pde, DATA | 0x81).unwrap();
        it.cpu.flush_tlb();
    }

    #[test]
    fn xadd_register_and_memory() {
        let mut it = machine64();
        it.cpu.s.gpr[0] = 0xffff_ffff_0000_0010;
        it.cpu.s.gpr[3] = 0xffff_ffff_ffff_fff0;
        assert_eq!(run64(&mut it, &asm(|a| a.xadd(eax, ebx))), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[0], 0);
        assert_eq!(it.cpu.s.gpr[3], 0x10);
        assert_eq!(arith(&it), CF | ZF | PFL);
        // Same register: the sum wins.
        it.cpu.s.gpr[1] = 0x10;
        assert_eq!(run64(&mut it, &asm(|a| a.xadd(rcx, rcx))), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[1], 0x20);
        // Memory, with LOCK, byte and a high-byte source.
        it.cpu.env.mem.write_u32(DATA, 0x7f).unwrap();
        it.cpu.s.gpr[0] = 0x0100;
        assert_eq!(
            run64(&mut it, &asm(|a| a.lock().xadd(byte_ptr(DATA), ah))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.env.mem.read_u32(DATA).unwrap(), 0x80);
        assert_eq!(it.cpu.s.gpr[0], 0x7f00);
        assert_eq!(arith(&it), OF | SF | crate::state::rflags::AF);
        // 16-bit memory.
        it.cpu.s.gpr[2] = 0xaaaa_0001;
        assert_eq!(
            run64(&mut it, &asm(|a| a.xadd(word_ptr(DATA), dx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.env.mem.read_u32(DATA).unwrap(), 0x81);
        assert_eq!(it.cpu.s.gpr[2], 0xaaaa_0080);
    }

    #[test]
    fn xadd_fault_changes_nothing() {
        let mut it = machine64();
        make_read_only(&mut it);
        it.cpu.s.gpr[3] = 5;
        it.cpu.set_rflags(FIXED1 | CF);
        let r = run64(&mut it, &asm(|a| a.xadd(qword_ptr(DATA), rbx)));
        assert!(matches!(r, RunExit::Exception(e) if e.vector == PF));
        assert_eq!(it.cpu.s.gpr[3], 5);
        assert_eq!(arith(&it), CF);
        assert_eq!(it.cpu.s.rip, CODE);
    }

    #[test]
    fn cmpxchg_register_widths() {
        let mut it = machine64();
        // 32-bit success: destination zero-extended, RAX untouched.
        it.cpu.s.gpr[0] = 0xaaaa_aaaa_0000_0005;
        it.cpu.s.gpr[3] = 0xbbbb_bbbb_0000_0005;
        it.cpu.s.gpr[1] = 0xcccc_cccc_0000_0009;
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg(ebx, ecx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 0xaaaa_aaaa_0000_0005);
        assert_eq!(it.cpu.s.gpr[3], 9);
        assert_eq!(arith(&it), ZF | PFL);
        // 32-bit failure: EAX loaded (zero-extended), destination not written.
        it.cpu.s.gpr[3] = 0xbbbb_bbbb_0000_0007;
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg(ebx, ecx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 7);
        assert_eq!(it.cpu.s.gpr[3], 0xbbbb_bbbb_0000_0007);
        // 5 - 7 = 0xffff_fffe: CF, SF, AF (PF is odd).
        it.cpu.s.gpr[0] = 5;
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg(ebx, ecx))),
            RunExit::Halted
        );
        assert_eq!(arith(&it), CF | SF | crate::state::rflags::AF);
        // 16-bit failure merges AX.
        it.cpu.s.gpr[0] = 0xaaaa_aaaa_aaaa_0005;
        it.cpu.s.gpr[3] = 0xbbbb_bbbb_bbbb_0007;
        assert_eq!(run64(&mut it, &asm(|a| a.cmpxchg(bx, cx))), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[0], 0xaaaa_aaaa_aaaa_0007);
        // CMPXCHG RAX, RCX with equal accumulator: RAX gets RCX.
        it.cpu.s.gpr[0] = 0x10;
        it.cpu.s.gpr[1] = 0x99;
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg(rax, rcx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 0x99);
        // Byte form with AH.
        it.cpu.s.gpr[0] = 0x3344;
        it.cpu.s.gpr[2] = 0x44;
        assert_eq!(run64(&mut it, &asm(|a| a.cmpxchg(dl, ah))), RunExit::Halted);
        assert_eq!(it.cpu.s.gpr[2], 0x33);
        assert_eq!(arith(&it), ZF | PFL);
    }

    #[test]
    fn cmpxchg_memory_and_read_only_failure() {
        let mut it = machine64();
        it.cpu.env.mem.write_u64(DATA, 5).unwrap();
        it.cpu.s.gpr[0] = 0xaaaa_aaaa_0000_0005;
        it.cpu.s.gpr[1] = 9;
        assert_eq!(
            run64(&mut it, &asm(|a| a.lock().cmpxchg(dword_ptr(DATA), ecx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.env.mem.read_u64(DATA).unwrap(), 9);
        assert_eq!(arith(&it) & ZF, ZF);
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg(qword_ptr(DATA), rcx))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 9);
        assert_eq!(arith(&it) & ZF, 0);
        // Failure on a read-only page still faults (the value is written back), and
        // nothing changes.
        make_read_only(&mut it);
        it.cpu.s.gpr[0] = 1;
        it.cpu.set_rflags(FIXED1);
        let r = run64(&mut it, &asm(|a| a.cmpxchg(qword_ptr(DATA), rcx)));
        assert!(matches!(r, RunExit::Exception(e) if e.vector == PF));
        assert_eq!(it.cpu.s.gpr[0], 1);
        assert_eq!(arith(&it), 0);
    }

    #[test]
    fn cmpxchg8b_success_and_failure() {
        let mut it = machine64();
        it.cpu
            .env
            .mem
            .write_u64(DATA, 0x0000_0006_0000_0005)
            .unwrap();
        it.cpu.s.gpr[0] = 0xaaaa_aaaa_0000_0005;
        it.cpu.s.gpr[2] = 0xdddd_dddd_0000_0006;
        it.cpu.s.gpr[3] = 0xeeee_eeee_1111_1111;
        it.cpu.s.gpr[1] = 0xffff_ffff_2222_2222;
        it.cpu.set_rflags(FIXED1 | CF | OF);
        assert_eq!(
            run64(&mut it, &asm(|a| a.lock().cmpxchg8b(qword_ptr(DATA)))),
            RunExit::Halted
        );
        assert_eq!(
            it.cpu.env.mem.read_u64(DATA).unwrap(),
            0x2222_2222_1111_1111
        );
        assert_eq!(it.cpu.s.gpr[0], 0xaaaa_aaaa_0000_0005);
        assert_eq!(it.cpu.s.gpr[2], 0xdddd_dddd_0000_0006);
        assert_eq!(arith(&it), CF | OF | ZF);
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg8b(qword_ptr(DATA)))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 0x1111_1111);
        assert_eq!(it.cpu.s.gpr[2], 0x2222_2222);
        assert_eq!(arith(&it), CF | OF);
        // Unaligned, crossing a page: fine for CMPXCHG8B.
        it.cpu
            .env
            .mem
            .write(DATA + 0xffc, &[1, 0, 0, 0, 2, 0, 0, 0])
            .unwrap();
        it.cpu.s.gpr[0] = 1;
        it.cpu.s.gpr[2] = 2;
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg8b(qword_ptr(DATA + 0xffc)))),
            RunExit::Halted
        );
        assert_eq!(arith(&it) & ZF, ZF);
        assert_eq!(it.cpu.env.mem.read_u32(DATA + 0x1000).unwrap(), 0x2222_2222);
    }

    #[test]
    fn cmpxchg16b_alignment_and_results() {
        let mut it = machine64();
        it.cpu.env.mem.write_u64(DATA + 0x10, 0x1111).unwrap();
        it.cpu.env.mem.write_u64(DATA + 0x18, 0x2222).unwrap();
        it.cpu.s.gpr[0] = 0x1111;
        it.cpu.s.gpr[2] = 0x2222;
        it.cpu.s.gpr[3] = 0x3333_0000_0000_0000;
        it.cpu.s.gpr[1] = 0x4444_0000_0000_0000;
        assert_eq!(
            run64(
                &mut it,
                &asm(|a| a.lock().cmpxchg16b(xmmword_ptr(DATA + 0x10)))
            ),
            RunExit::Halted
        );
        assert_eq!(
            it.cpu.env.mem.read_u64(DATA + 0x10).unwrap(),
            0x3333_0000_0000_0000
        );
        assert_eq!(
            it.cpu.env.mem.read_u64(DATA + 0x18).unwrap(),
            0x4444_0000_0000_0000
        );
        assert_eq!(arith(&it) & ZF, ZF);
        assert_eq!(
            run64(&mut it, &asm(|a| a.cmpxchg16b(xmmword_ptr(DATA + 0x10)))),
            RunExit::Halted
        );
        assert_eq!(it.cpu.s.gpr[0], 0x3333_0000_0000_0000);
        assert_eq!(it.cpu.s.gpr[2], 0x4444_0000_0000_0000);
        assert_eq!(arith(&it) & ZF, 0);
        let r = run64(&mut it, &asm(|a| a.cmpxchg16b(xmmword_ptr(DATA + 0x8))));
        assert_eq!(
            r,
            RunExit::Exception(crate::exception::Exception::with_code(GP, 0))
        );
        // Without CX16 in the model there is no handler.
        let mut m = CpuModel::max();
        m.leaf1_ecx &= !feat::CX16;
        let raw = iced_x86::Decoder::new(64, &[0x48, 0x0f, 0xc7, 0x0e], 0).decode();
        assert_eq!(raw.mnemonic(), Mnemonic::Cmpxchg16b);
        assert!(lookup(&raw, &m).is_none());
        assert!(lookup(&raw, &CpuModel::max()).is_some());
    }

    #[test]
    fn invalid_forms_raise_ud() {
        // LOCK CMPXCHG ECX, EBX; LOCK XADD EAX, EBX; CMPXCHG8B with a register operand.
        for bytes in [
            &[0xf0u8, 0x0f, 0xb1, 0xd9][..],
            &[0xf0, 0x0f, 0xc1, 0xd8],
            &[0x0f, 0xc7, 0xc8],
        ] {
            let mut it = machine64();
            let r = run64(&mut it, bytes);
            assert!(
                matches!(r, RunExit::Exception(e) if e.vector == UD),
                "{bytes:x?}: {r:?}"
            );
        }
    }
}
