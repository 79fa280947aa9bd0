//! Data transfer: MOV forms, MOVZX/MOVSX/MOVSXD, LEA, XCHG, BSWAP, MOVBE, CMOVcc, PUSH/POP
//! (incl. PUSHA/POPA), XLAT, CBW…CQO, far pointer loads, NOP.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{ud, Flow};
use crate::flags::size_mask;
use crate::model::{feat, CpuModel};
use crate::state::{RAX, RBX, RDX, RSP, SS};

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Mov if matches!(
            crate::decode::reg_operand(i.op0_register()),
            Operand::Seg(_)
        ) =>
        {
            mov_to_seg
        }
        Mov if matches!(
            crate::decode::reg_operand(i.op0_register()),
            Operand::Cr(_) | Operand::Dr(_)
        ) || matches!(
            crate::decode::reg_operand(i.op1_register()),
            Operand::Cr(_) | Operand::Dr(_)
        ) =>
        {
            return None
        }
        Mov => mov,
        Movzx => movzx,
        Movsx | Movsxd => movsx,
        Lea => lea,
        Xchg => xchg,
        Bswap => bswap,
        Movbe if model.has_leaf1_ecx(feat::MOVBE) => movbe,
        Cmovo | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns
        | Cmovp | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg => cmov,
        Push => push,
        Pop if matches!(
            crate::decode::reg_operand(i.op0_register()),
            Operand::Seg(_)
        ) =>
        {
            pop_seg
        }
        Pop => pop,
        Pusha | Pushad => pusha,
        Popa | Popad => popa,
        Xlatb => xlat,
        Cbw | Cwde | Cdqe => cbw,
        Cwd | Cdq | Cqo => cwd,
        Lds | Les | Lfs | Lgs | Lss => load_far_pointer,
        Nop | Pause | Lfence | Sfence | Mfence | Prefetchnta | Prefetcht0 | Prefetcht1
        | Prefetcht2 | Prefetchw | Endbr32 | Endbr64 => nop,
        _ => return None,
    })
}

/// Loads of SS inhibit interrupts for one instruction; segment loads change bases.
pub fn ends_block(i: &Instruction) -> bool {
    use Mnemonic::*;
    match i.mnemonic() {
        Mov | Pop => matches!(
            crate::decode::reg_operand(i.op0_register()),
            Operand::Seg(_)
        ),
        Lss | Lds | Les | Lfs | Lgs => true,
        _ => false,
    }
}

fn nop(_: &mut Cpu, _: &Insn) -> Flow {
    Ok(())
}

fn mov(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.read_op(i, 1)?;
    c.write_op(i, 0, v)
}

fn mov_to_seg(c: &mut Cpu, i: &Insn) -> Flow {
    let Operand::Seg(s) = i.ops[0] else {
        return Err(ud());
    };
    if s as usize == crate::state::CS {
        return Err(ud());
    }
    let v = c.read_op(i, 1)? as u16;
    c.load_segment(s as usize, v)?;
    if s as usize == SS {
        c.s.events.interrupt_shadow = true;
    }
    c.break_block = true;
    Ok(())
}

fn movzx(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.read_op(i, 1)?;
    c.write_op(i, 0, v)
}

fn sign_extend(v: u64, size: u8) -> u64 {
    let shift = 64 - size as u32 * 8;
    (((v << shift) as i64) >> shift) as u64
}

fn movsx(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.read_op(i, 1)?;
    let v = sign_extend(v, Cpu::op_size(i, 1));
    c.write_op(i, 0, v & size_mask(i.osize))
}

fn lea(c: &mut Cpu, i: &Insn) -> Flow {
    let a = c.ea(i);
    c.write_op(i, 0, a & size_mask(i.osize))
}

fn xchg(c: &mut Cpu, i: &Insn) -> Flow {
    // The memory operand is loaded with write intent (a fault is reported as a write).
    let rd = |c: &mut Cpu, n: usize| match i.ops[n] {
        Operand::Mem { size } => {
            let lin = c.mem_linear(i)?;
            c.read_lin_rmw(lin, size)
        }
        _ => c.read_op(i, n),
    };
    let a = rd(c, 0)?;
    let b = rd(c, 1)?;
    // The memory side (if any) is written first so that a fault changes nothing.
    if matches!(i.ops[1], Operand::Mem { .. }) {
        c.write_op(i, 1, a)?;
        c.write_op(i, 0, b)
    } else {
        c.write_op(i, 0, b)?;
        c.write_op(i, 1, a)
    }
}

fn bswap(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.read_op(i, 0)?;
    let r = match i.osize {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        // BSWAP of a 16-bit register is undefined; processors clear it.
        _ => 0,
    };
    c.write_op(i, 0, r)
}

fn movbe(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.read_op(i, 1)?;
    let r = match i.osize {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        _ => (v as u16).swap_bytes() as u64,
    };
    c.write_op(i, 0, r)
}

fn cmov(c: &mut Cpu, i: &Insn) -> Flow {
    // The source is read (and may fault) whatever the condition.
    let v = c.read_op(i, 1)?;
    if c.condition(i.cc) {
        c.write_op(i, 0, v)
    } else if i.osize == 4 {
        // A 32-bit destination is zero-extended even when nothing moves.
        let d = c.read_op(i, 0)?;
        c.write_op(i, 0, d)
    } else {
        Ok(())
    }
}

fn push(c: &mut Cpu, i: &Insn) -> Flow {
    let v = match i.ops[0] {
        // PUSH RSP pushes the value before the push.
        Operand::Imm => i.imm & size_mask(i.osize),
        _ => c.read_op(i, 0)?,
    };
    c.push(i.osize, v)
}

fn pop(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let old_rsp = c.s.gpr[RSP];
    let v = c.pop(size)?;
    // A memory destination is addressed with the incremented RSP; restore it on a fault.
    if let Err(e) = c.write_op(i, 0, v) {
        c.s.gpr[RSP] = old_rsp;
        return Err(e);
    }
    Ok(())
}

fn pop_seg(c: &mut Cpu, i: &Insn) -> Flow {
    let Operand::Seg(s) = i.ops[0] else {
        return Err(ud());
    };
    let size = i.osize;
    let v = c.stack_peek(0, size)?;
    c.load_segment(s as usize, v as u16)?;
    c.stack_adjust(size as u64);
    if s as usize == SS {
        c.s.events.interrupt_shadow = true;
    }
    c.break_block = true;
    Ok(())
}

fn pusha(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let old_rsp = c.s.gpr[RSP];
    let regs = c.s.gpr;
    for (r, &reg) in regs.iter().enumerate().take(8) {
        let v = if r == RSP { old_rsp } else { reg };
        if let Err(e) = c.push(size, v & size_mask(size)) {
            c.s.gpr[RSP] = old_rsp;
            return Err(e);
        }
    }
    Ok(())
}

fn popa(c: &mut Cpu, i: &Insn) -> Flow {
    let size = i.osize;
    let mut vals = [0u64; 8];
    for (n, v) in vals.iter_mut().enumerate() {
        *v = c.stack_peek((7 - n as u64) * size as u64, size)?;
    }
    for (r, v) in vals.iter().enumerate() {
        if r != RSP {
            c.set_reg(r, size, *v);
        }
    }
    c.stack_adjust(8 * size as u64);
    Ok(())
}

fn xlat(c: &mut Cpu, i: &Insn) -> Flow {
    let off = (c.s.gpr[RBX].wrapping_add(c.s.gpr[RAX] & 0xff)) & size_mask(i.asize);
    let lin = c.seg_read_addr(i.mem.seg as usize, off, 1)?;
    let v = c.read_lin(lin, 1)?;
    c.set_reg(RAX, 1, v);
    Ok(())
}

fn cbw(c: &mut Cpu, i: &Insn) -> Flow {
    let half = i.osize / 2;
    let v = sign_extend(c.reg(RAX, half), half);
    c.set_reg(RAX, i.osize, v);
    Ok(())
}

fn cwd(c: &mut Cpu, i: &Insn) -> Flow {
    let v = c.reg(RAX, i.osize);
    let neg = v & crate::flags::sign_bit(i.osize) != 0;
    c.set_reg(RDX, i.osize, if neg { u64::MAX } else { 0 });
    Ok(())
}

fn load_far_pointer(c: &mut Cpu, i: &Insn) -> Flow {
    use iced_x86::Register;
    let size = i.osize;
    let lin = c.mem_read_addr(i, size + 2)?;
    let off = c.read_lin(lin, size)?;
    let sel_lin = if c.mode64 {
        lin.wrapping_add(size as u64)
    } else {
        (lin + size as u64) & 0xffff_ffff
    };
    let sel = c.read_lin(sel_lin, 2)? as u16;
    let seg = match i.raw.mnemonic() {
        Mnemonic::Les => crate::state::ES,
        Mnemonic::Lss => SS,
        Mnemonic::Lfs => crate::state::FS,
        Mnemonic::Lgs => crate::state::GS,
        _ => crate::state::DS,
    };
    let _ = Register::None;
    c.load_segment(seg, sel)?;
    if seg == SS {
        c.s.events.interrupt_shadow = true;
    }
    c.write_op(i, 0, off)
}
