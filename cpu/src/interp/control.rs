//! Control transfer: JMP/CALL/RET (near and far), Jcc, LOOPcc, JCXZ/JECXZ/JRCXZ,
//! ENTER/LEAVE, INT n/INT3/INTO/INT1 and IRET.

use iced_x86::{Code, Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{gp, gp0, Flow, Trap, BP, DB, OF};
use crate::flags::size_mask;
use crate::interrupts::{Delivery, EventKind};
use crate::model::CpuModel;
use crate::state::{cr0, rflags, seg_attr, Segment, CS, RBP, RCX, RSP, SS};

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
    let lin = c.mem_linear(i)?;
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
    let (old_cs, old_rsp, ret) = (c.s.seg[CS], c.s.gpr[RSP], c.next_rip);
    // Push first (the stack is the caller's), then switch; undo on a fault.
    c.push(size, old_cs.selector as u64)?;
    if let Err(e) = c.push(size, ret) {
        c.s.gpr[RSP] = old_rsp;
        return Err(e);
    }
    if let Err(e) = c.load_cs_far(sel, off, size) {
        c.s.gpr[RSP] = old_rsp;
        c.s.seg[CS] = old_cs;
        c.update_mode();
        return Err(e);
    }
    Ok(())
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
    let size = far_size(i);
    let off = c.stack_peek(0, size)?;
    let sel = c.stack_peek(size as u64, size)? as u16;
    if c.s.cr0 & cr0::PE != 0 && (sel & 3) as u8 > c.s.cpl() {
        return Err(Trap::Unsupported(
            "far return to an outer privilege level (system-CPU work)",
        ));
    }
    c.load_cs_far(sel, off, size)?;
    c.stack_adjust(2 * size as u64 + (i.imm & 0xffff));
    Ok(())
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
                let lin = c.seg_linear(SS, bp)?;
                let v = c.read_lin(lin, size)?;
                c.push(size, v)?;
            }
            c.push(size, frame & size_mask(size))?;
        }
        // Touch the lowest byte of the new frame so that a stack fault happens here; the
        // probe is a write for paging (hardware reports a not-present page with W=1).
        let new_sp = c.s.gpr[RSP].wrapping_sub(alloc) & size_mask(ss);
        if alloc > 0 {
            let lin = c.seg_linear(SS, new_sp)?;
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
    let size = match i.raw.mnemonic() {
        Mnemonic::Iretq => 8,
        Mnemonic::Iretd => 4,
        _ => 2,
    };
    if c.s.cr0 & cr0::PE == 0 {
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
        return Ok(());
    }
    if c.s.rflags & rflags::NT != 0 && !c.s.long_mode_active() {
        return Err(Trap::Unsupported(
            "IRET to a nested task (task switching, system-CPU work)",
        ));
    }
    let ip = c.stack_peek(0, size)?;
    let cs_sel = c.stack_peek(size as u64, size)? as u16;
    let fl = c.stack_peek(2 * size as u64, size)?;
    let cpl = c.s.cpl();
    let rpl = (cs_sel & 3) as u8;
    if rpl < cpl {
        return Err(gp(cs_sel as u32 & !3));
    }
    // 64-bit IRET always pops SS:RSP.
    let outer = rpl > cpl || c.mode64;
    let (new_sp, ss_sel) = if outer {
        (
            c.stack_peek(3 * size as u64, size)?,
            c.stack_peek(4 * size as u64, size)? as u16,
        )
    } else {
        (0, 0)
    };
    let Some(code) = c.read_descriptor(cs_sel)? else {
        return Err(gp0());
    };
    if code.attr & seg_attr::S == 0 || code.attr & seg_attr::CODE == 0 {
        return Err(gp(cs_sel as u32 & !3));
    }
    if !code.present() {
        return Err(Trap::Exception(crate::exception::Exception::with_code(
            crate::exception::NP,
            cs_sel as u32 & !3,
        )));
    }
    // Flags: IOPL only at CPL 0, IF only when CPL ≤ IOPL; VM is not supported yet.
    let old = c.rflags();
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
    if cpl == 0 && size >= 4 && fl & rflags::VM != 0 && !c.s.long_mode_active() {
        return Err(Trap::Unsupported("IRET to virtual-8086 mode"));
    }
    let long_target = c.s.long_mode_active() && code.long();
    let target = if long_target {
        ip
    } else {
        ip & size_mask(size.min(4))
    };
    let prev_cs = c.s.seg[CS];
    c.s.seg[CS] = Segment {
        selector: cs_sel,
        ..code
    };
    c.update_mode();
    if let Err(e) = c.jump_near(target, if long_target { 8 } else { 4 }) {
        c.s.seg[CS] = prev_cs;
        c.update_mode();
        return Err(e);
    }
    if outer {
        let prev_ss = c.s.seg[SS];
        // Loading SS checks against the new CPL (the RPL of CS).
        if let Err(e) = c.load_segment(SS, ss_sel) {
            c.s.seg[CS] = prev_cs;
            c.s.seg[SS] = prev_ss;
            c.update_mode();
            return Err(e);
        }
        c.s.gpr[RSP] = if c.mode64 {
            new_sp
        } else {
            new_sp & 0xffff_ffff
        };
    } else {
        c.stack_adjust(3 * size as u64);
    }
    c.set_rflags((old & !mask) | (fl & mask));
    c.update_mode();
    Ok(())
}
