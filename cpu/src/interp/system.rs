//! System instructions: CPUID, RDTSC/RDTSCP, HLT, IN/OUT, MOV CR/DR, descriptor-table
//! registers, LLDT/LTR, RDMSR/WRMSR, INVLPG, CLTS/LMSW/SMSW, SWAPGS, UD0/UD1/UD2.
//!
//! Every sensitive instruction first calls its check in `crate::monitor`, the one place
//! that raises the architectural fault for an unprivileged caller (CPL, IOPL and the TSS
//! I/O bitmap, CR4.UMIP/TSD/PCE, DR7.GD).

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn, Operand};
use crate::exception::{gp0, ud, Flow, Trap};
use crate::model::{feat, CpuModel};
use crate::monitor;
use crate::state::{cr0, cr4, efer, seg_attr, Segment, CS, FS, GS, RAX, RCX, RDX};

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Cpuid => cpuid,
        Rdtsc => rdtsc,
        Rdtscp if model.has_ext1_edx(feat::RDTSCP) => rdtscp,
        Hlt => hlt,
        In => in_,
        Out => out,
        Mov => mov_cr_dr,
        Lgdt | Lidt => lgdt_lidt,
        Sgdt | Sidt => sgdt_sidt,
        Lldt => lldt,
        Ltr => ltr,
        Sldt => sldt,
        Str => str_,
        Rdmsr => rdmsr,
        Wrmsr => wrmsr,
        Invlpg => invlpg,
        Clts => clts,
        Lmsw => lmsw,
        Smsw => smsw,
        Swapgs => swapgs,
        Wbinvd | Invd => privileged_nop,
        Rdpmc => rdpmc,
        Monitor | Mwait | Monitorx | Mwaitx => monitor_mwait,
        Ud0 | Ud1 | Ud2 => undefined,
        _ => return None,
    })
}

pub fn ends_block(i: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(
        i.mnemonic(),
        Hlt | Lgdt
            | Lidt
            | Lldt
            | Ltr
            | Wrmsr
            | Invlpg
            | Clts
            | Lmsw
            | Swapgs
            | Ud0
            | Ud1
            | Ud2
            | Syscall
            | Sysret
            | Sysretq
            | Sysenter
            | Sysexit
            | Sysexitq
    ) || (i.mnemonic() == Mov
        && matches!(
            crate::decode::reg_operand(i.op0_register()),
            Operand::Cr(_) | Operand::Dr(_)
        ))
}

fn require_cpl0(c: &Cpu) -> Flow {
    monitor::cpl0(c)
}

fn rdpmc(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::pmc(c, c.s.gpr[RCX] as u32)
}

fn monitor_mwait(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::monitor_mwait(c)
}

fn undefined(_: &mut Cpu, _: &Insn) -> Flow {
    Err(ud())
}

fn privileged_nop(c: &mut Cpu, _: &Insn) -> Flow {
    require_cpl0(c)
}

fn cpuid(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::cpuid(c)?;
    let r = c
        .env
        .model
        .cpuid(c.s.gpr[RAX] as u32, c.s.gpr[RCX] as u32, c.apic_id);
    for (reg, v) in [RAX, 3, RCX, RDX].into_iter().zip(r) {
        c.s.gpr[reg] = v as u64;
    }
    Ok(())
}

fn rdtsc(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::tsc(c)?;
    let t = c.tsc();
    c.s.gpr[RAX] = t & 0xffff_ffff;
    c.s.gpr[RDX] = t >> 32;
    Ok(())
}

fn rdtscp(c: &mut Cpu, i: &Insn) -> Flow {
    rdtsc(c, i)?;
    c.s.gpr[RCX] = c.s.msr.tsc_aux & 0xffff_ffff;
    Ok(())
}

fn hlt(c: &mut Cpu, _: &Insn) -> Flow {
    require_cpl0(c)?;
    Err(Trap::Halt)
}

fn port_of(c: &Cpu, i: &Insn, n: usize) -> u16 {
    match i.ops[n] {
        Operand::Imm => i.imm as u16,
        _ => c.s.gpr[RDX] as u16,
    }
}

fn in_(c: &mut Cpu, i: &Insn) -> Flow {
    let size = Cpu::op_size(i, 0);
    let port = port_of(c, i, 1);
    monitor::io(c, port, size)?;
    let v = c.io_in(port, size);
    c.write_op(i, 0, v)
}

fn out(c: &mut Cpu, i: &Insn) -> Flow {
    let size = Cpu::op_size(i, 1);
    let port = port_of(c, i, 0);
    monitor::io(c, port, size)?;
    let v = c.read_op(i, 1)?;
    c.io_out(port, size, v)
}

fn mov_cr_dr(c: &mut Cpu, i: &Insn) -> Flow {
    if matches!(i.ops[0], Operand::Dr(_)) || matches!(i.ops[1], Operand::Dr(_)) {
        monitor::debug_register(c)?;
    } else {
        require_cpl0(c)?;
    }
    let width = if c.mode64 { 8 } else { 4 };
    match (i.ops[0], i.ops[1]) {
        (Operand::Reg { idx, .. }, Operand::Cr(n)) => {
            let v = read_cr(c, n)?;
            c.set_reg(idx as usize, width, v);
            Ok(())
        }
        (Operand::Cr(n), Operand::Reg { idx, .. }) => {
            let v = c.reg(idx as usize, width);
            write_cr(c, n, v)
        }
        (Operand::Reg { idx, .. }, Operand::Dr(n)) => {
            let v = read_dr(c, n)?;
            c.set_reg(idx as usize, width, v);
            Ok(())
        }
        (Operand::Dr(n), Operand::Reg { idx, .. }) => {
            let v = c.reg(idx as usize, width);
            write_dr(c, n, v)
        }
        _ => Err(ud()),
    }
}

fn read_cr(c: &Cpu, n: u8) -> Result<u64, Trap> {
    Ok(match n {
        0 => c.s.cr0,
        2 => c.s.cr2,
        3 => c.s.cr3,
        4 => c.s.cr4,
        8 if c.mode64 => c.apic.as_ref().map_or(c.s.cr8, |a| a.cr8()),
        _ => return Err(ud()),
    })
}

const CR4_SUPPORTED: u64 = cr4::VME
    | cr4::PVI
    | cr4::TSD
    | cr4::DE
    | cr4::PSE
    | cr4::PAE
    | cr4::MCE
    | cr4::PGE
    | cr4::PCE
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT;

/// CR4.UMIP is writable when the model advertises UMIP.
fn umip_bit(c: &Cpu) -> u64 {
    if c.env.model.leaf7_ecx & feat::UMIP != 0 {
        cr4::UMIP
    } else {
        0
    }
}

/// MOV to a control register, with the checks of SDM vol. 3 §2.5 and the TLB flushes the
/// change requires.
pub fn write_cr(c: &mut Cpu, n: u8, v: u64) -> Flow {
    match n {
        0 => {
            if v >> 32 != 0 && c.mode64 {
                return Err(gp0());
            }
            let v = (v & 0xffff_ffff) | cr0::ET;
            if v & cr0::PG != 0 && v & cr0::PE == 0 {
                return Err(gp0());
            }
            if v & cr0::NW != 0 && v & cr0::CD == 0 {
                return Err(gp0());
            }
            let enabling_paging = v & cr0::PG != 0 && c.s.cr0 & cr0::PG == 0;
            let mut new_efer = c.s.efer;
            if enabling_paging && c.s.efer & efer::LME != 0 {
                if c.s.cr4 & cr4::PAE == 0 || c.s.seg[CS].long() {
                    return Err(gp0());
                }
                new_efer |= efer::LMA;
            }
            if v & cr0::PG == 0 && c.s.cr0 & cr0::PG != 0 {
                if c.mode64 {
                    return Err(gp0());
                }
                new_efer &= !efer::LMA;
            }
            // PDPTE loads, PCIDE rules and TLB invalidation live with the MMU.
            let cr4 = c.s.cr4;
            c.commit_paging_control(v, cr4, new_efer)?;
            c.update_mode();
        }
        2 => c.s.cr2 = v,
        3 => {
            c.load_cr3(v)?;
            c.break_block = true;
        }
        4 => {
            if v & !(CR4_SUPPORTED | umip_bit(c) | crate::mmu::cr4_paging_bits(&c.env.model)) != 0 {
                return Err(gp0());
            }
            if c.s.long_mode_active() && v & cr4::PAE == 0 {
                return Err(gp0());
            }
            let (cr0, efer) = (c.s.cr0, c.s.efer);
            c.commit_paging_control(cr0, v, efer)?;
            c.update_mode();
        }
        8 if c.mode64 => {
            if v > 15 {
                return Err(gp0());
            }
            c.s.cr8 = v;
            if let Some(a) = &c.apic {
                a.set_cr8(v);
            }
        }
        _ => return Err(ud()),
    }
    c.break_block = true;
    Ok(())
}

fn read_dr(c: &Cpu, n: u8) -> Result<u64, Trap> {
    Ok(match n {
        0..=3 => c.s.dr[n as usize],
        // DR4/DR5 alias DR6/DR7 unless CR4.DE.
        4 | 6 if n == 6 || c.s.cr4 & cr4::DE == 0 => c.s.dr6,
        5 | 7 if n == 7 || c.s.cr4 & cr4::DE == 0 => c.s.dr7,
        _ => return Err(ud()),
    })
}

fn write_dr(c: &mut Cpu, n: u8, v: u64) -> Flow {
    if n >= 6 && c.mode64 && v >> 32 != 0 {
        return Err(gp0());
    }
    match n {
        0..=3 => c.s.dr[n as usize] = v,
        4 | 6 if n == 6 || c.s.cr4 & cr4::DE == 0 => c.s.dr6 = (v & 0x0001_e00f) | 0xffff_0ff0,
        5 | 7 if n == 7 || c.s.cr4 & cr4::DE == 0 => c.s.dr7 = (v & 0xffff_2bff) | 0x400,
        _ => return Err(ud()),
    }
    Ok(())
}

fn table_base_size(c: &Cpu, i: &Insn) -> u8 {
    if c.mode64 { 8 } else { 4 }.min(if i.osize == 2 && !c.mode64 { 4 } else { 8 })
}

fn lgdt_lidt(c: &mut Cpu, i: &Insn) -> Flow {
    require_cpl0(c)?;
    let size = table_base_size(c, i);
    let lin = c.mem_read_addr(i, 2 + size)?;
    let limit = c.read_lin(lin, 2)? as u16;
    let mut base = c.read_lin(lin.wrapping_add(2), size)?;
    if !c.mode64 && i.osize == 2 {
        // With a 16-bit operand only 24 bits of the base are loaded.
        base &= 0x00ff_ffff;
    }
    let reg = if i.raw.mnemonic() == Mnemonic::Lgdt {
        &mut c.s.gdtr
    } else {
        &mut c.s.idtr
    };
    reg.base = base;
    reg.limit = limit;
    Ok(())
}

fn sgdt_sidt(c: &mut Cpu, i: &Insn) -> Flow {
    monitor::store_descriptor(c)?;
    let t = if i.raw.mnemonic() == Mnemonic::Sgdt {
        c.s.gdtr
    } else {
        c.s.idtr
    };
    let size = table_base_size(c, i);
    let lin = c.mem_write_addr(i, 2 + size)?;
    // The limit goes first: a store that faults on its first byte reports that address in
    // CR2, as the processor does (found by fuzz-diff).
    c.write_lin(lin, 2, t.limit as u64)?;
    c.write_lin(lin.wrapping_add(2), size, t.base)
}

fn system_descriptor(c: &mut Cpu, sel: u16, types: &[u32]) -> Result<Segment, Trap> {
    if sel & 4 != 0 {
        return Err(crate::exception::gp(sel as u32 & !3));
    }
    let Some(d) = c.read_descriptor(sel)? else {
        return Err(gp0());
    };
    if d.attr & seg_attr::S != 0 || !types.contains(&(d.attr & 0xf)) {
        return Err(crate::exception::gp(sel as u32 & !3));
    }
    if !d.present() {
        return Err(Trap::Exception(crate::exception::Exception::with_code(
            crate::exception::NP,
            sel as u32 & !3,
        )));
    }
    Ok(d)
}

fn protected_only(c: &Cpu) -> Flow {
    monitor::protected_only(c)
}

fn lldt(c: &mut Cpu, i: &Insn) -> Flow {
    protected_only(c)?;
    require_cpl0(c)?;
    let sel = c.read_op(i, 0)? as u16;
    if sel & !3 == 0 {
        c.s.ldtr = Segment {
            selector: sel,
            base: 0,
            limit: 0,
            attr: seg_attr::UNUSABLE,
        };
        return Ok(());
    }
    c.s.ldtr = system_descriptor(c, sel, &[2])?;
    Ok(())
}

fn ltr(c: &mut Cpu, i: &Insn) -> Flow {
    protected_only(c)?;
    require_cpl0(c)?;
    let sel = c.read_op(i, 0)? as u16;
    let d = system_descriptor(c, sel, &[1, 9])?;
    // Mark the TSS busy in the GDT.
    let addr = c.s.gdtr.base + (sel & !7) as u64 + 5;
    let b = c.read_lin_sys(addr, 1)?;
    c.write_lin(addr, 1, b | 2)?;
    c.s.tr = Segment {
        attr: d.attr | 2,
        ..d
    };
    Ok(())
}

fn sldt(c: &mut Cpu, i: &Insn) -> Flow {
    protected_only(c)?;
    monitor::store_descriptor(c)?;
    let v = c.s.ldtr.selector as u64;
    c.write_op(i, 0, v)
}

fn str_(c: &mut Cpu, i: &Insn) -> Flow {
    protected_only(c)?;
    monitor::store_descriptor(c)?;
    let v = c.s.tr.selector as u64;
    c.write_op(i, 0, v)
}

fn smsw(c: &mut Cpu, i: &Insn) -> Flow {
    monitor::store_descriptor(c)?;
    let v = c.s.cr0;
    // A register destination receives as much of CR0 as it holds; memory gets 16 bits.
    c.write_op(i, 0, v)
}

fn lmsw(c: &mut Cpu, i: &Insn) -> Flow {
    require_cpl0(c)?;
    let v = c.read_op(i, 0)? & 0xf;
    // LMSW can set PE but never clear it.
    let new = (c.s.cr0 & !0xe) | v | (c.s.cr0 & cr0::PE);
    write_cr(c, 0, new)
}

fn clts(c: &mut Cpu, _: &Insn) -> Flow {
    require_cpl0(c)?;
    c.s.cr0 &= !cr0::TS;
    Ok(())
}

fn invlpg(c: &mut Cpu, i: &Insn) -> Flow {
    require_cpl0(c)?;
    // A non-canonical address in 64-bit mode makes INVLPG a no-op, not a fault.
    if let Ok(lin) = c.mem_linear(i) {
        c.invlpg(lin);
    }
    Ok(())
}

fn swapgs(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::swapgs(c)?;
    std::mem::swap(&mut c.s.seg[GS].base, &mut c.s.msr.kernel_gs_base);
    Ok(())
}

pub mod msr {
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1b;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const MTRRCAP: u32 = 0xfe;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_PHYS_BASE0: u32 = 0x200;
    pub const MTRR_FIX64K: u32 = 0x250;
    pub const MTRR_FIX16K_80000: u32 = 0x258;
    pub const MTRR_FIX16K_A0000: u32 = 0x259;
    pub const MTRR_FIX4K_C0000: u32 = 0x268;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

fn mtrr_fixed_index(n: u32) -> Option<usize> {
    match n {
        msr::MTRR_FIX64K => Some(0),
        msr::MTRR_FIX16K_80000 => Some(1),
        msr::MTRR_FIX16K_A0000 => Some(2),
        msr::MTRR_FIX4K_C0000..=0x26f => Some(3 + (n - msr::MTRR_FIX4K_C0000) as usize),
        _ => None,
    }
}

/// Reads an MSR; `None` for one the CPU model does not have.
pub fn read_msr(c: &Cpu, n: u32) -> Option<u64> {
    let m = &c.s.msr;
    Some(match n {
        msr::TSC => c.tsc(),
        msr::APIC_BASE => m.apic_base,
        msr::TSC_ADJUST => m.tsc_adjust,
        msr::MTRRCAP => 0x508, // 8 variable ranges, fixed ranges, write-combining
        msr::SYSENTER_CS => m.sysenter_cs,
        msr::SYSENTER_ESP => m.sysenter_esp,
        msr::SYSENTER_EIP => m.sysenter_eip,
        msr::MISC_ENABLE => m.misc_enable,
        msr::PAT => m.pat,
        msr::MTRR_DEF_TYPE => m.mtrr_def_type,
        msr::MTRR_PHYS_BASE0..=0x20f => {
            let (b, mask) = m.mtrr_var[((n - msr::MTRR_PHYS_BASE0) / 2) as usize];
            if n.is_multiple_of(2) {
                b
            } else {
                mask
            }
        }
        msr::EFER => c.s.efer,
        msr::STAR => m.star,
        msr::LSTAR => m.lstar,
        msr::CSTAR => m.cstar,
        msr::SFMASK => m.sfmask,
        msr::FS_BASE => c.s.seg[FS].base,
        msr::GS_BASE => c.s.seg[GS].base,
        msr::KERNEL_GS_BASE => m.kernel_gs_base,
        msr::TSC_AUX if c.env.model.has_ext1_edx(feat::RDTSCP) => m.tsc_aux,
        _ => m.mtrr_fixed[mtrr_fixed_index(n)?],
    })
}

/// Writes an MSR; `Err` is the #GP the write raises.
pub fn write_msr(c: &mut Cpu, n: u32, v: u64) -> Flow {
    let long_addr = |v: u64| if canonical(v) { Ok(v) } else { Err(gp0()) };
    match n {
        msr::TSC => {
            // Writing the TSC moves TSC_ADJUST by the same amount (SDM vol. 3 §18.17.3).
            let delta = v.wrapping_sub(c.tsc());
            c.s.msr.tsc_adjust = c.s.msr.tsc_adjust.wrapping_add(delta);
            c.set_tsc(v);
        }
        msr::APIC_BASE => c.s.msr.apic_base = v & 0x000f_ffff_ffff_fd00,
        msr::TSC_ADJUST => {
            // ... and writing TSC_ADJUST moves the TSC.
            let delta = v.wrapping_sub(c.s.msr.tsc_adjust);
            let t = c.tsc().wrapping_add(delta);
            c.set_tsc(t);
            c.s.msr.tsc_adjust = v;
        }
        msr::SYSENTER_CS => c.s.msr.sysenter_cs = v & 0xffff,
        msr::SYSENTER_ESP => c.s.msr.sysenter_esp = long_addr(v)?,
        msr::SYSENTER_EIP => c.s.msr.sysenter_eip = long_addr(v)?,
        msr::MISC_ENABLE => c.s.msr.misc_enable = v,
        msr::PAT => {
            // Each entry must be a valid memory type (0, 1, 4, 5, 6, 7).
            if (0..8).any(|k| matches!((v >> (k * 8)) & 0xff, 2 | 3 | 8..=0xff)) {
                return Err(gp0());
            }
            c.s.msr.pat = v;
        }
        msr::MTRR_DEF_TYPE => c.s.msr.mtrr_def_type = v & 0xcff,
        msr::MTRR_PHYS_BASE0..=0x20f => {
            let e = &mut c.s.msr.mtrr_var[((n - msr::MTRR_PHYS_BASE0) / 2) as usize];
            if n.is_multiple_of(2) {
                e.0 = v;
            } else {
                e.1 = v;
            }
        }
        msr::EFER => {
            let mut allowed = efer::SCE | efer::LME;
            if c.env.model.has_ext1_edx(feat::NX) {
                allowed |= efer::NXE;
            }
            if v & !(allowed | efer::LMA) != 0 {
                return Err(gp0());
            }
            if c.s.cr0 & cr0::PG != 0 && (v ^ c.s.efer) & efer::LME != 0 {
                return Err(gp0());
            }
            // LMA is read-only: it follows LME and CR0.PG.
            let changed = (v ^ c.s.efer) & efer::NXE != 0;
            c.s.efer = (v & allowed) | (c.s.efer & efer::LMA);
            if changed {
                c.flush_tlb();
            }
            c.update_mode();
        }
        msr::STAR => c.s.msr.star = v,
        msr::LSTAR => c.s.msr.lstar = long_addr(v)?,
        msr::CSTAR => c.s.msr.cstar = long_addr(v)?,
        msr::SFMASK => c.s.msr.sfmask = v & 0xffff_ffff,
        msr::FS_BASE => c.s.seg[FS].base = long_addr(v)?,
        msr::GS_BASE => c.s.seg[GS].base = long_addr(v)?,
        msr::KERNEL_GS_BASE => c.s.msr.kernel_gs_base = long_addr(v)?,
        msr::TSC_AUX if c.env.model.has_ext1_edx(feat::RDTSCP) => c.s.msr.tsc_aux = v & 0xffff_ffff,
        _ => match mtrr_fixed_index(n) {
            Some(k) => c.s.msr.mtrr_fixed[k] = v,
            None => return Err(gp0()),
        },
    }
    Ok(())
}

fn count_unknown_msr(c: &mut Cpu, n: u32) {
    *c.stats.unknown_msrs.entry(n).or_insert(0) += 1;
}

fn rdmsr(c: &mut Cpu, _: &Insn) -> Flow {
    require_cpl0(c)?;
    let n = c.s.gpr[RCX] as u32;
    let v = match crate::apic_port::rdmsr(c, n) {
        Some(r) => Some(r?),
        None => read_msr(c, n),
    };
    let Some(v) = v else {
        count_unknown_msr(c, n);
        return Err(gp0());
    };
    c.s.gpr[RAX] = v & 0xffff_ffff;
    c.s.gpr[RDX] = v >> 32;
    Ok(())
}

fn wrmsr(c: &mut Cpu, _: &Insn) -> Flow {
    require_cpl0(c)?;
    let n = c.s.gpr[RCX] as u32;
    let v = (c.s.gpr[RDX] << 32) | (c.s.gpr[RAX] & 0xffff_ffff);
    if let Some(r) = crate::apic_port::wrmsr(c, n, v) {
        return r;
    }
    if read_msr(c, n).is_none() {
        count_unknown_msr(c, n);
        return Err(gp0());
    }
    write_msr(c, n, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::env;
    use crate::state::CpuState;

    #[test]
    fn tsc_adjust_and_tsc_move_together() {
        let mut c = Cpu::new(env(1 << 20), CpuState::protected_flat());
        let t0 = c.tsc();
        write_msr(&mut c, msr::TSC_ADJUST, 1000).unwrap();
        assert_eq!(c.tsc(), t0 + 1000);
        write_msr(&mut c, msr::TSC, t0 + 5000).unwrap();
        assert_eq!(read_msr(&c, msr::TSC_ADJUST), Some(5000));
        assert_eq!(c.tsc(), t0 + 5000);
    }

    #[test]
    fn msrs_the_model_lacks_are_unknown() {
        let c = Cpu::new(env(1 << 20), CpuState::protected_flat());
        // SPEC_CTRL and ARCH_CAPABILITIES: not advertised by the model (CPUID.7.EDX).
        assert_eq!(read_msr(&c, msr::SPEC_CTRL), None);
        assert_eq!(read_msr(&c, 0x10a), None);
        assert!(read_msr(&c, msr::SYSENTER_CS).is_some());
    }
}
