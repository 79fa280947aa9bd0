//! Segment inspection instructions: LAR, LSL, VERR, VERW and ARPL (SDM vol. 2). They never
//! fault on a bad selector: ZF reports whether the descriptor passed the checks.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{ud, Flow};
use crate::model::CpuModel;
use crate::state::{cr0, rflags, seg_attr};

pub fn lookup(i: &Instruction, _model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Lar => lar,
        Lsl => lsl,
        Verr => verr,
        Verw => verw,
        Arpl => arpl,
        _ => return None,
    })
}

fn protected_only(c: &Cpu) -> Flow {
    if c.s.cr0 & cr0::PE == 0 || c.s.rflags & rflags::VM != 0 {
        return Err(ud());
    }
    Ok(())
}

fn set_zf(c: &mut Cpu, on: bool) {
    c.set_flags_masked(rflags::ZF, if on { rflags::ZF } else { 0 });
}

/// The raw descriptor (low qword) for `sel` when it is not null and lies within its
/// table; memory faults while reading it propagate.
fn raw_descriptor(c: &mut Cpu, sel: u16) -> Result<Option<u64>, crate::exception::Trap> {
    if sel & !3 == 0 {
        return Ok(None);
    }
    match c.descriptor_addr(sel, 8) {
        Some(addr) => Ok(Some(c.read_lin_sys(addr, 8)?)),
        None => Ok(None),
    }
}

/// Whether a code/data descriptor is visible at the current CPL and the selector's RPL
/// (conforming code segments always are).
fn visible(c: &Cpu, sel: u16, raw: u64) -> bool {
    let attr = (raw >> 40) as u32;
    let dpl = ((attr >> 5) & 3) as u8;
    let conforming_code = attr & seg_attr::S != 0 && attr & 0xc == 0xc;
    conforming_code || (dpl >= c.s.cpl() && dpl >= (sel & 3) as u8)
}

/// System descriptor types LAR (`gates` true) or LSL accepts, by mode.
fn system_type_ok(c: &Cpu, t: u32, gates: bool) -> bool {
    if c.s.long_mode_active() {
        matches!(t, 2 | 9 | 0xb) || (gates && t == 0xc)
    } else {
        matches!(t, 1 | 2 | 3 | 9 | 0xb) || (gates && matches!(t, 4 | 5 | 0xc))
    }
}

/// Common part of LAR/LSL: the descriptor if it passes the type and privilege checks.
fn checked(c: &mut Cpu, i: &Insn, gates: bool) -> Result<Option<u64>, crate::exception::Trap> {
    protected_only(c)?;
    let sel = c.read_op(i, 1)? as u16;
    let Some(raw) = raw_descriptor(c, sel)? else {
        return Ok(None);
    };
    let attr = (raw >> 40) as u32;
    if attr & seg_attr::S == 0 && !system_type_ok(c, attr & 0xf, gates) {
        return Ok(None);
    }
    if !visible(c, sel, raw) {
        return Ok(None);
    }
    Ok(Some(raw))
}

fn lar(c: &mut Cpu, i: &Insn) -> Flow {
    let Some(raw) = checked(c, i, true)? else {
        set_zf(c, false);
        return Ok(());
    };
    // The access rights: bytes 5–6 of the descriptor, limit bits masked out.
    let v = (raw >> 32) & 0x00f0_ff00;
    c.write_op(i, 0, v)?;
    set_zf(c, true);
    Ok(())
}

fn lsl(c: &mut Cpu, i: &Insn) -> Flow {
    let Some(raw) = checked(c, i, false)? else {
        set_zf(c, false);
        return Ok(());
    };
    let limit = crate::segments::decode_descriptor(0, raw).limit as u64;
    c.write_op(i, 0, limit)?;
    set_zf(c, true);
    Ok(())
}

fn verify(c: &mut Cpu, i: &Insn, write: bool) -> Flow {
    protected_only(c)?;
    let sel = c.read_op(i, 0)? as u16;
    let ok = match raw_descriptor(c, sel)? {
        None => false,
        Some(raw) => {
            let attr = (raw >> 40) as u32;
            let code = attr & seg_attr::CODE != 0;
            let rw = attr & seg_attr::RW != 0;
            let kind_ok = if write { !code && rw } else { !code || rw };
            attr & seg_attr::S != 0 && kind_ok && visible(c, sel, raw)
        }
    };
    set_zf(c, ok);
    Ok(())
}

fn verr(c: &mut Cpu, i: &Insn) -> Flow {
    verify(c, i, false)
}

fn verw(c: &mut Cpu, i: &Insn) -> Flow {
    verify(c, i, true)
}

fn arpl(c: &mut Cpu, i: &Insn) -> Flow {
    protected_only(c)?;
    let loc = c.loc(i, 0)?;
    let dest = c.read_loc(loc, 2)?;
    let src = c.read_op(i, 1)?;
    if dest & 3 < src & 3 {
        c.write_loc(loc, 2, (dest & !3) | (src & 3))?;
        set_zf(c, true);
    } else {
        set_zf(c, false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{machine64, run64, DATA};
    use crate::RunExit;

    /// Builds a GDT at DATA with the given descriptors (index 1..) and runs `code`.
    fn with_gdt(descs: &[u64], code: &[u8]) -> crate::Interpreter {
        let mut it = machine64();
        for (k, d) in descs.iter().enumerate() {
            it.cpu.write_lin(DATA + 8 * (k as u64 + 1), 8, *d).unwrap();
        }
        it.cpu.s.gdtr.base = DATA;
        it.cpu.s.gdtr.limit = (8 * (descs.len() + 1) - 1) as u16;
        assert_eq!(run64(&mut it, code), RunExit::Halted);
        it
    }

    #[test]
    fn lar_lsl_on_data_and_null() {
        // mov ax, 8; lar ebx, ax; lsl ecx, ax; mov dx, 0; lar esi, dx (ZF=0, ESI kept)
        let code = [
            0x66, 0xb8, 0x08, 0x00, // mov ax, 8
            0x0f, 0x02, 0xd8, // lar ebx, eax
            0x0f, 0x03, 0xc8, // lsl ecx, eax
        ];
        let it = with_gdt(&[0x00cf_9200_0000_ffff], &code);
        let s = it.cpu.state();
        assert_eq!(s.gpr[3], 0x00c0_9200);
        assert_eq!(s.gpr[1], 0xffff_ffff);
        assert_ne!(s.rflags & rflags::ZF, 0);
    }

    #[test]
    fn lar_fails_for_null_and_out_of_limit() {
        let code = [
            0x31, 0xc0, // xor eax, eax
            0xbb, 0x55, 0, 0, 0, // mov ebx, 0x55
            0x0f, 0x02, 0xd8, // lar ebx, eax (null: ZF=0)
        ];
        let it = with_gdt(&[0x00cf_9200_0000_ffff], &code);
        let s = it.cpu.state();
        assert_eq!(s.gpr[3], 0x55);
        assert_eq!(s.rflags & rflags::ZF, 0);
        let code = [
            0x66, 0xb8, 0x40, 0x00, // mov ax, 0x40 (past the limit)
            0x0f, 0x03, 0xd8, // lsl ebx, eax
        ];
        let it = with_gdt(&[0x00cf_9200_0000_ffff], &code);
        assert_eq!(it.cpu.state().rflags & rflags::ZF, 0);
    }

    #[test]
    fn verr_verw() {
        // Selector 8: read-only data; 0x10: execute-only code; 0x18: writable data.
        let descs = [
            0x00cf_9000_0000_ffff,
            0x00cf_9800_0000_ffff,
            0x00cf_9200_0000_ffff,
        ];
        let run = |sel: u8, op: u8| {
            let code = [0x66, 0xb8, sel, 0x00, 0x0f, 0x00, op];
            let it = with_gdt(&descs, &code);
            it.cpu.state().rflags & rflags::ZF != 0
        };
        // 0F 00 /4 = VERR ax (modrm e0), /5 = VERW ax (modrm e8)
        assert!(run(0x08, 0xe0));
        assert!(!run(0x08, 0xe8));
        assert!(!run(0x10, 0xe0));
        assert!(!run(0x10, 0xe8));
        assert!(run(0x18, 0xe0));
        assert!(run(0x18, 0xe8));
    }
}
