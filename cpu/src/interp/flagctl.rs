//! Flag control: CLC/STC/CMC, CLD/STD, CLI/STI (with IOPL rules), PUSHF/POPF, LAHF/SAHF.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Flow, Trap};
use crate::model::{feat, CpuModel};
use crate::state::rflags;

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Clc => clc,
        Stc => stc,
        Cmc => cmc,
        Cld => cld,
        Std => std_,
        Cli => cli,
        Sti => sti,
        Pushf | Pushfd | Pushfq => pushf,
        Popf | Popfd | Popfq => popf,
        Lahf => lahf,
        Sahf => sahf,
        _ => return None,
    })
}

/// STI and POPF can open the interrupt window; CLI/POPF may change TF or AC.
pub fn ends_block(i: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(i.mnemonic(), Sti | Cli | Popf | Popfd | Popfq)
}

fn clc(c: &mut Cpu, _: &Insn) -> Flow {
    c.set_flags_masked(rflags::CF, 0);
    Ok(())
}

fn stc(c: &mut Cpu, _: &Insn) -> Flow {
    c.set_flags_masked(rflags::CF, rflags::CF);
    Ok(())
}

fn cmc(c: &mut Cpu, _: &Insn) -> Flow {
    let cf = c.cf();
    c.set_flags_masked(rflags::CF, if cf { 0 } else { rflags::CF });
    Ok(())
}

fn cld(c: &mut Cpu, _: &Insn) -> Flow {
    c.s.rflags &= !rflags::DF;
    Ok(())
}

fn std_(c: &mut Cpu, _: &Insn) -> Flow {
    c.s.rflags |= rflags::DF;
    Ok(())
}

/// Whether IF may be changed directly (real mode, or CPL ≤ IOPL).
fn if_allowed(c: &Cpu) -> Result<(), Trap> {
    crate::monitor::interrupt_flag(c)
}

fn cli(c: &mut Cpu, _: &Insn) -> Flow {
    if_allowed(c)?;
    c.s.rflags &= !rflags::IF;
    Ok(())
}

fn sti(c: &mut Cpu, _: &Insn) -> Flow {
    if_allowed(c)?;
    if c.s.rflags & rflags::IF == 0 {
        c.s.rflags |= rflags::IF;
        c.s.events.interrupt_shadow = true;
    }
    c.break_block = true;
    Ok(())
}

fn pushf(c: &mut Cpu, i: &Insn) -> Flow {
    if c.s.rflags & rflags::VM != 0 {
        return Err(Trap::Unsupported("virtual-8086 mode"));
    }
    // The image on the stack has VM and RF clear.
    let f = c.rflags() & !(rflags::VM | rflags::RF);
    c.push(i.osize, f)
}

fn popf(c: &mut Cpu, i: &Insn) -> Flow {
    if c.s.rflags & rflags::VM != 0 {
        return Err(Trap::Unsupported("virtual-8086 mode"));
    }
    let size = i.osize;
    let new = c.stack_peek(0, size)?;
    let old = c.rflags();
    let mut mask = crate::monitor::popf_mask(c);
    if size == 2 {
        mask &= 0xffff;
    }
    c.stack_adjust(size as u64);
    c.set_rflags(((old & !mask) | (new & mask)) & !rflags::RF);
    c.break_block = true;
    Ok(())
}

fn lahf_allowed(c: &Cpu) -> Result<(), Trap> {
    if c.mode64 && !c.env.model.has_ext1_ecx(feat::LAHF_LM) {
        return Err(ud());
    }
    Ok(())
}

fn lahf(c: &mut Cpu, _: &Insn) -> Flow {
    lahf_allowed(c)?;
    let f = c.rflags() & 0xd5 | rflags::FIXED1;
    c.s.gpr[0] = (c.s.gpr[0] & !0xff00) | (f << 8);
    Ok(())
}

fn sahf(c: &mut Cpu, _: &Insn) -> Flow {
    lahf_allowed(c)?;
    let ah = (c.s.gpr[0] >> 8) & 0xff;
    let m = rflags::CF | rflags::PF | rflags::AF | rflags::ZF | rflags::SF;
    c.set_flags_masked(m, ah);
    Ok(())
}
