//! Control transfer: JMP/CALL/RET (near and far), Jcc, LOOPcc, JCXZ/JECXZ/JRCXZ,
//! ENTER/LEAVE, INT n/INT3/INTO/INT1 and IRET.

use iced_x86::{Code, Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{gp0, Flow, Trap, BP, DB, OF};
use crate::flags::size_mask;
use crate::interrupts::{Delivery, EventKind};
use crate::model::CpuModel;
use crate::state::{cr0, rflags, Segment, CS, RBP, RCX, RSP, SS};

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Jmp => match i.code() {
            Code::Jmp_ptr1616 | Code::Jmp_ptr1632 => jmp_far_direct,
            Code::Jmp_m1616 | Code::Jmp_m1632 | Code::Jmp_m1664 => jmp_far_indirect,
            _ => jmp,
        },
        Call => match i.code() {
            Code::Call_ptr1616 | Code::Call_ptr1632 => call_far_direct,
            Code::Call_m1616 | Code::Call_m1632 | Code::Call_m1664 => call_far_indirect,
            _ => call,
        },
        Ret => ret,
        Retf => retf,
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => {
            jcc
        }
        Loop => loop_,
        Loope => loope,
        Loopne => loopne,
        Jcxz | Jecxz | Jrcxz => jcxz,
        Enter => enter,
        Leave => leave,
        Int => int_n,
        Int3 => int3,
        Into => into,
        Int1 => int1,
        Iret | Iretd | Iretq => iret,
        _ => return None,
    })
}

/// Operand size of a near branch: 64-bit code always uses 64 (Intel ignores 0x66 there).
#[inline]
fn near_size(c: &Cpu, i: &Insn) -> u8 {
    if c.mode64 {
        8
    } else {
        match i.raw.code() {
            Code::Jmp_rel16 | Code::Call_rel16 => 2,
            Code::Jmp_rel32_32 | Code::Call_rel32_32 => 4,
            _ => i.osize.clamp(2, 4),
        }
    }
}

#[inline]
fn rel_target(c: &Cpu, i: &Insn) -> u64 {
    c.next_rip.wrapping_add(i.rel)
}

fn jmp(c: &mut Cpu, i: &Insn) -> Flow {
    let size = near_size(c, i);
    let target = match i.ops[0] {
        Operand::Reg { .. } | Operand::Mem { .. } => c.read_op(i, 0)?,
        _ => rel_target(c, i),
    };
    c.jump_near(target, size)
}

fn jcc(c: &mut Cpu, i: &Insn) -> Flow {
    if c.condition(i.cc) {
        let t = rel_target(c, i);
        c.jump_near(t, near_size(c, i))
    } else {
        Ok(())
    }
}

fn call(c: &mut Cpu, i: &Insn) -> Flow {
    let size = near_size(c, i);
    let target = match i.ops[0] {
        Operand::Reg { .. } | Operand::Mem { .. } => c.read_op(i, 0)?,
        _ => rel_target(c, i),
    };
    let ret = c.next_rip;
    c.jump_near(target, size)?;
    c.push(size, ret & size_mask(size))
}

fn ret(c: &mut Cpu, i: &Insn) -> Flow {
    let size = near_size(c, i);
    let target = c.stack_peek(0, size)?;
    c.jump_near(target, size)?;
    c.stack_adjust(size as u64 + (i.imm & 0xffff));
    Ok(())
}

/// Operand size of a far transfer: from the encoding (REX.W selects 64, 0x66 16).
fn far_size(i: &Insn) -> u8 {
    match i.raw.code() {
        Code::Jmp_m1616 | Code::Call_m1616 | Code::Jmp_ptr1616 | Code::Call_ptr1616 => 2,
        Code::Jmp_m1664 | Code::Call_m1664 => 8,
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfq | Code::Retfq_imm16 => 8,
        _ => 4,
    }
}

fn jmp_far_direct(c: &mut Cpu, i: &Insn) -> Flow {
    c.load_cs_far(i.imm2 as u16, i.imm, far_size(i))
}

fn read_far_pointer(c: &mut Cpu, i: &Insn, size: u8) -> Result<(u16, u64), Trap> {
    let lin = c.mem_read_addr(i, size + 2)?;
    let off = c.read_lin(lin, size)?;
    let sel = c.read_lin(lin.wrapping_add(size as u64), 2)? as u16;
    Ok((sel, off))
}

fn jmp_far_indirect(c: &mut Cpu, i: &Insn) -> Flow {
    let size = far_size(i);
    let (sel, off) = read_far_pointer(c, i, size)?;
    c.load_cs_far(sel, off, size)
}

fn call_far(c: &mut Cpu, sel: u16, off: u64, size: u8) -> Flow {
    c.far_transfer(sel, off, size, true)
}

fn call_far_direct(c: &mut Cpu, i: &Insn) -> Flow {
    call_far(c, i.imm2 as u16, i.imm, far_size(i))
}

fn call_far_indirect(c: &mut Cpu, i: &Insn) -> Flow {
    let size = far_size(i);
    let (sel, off) = read_far_pointer(c, i, size)?;
    call_far(c, sel, off, size)
}

fn retf(c: &mut Cpu, i: &Insn) -> Flow {
    c.far_return(far_size(i), i.imm & 0xffff)
}

fn loop_branch(c: &mut Cpu, i: &Insn, taken: bool) -> Flow {
    if taken {
        let t = rel_target(c, i);
        let size = if c.mode64 { 8 } else { i.osize.clamp(2, 4) };
        c.jump_near(t, size)
    } else {
        Ok(())
    }
}

fn set_count(c: &mut Cpu, i: &Insn) -> u64 {
    // LOOP's counter is CX, ECX or RCX by address size; ECX writes zero-extend as usual.
    let n = c.reg(RCX, i.asize).wrapping_sub(1) & size_mask(i.asize);
    c.set_reg(RCX, i.asize, n);
    n
}

fn loop_(c: &mut Cpu, i: &Insn) -> Flow {
    let n = set_count(c, i);
    loop_branch(c, i, n != 0)
}

fn loope(c: &mut Cpu, i: &Insn) -> Flow {
    let n = set_count(c, i);
    let zf = c.lf.zf(c.s.rflags);
    loop_branch(c, i, n != 0 && zf)
}

fn loopne(c: &mut Cpu, i: &Insn) -> Flow {
    let n = set_count(c, i);
    let zf = c.lf.zf(c.s.rflags);
    loop_branch(c, i, n != 0 && !zf)
}

fn jcxz(c: &mut Cpu, i: &Insn) -> Flow {
    let size = match i.raw.mnemonic() {
        Mnemonic::Jcxz => 2,
        Mnemonic::Jecxz => 4,
        _ => 8,
    };
    let zero = c.reg(RCX, size) == 0;
    loop_branch(c, i, zero)
}

fn enter(c: &mut Cpu, i: &Insn) -> Flow {
    let size = if c.mode64 {
        if i.osize == 2 {
            2
        } else {
            8
        }
    } else {
        i.osize
    };
    let alloc = i.imm & 0xffff;
    let level = i.imm2 & 0x1f;
    let (old_rsp, old_rbp) = (c.s.gpr[RSP], c.s.gpr[RBP]);
    let r = (|| {
        c.push(size, old_rbp & size_mask(size))?;
        let frame = c.s.gpr[RSP];
        let ss = c.stack_size();
        let mut bp = old_rbp;
        if level > 0 {
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64) & size_mask(ss);
                let lin = c.seg_read_addr(SS, bp, size)?;
                let v = c.read_lin(lin, size)?;
                c.push(size, v)?;
            }
            c.push(size, frame & size_mask(size))?;
        }
        // Touch the lowest byte of the new frame so that a stack fault happens here; the
        // probe is a write for paging (hardware reports a not-present page with W=1).
        let new_sp = c.s.gpr[RSP].wrapping_sub(alloc) & size_mask(ss);
        if alloc > 0 {
            let lin = c.seg_write_addr(SS, new_sp, 1)?;
            let b = c.read_lin_rmw(lin, 1)?;
            c.write_lin(lin, 1, b)?;
        }
        c.set_reg(RBP, size, frame);
        c.stack_adjust(alloc.wrapping_neg());
        Ok(())
    })();
    if r.is_err() {
        c.s.gpr[RSP] = old_rsp;
        c.s.gpr[RBP] = old_rbp;
    }
    r
}

fn leave(c: &mut Cpu, i: &Insn) -> Flow {
    let size = if c.mode64 {
        if i.osize == 2 {
            2
        } else {
            8
        }
    } else {
        i.osize
    };
    let ss = c.stack_size();
    let old_rsp = c.s.gpr[RSP];
    c.set_reg(RSP, ss, c.s.gpr[RBP]);
    match c.pop(size) {
        Ok(v) => {
            c.set_reg(RBP, size, v);
            Ok(())
        }
        Err(e) => {
            c.s.gpr[RSP] = old_rsp;
            Err(e)
        }
    }
}

/// Delivers a software interrupt whose return address is the next instruction.
fn soft_interrupt(c: &mut Cpu, vector: u8, kind: EventKind) -> Flow {
    let saved_rip = c.s.rip;
    c.s.rip = c.next_rip;
    match c.deliver_event(Delivery {
        vector,
        error_code: None,
        kind,
    }) {
        Ok(()) => {
            c.next_rip = c.s.rip;
            c.stats.interrupts += 1;
            Ok(())
        }
        Err(e) => {
            c.s.rip = saved_rip;
            Err(e)
        }
    }
}

fn int_n(c: &mut Cpu, i: &Insn) -> Flow {
    if c.s.rflags & rflags::VM != 0 {
        return Err(Trap::Unsupported("virtual-8086 mode"));
    }
    soft_interrupt(c, i.imm as u8, EventKind::Software)
}

fn int3(c: &mut Cpu, _i: &Insn) -> Flow {
    soft_interrupt(c, BP, EventKind::Software)
}

fn into(c: &mut Cpu, _i: &Insn) -> Flow {
    if c.lf.of(c.s.rflags) {
        soft_interrupt(c, OF, EventKind::Software)
    } else {
        Ok(())
    }
}

fn int1(c: &mut Cpu, _i: &Insn) -> Flow {
    soft_interrupt(c, DB, EventKind::External)
}

fn iret(c: &mut Cpu, i: &Insn) -> Flow {
    // IRET ends NMI blocking, even when it then faults (SDM vol. 3, 6.7.1).
    c.s.events.nmi_masked = false;
    let size = match i.raw.mnemonic() {
        Mnemonic::Iretq => 8,
        Mnemonic::Iretd => 4,
        _ => 2,
    };
    // IRET unblocks NMIs, even when it then faults (SDM vol. 3 §6.7.1).
    c.s.events.nmi_masked = false;
    if c.s.rflags & rflags::VM != 0 {
        return Err(Trap::Unsupported(
            "virtual-8086 mode (IRET in virtual-8086 mode)",
        ));
    }
    if c.s.cr0 & cr0::PE == 0 {
        return iret_real(c, size);
    }
    if c.s.rflags & rflags::NT != 0 {
        if c.s.long_mode_active() {
            return Err(gp0());
        }
        return c.iret_task_return();
    }
    iret_protected(c, size)
}

fn iret_real(c: &mut Cpu, size: u8) -> Flow {
    let ip = c.stack_peek(0, size)?;
    let cs = c.stack_peek(size as u64, size)? as u16;
    let fl = c.stack_peek(2 * size as u64, size)?;
    c.jump_near(ip, size)?;
    c.s.seg[CS] = Segment {
        selector: cs,
        base: (cs as u64) << 4,
        ..c.s.seg[CS]
    };
    c.stack_adjust(3 * size as u64);
    let keep = if size == 2 {
        !0xffffu64
    } else {
        rflags::VM | rflags::VIF | rflags::VIP
    };
    let old = c.rflags();
    c.set_rflags((old & keep) | (fl & !keep));
    c.update_mode();
    Ok(())
}

/// The RFLAGS bits an IRET at `cpl` may change (SDM vol. 2, IRET).
fn iret_flag_mask(old: u64, cpl: u8, size: u8) -> u64 {
    let iopl = ((old & rflags::IOPL) >> 12) as u8;
    let mut mask =
        rflags::ARITH | rflags::TF | rflags::DF | rflags::NT | rflags::RF | rflags::AC | rflags::ID;
    if cpl == 0 {
        mask |= rflags::IOPL | rflags::VIF | rflags::VIP;
    }
    if cpl <= iopl {
        mask |= rflags::IF;
    }
    if size == 2 {
        mask &= 0xffff;
    }
    mask
}

/// IRET/IRETQ in protected and long mode without a task return: to the same or an outer
/// privilege level (in 64-bit mode SS:RSP is always popped).
fn iret_protected(c: &mut Cpu, size: u8) -> Flow {
    let sz = size as u64;
    let ip = c.stack_peek(0, size)?;
    let cs_sel = c.stack_peek(sz, size)? as u16;
    let fl = c.stack_peek(2 * sz, size)?;
    let cpl = c.s.cpl();
    let lma = c.s.long_mode_active();
    if !lma && size == 4 && cpl == 0 && fl & rflags::VM != 0 {
        return Err(Trap::Unsupported(
            "virtual-8086 mode (IRET to a frame with EFLAGS.VM=1)",
        ));
    }
    let code = c.return_code_segment(cs_sel, cpl)?;
    let rpl = (cs_sel & 3) as u8;
    let to64 = lma && code.long();
    let target = c.far_target(&code, ip, size)?;
    let outer = rpl > cpl || c.mode64;
    let ss = if outer {
        let new_sp = c.stack_peek(3 * sz, size)?;
        let ss_sel = c.stack_peek(4 * sz, size)? as u16;
        Some((c.return_stack_segment(ss_sel, rpl, to64)?, new_sp))
    } else {
        None
    };
    let old = c.rflags();
    let mask = iret_flag_mask(old, cpl, size);
    c.s.seg[CS] = code;
    match ss {
        Some((seg, sp)) => {
            c.s.seg[SS] = seg;
            c.set_stack_pointer(sp, size, to64);
        }
        None => c.stack_adjust(3 * sz),
    }
    c.next_rip = target;
    c.set_rflags((old & !mask) | (fl & mask));
    c.update_mode();
    if rpl > cpl {
        c.null_outer_segments(rpl);
    }
    Ok(())
}
