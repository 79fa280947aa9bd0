//! Paging-related instructions: INVPCID (INVLPG and MOV CR3 live with the other system
//! instructions and call into the MMU) and STAC/CLAC for SMAP.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{gp0, ud, Flow};
use crate::model::{feat, CpuModel};
use crate::state::{cr4, rflags};

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Invpcid if model.has_leaf7_ebx(feat::INVPCID) => invpcid,
        Stac if model.has_leaf7_ebx(feat::SMAP) => stac,
        Clac if model.has_leaf7_ebx(feat::SMAP) => clac,
        _ => return None,
    })
}

pub fn ends_block(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Invpcid
}

/// INVPCID r, m128 (SDM vol. 2): #GP(0) at CPL > 0, for a type above 3, descriptor bits
/// 63:12 set, a non-canonical address for type 0, or a non-zero PCID for types 0/1 while
/// CR4.PCIDE = 0.
fn invpcid(c: &mut Cpu, i: &Insn) -> Flow {
    if i.lock || c.s.rflags & rflags::VM != 0 {
        return Err(ud());
    }
    if c.s.cpl() != 0 {
        return Err(gp0());
    }
    let kind = c.read_op(i, 0)?;
    let lin = c.mem_linear(i)?;
    let lo = c.read_lin(lin, 8)?;
    let addr = c.read_lin(lin.wrapping_add(8), 8)?;
    if kind > 3 || lo >> 12 != 0 {
        return Err(gp0());
    }
    let pcid = (lo & 0xfff) as u16;
    if kind == 0 && ((addr as i64) << 16 >> 16) as u64 != addr {
        return Err(gp0());
    }
    if kind <= 1 && pcid != 0 && c.s.cr4 & cr4::PCIDE == 0 {
        return Err(gp0());
    }
    c.invpcid(kind, pcid, addr);
    Ok(())
}

fn smap_insn_allowed(c: &Cpu, i: &Insn) -> Flow {
    if i.lock || c.s.cpl() != 0 || c.s.rflags & rflags::VM != 0 {
        return Err(ud());
    }
    Ok(())
}

/// STAC: set EFLAGS.AC (explicit supervisor accesses to user pages allowed under SMAP).
fn stac(c: &mut Cpu, i: &Insn) -> Flow {
    smap_insn_allowed(c, i)?;
    c.s.rflags |= rflags::AC;
    Ok(())
}

fn clac(c: &mut Cpu, i: &Insn) -> Flow {
    smap_insn_allowed(c, i)?;
    c.s.rflags &= !rflags::AC;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::exception::{Exception, GP};
    use crate::exec::RunExit;
    use crate::state::rflags;
    use crate::testing::{machine64, run64, DATA};

    #[test]
    fn stac_clac_toggle_ac() {
        let mut it = machine64();
        // stac; pushfq; pop rax; clac; pushfq; pop rbx
        let r = run64(
            &mut it,
            &[0x0f, 0x01, 0xcb, 0x9c, 0x58, 0x0f, 0x01, 0xca, 0x9c, 0x5b],
        );
        assert_eq!(r, RunExit::Halted);
        let s = it.cpu.state();
        assert_ne!(s.gpr[0] & rflags::AC, 0);
        assert_eq!(s.gpr[3] & rflags::AC, 0);
    }

    #[test]
    fn invpcid_checks_type_and_descriptor() {
        let mut it = machine64();
        // mov rax, type; invpcid rax, [DATA]  (66 0f 38 82 /r)
        let prog = |ty: u8| {
            let mut v = vec![0x48, 0xc7, 0xc0, ty, 0, 0, 0];
            v.extend_from_slice(&[0x66, 0x0f, 0x38, 0x82, 0x04, 0x25]);
            v.extend_from_slice(&(DATA as u32).to_le_bytes());
            v
        };
        let run = |it: &mut crate::exec::Interpreter, ty: u8| {
            it.cpu.s.events.halted = false;
            run64(it, &prog(ty))
        };
        it.cpu.env.mem.write_u64(DATA, 0).unwrap();
        it.cpu.env.mem.write_u64(DATA + 8, 0x1000).unwrap();
        assert_eq!(run(&mut it, 2), RunExit::Halted);
        assert_eq!(run(&mut it, 0), RunExit::Halted);
        assert_eq!(
            run(&mut it, 4),
            RunExit::Exception(Exception::with_code(GP, 0))
        );
        // A PCID other than 0 needs CR4.PCIDE for types 0 and 1.
        it.cpu.env.mem.write_u64(DATA, 5).unwrap();
        assert_eq!(
            run(&mut it, 1),
            RunExit::Exception(Exception::with_code(GP, 0))
        );
        assert_eq!(run(&mut it, 3), RunExit::Halted);
        // Reserved descriptor bits.
        it.cpu.env.mem.write_u64(DATA, 1 << 12).unwrap();
        assert_eq!(
            run(&mut it, 3),
            RunExit::Exception(Exception::with_code(GP, 0))
        );
    }
}
