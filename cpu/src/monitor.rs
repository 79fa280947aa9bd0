//! The monitor path: the privilege checks of every sensitive instruction, in one place.
//!
//! Ring deprivileging (ARCHITECTURE.md, "The CPU") means the guest kernel's sensitive
//! instructions never run natively; each is emulated after exactly the check hardware
//! makes. The interpreter's handlers call one function per check kind before doing any
//! work, and the binary translator calls the same functions from its call-out, so both
//! engines raise the same architectural fault (vector and error code) for the same state.
//!
//! Not modelled: virtual-8086 mode (its IOPL-sensitive paths stop the machine with an
//! "unsupported" error rather than running wrongly), so CR4.VME/PVI have no effect on
//! CLI/STI/PUSHF/POPF; CPUID faulting (MSR_PLATFORM_INFO bit 31 is not advertised, so
//! CPUID never faults); MONITOR/MWAIT (CPUID.1:ECX.MONITOR is clear: #UD).

use crate::cpu::Cpu;
use crate::exception::{gp0, ud, Exception, Flow, Trap, AC, DB, MF, XM};
use crate::state::{cr0, cr4, efer, rflags, seg_attr};

/// Protected mode (incl. virtual-8086 and long mode).
#[inline]
pub fn protected(c: &Cpu) -> bool {
    c.s.cr0 & cr0::PE != 0
}

#[inline]
fn v86(c: &Cpu) -> bool {
    c.s.rflags & rflags::VM != 0
}

#[inline]
pub fn iopl(c: &Cpu) -> u8 {
    ((c.s.rflags & rflags::IOPL) >> 12) as u8
}

/// Instructions that need CPL 0: #GP(0) otherwise (HLT, LGDT/LIDT, MOV CR, CLTS, LMSW,
/// RDMSR/WRMSR, INVLPG, INVPCID, WBINVD/INVD, SWAPGS…). In real mode CPL is 0.
#[inline]
pub fn cpl0(c: &Cpu) -> Flow {
    if c.s.cpl() != 0 || (protected(c) && v86(c)) {
        return Err(gp0());
    }
    Ok(())
}

/// Instructions that do not exist in real and virtual-8086 mode (LLDT, LTR, SLDT, STR,
/// LAR, LSL, VERR, VERW, ARPL): #UD.
#[inline]
pub fn protected_only(c: &Cpu) -> Flow {
    if !protected(c) || v86(c) {
        return Err(ud());
    }
    Ok(())
}

/// LLDT/LTR: protected mode only, CPL 0.
pub fn load_system_segment(c: &Cpu) -> Flow {
    protected_only(c)?;
    cpl0(c)
}

/// CLI/STI: in protected mode CPL must not exceed IOPL. Virtual-8086 mode and the VME/PVI
/// virtual interrupt flag are not modelled.
pub fn interrupt_flag(c: &Cpu) -> Flow {
    if protected(c) && c.s.cpl() > iopl(c) {
        if v86(c) {
            return Err(Trap::Unsupported("virtual-8086 mode"));
        }
        return Err(gp0());
    }
    Ok(())
}

/// What POPF/IRET may change in RFLAGS at the current privilege: IOPL only at CPL 0, IF only
/// when CPL ≤ IOPL (silently kept otherwise: no fault, as the SDM says).
pub fn popf_mask(c: &Cpu) -> u64 {
    let mut mask = rflags::ARITH | rflags::TF | rflags::DF | rflags::NT | rflags::AC | rflags::ID;
    let cpl = c.s.cpl();
    if !protected(c) || cpl == 0 {
        mask |= rflags::IOPL | rflags::IF;
    } else if cpl <= iopl(c) {
        mask |= rflags::IF;
    }
    mask
}

/// IN/OUT/INS/OUTS of `size` bytes at `port`. In protected mode with CPL > IOPL (or in
/// virtual-8086 mode) every bit of the TSS I/O permission bitmap for the bytes accessed
/// must be clear (SDM vol. 1 §19.5.2). Also records I/O breakpoints (CR4.DE) that match,
/// for the #DB trap after the instruction.
pub fn io(c: &mut Cpu, port: u16, size: u8) -> Flow {
    if protected(c) && (v86(c) || c.s.cpl() > iopl(c)) {
        io_bitmap(c, port, size)?;
    }
    if c.s.dr7 & 0xff != 0 && c.s.cr4 & cr4::DE != 0 {
        crate::debug::note_io(c, port, size);
    }
    Ok(())
}

fn io_bitmap(c: &mut Cpu, port: u16, size: u8) -> Flow {
    let tr = c.s.tr;
    // Only a 32-bit (or 64-bit) TSS, available or busy, has a bitmap.
    let typ = tr.attr & seg_attr::TYPE_MASK;
    if tr.attr & seg_attr::UNUSABLE != 0 || !matches!(typ, 9 | 0xb) || tr.limit < 0x67 {
        return Err(gp0());
    }
    let map_base = c.read_lin_sys(tr.base.wrapping_add(0x66), 2)?;
    // Two bytes are read so that an access spanning a byte boundary is covered; both must
    // lie within the TSS limit.
    let off = map_base + (port as u64 >> 3);
    if off + 1 > tr.limit as u64 {
        return Err(gp0());
    }
    let bits = c.read_lin_sys(tr.base.wrapping_add(off), 2)?;
    let mask = ((1u64 << size) - 1) << (port & 7);
    if bits & mask != 0 {
        return Err(gp0());
    }
    Ok(())
}

/// MOV to/from DRn: CPL 0, then DR7.GD (general detect): #DB before the access with
/// DR6.BD set and GD cleared so that the handler can use the debug registers.
pub fn debug_register(c: &mut Cpu) -> Flow {
    cpl0(c)?;
    if c.s.dr7 & crate::debug::DR7_GD != 0 {
        c.s.dr7 &= !crate::debug::DR7_GD;
        c.s.dr6 = (c.s.dr6 & !0xf) | crate::debug::DR6_BD;
        return Err(Trap::Exception(Exception::new(DB)));
    }
    Ok(())
}

/// SGDT/SIDT/SLDT/STR/SMSW: #GP(0) at CPL > 0 when CR4.UMIP is set.
pub fn store_descriptor(c: &Cpu) -> Flow {
    if c.s.cr4 & cr4::UMIP != 0 && c.s.cpl() > 0 && protected(c) {
        return Err(gp0());
    }
    Ok(())
}

/// RDTSC/RDTSCP: #GP(0) at CPL > 0 when CR4.TSD is set.
pub fn tsc(c: &Cpu) -> Flow {
    if c.s.cr4 & cr4::TSD != 0 && c.s.cpl() != 0 && protected(c) {
        return Err(gp0());
    }
    Ok(())
}

/// RDPMC: #GP(0) at CPL > 0 unless CR4.PCE. The model has no performance counters
/// (CPUID leaf 0xA is absent), so every counter index is invalid: #GP(0) after the
/// privilege check too.
pub fn pmc(c: &Cpu, _counter: u32) -> Flow {
    if c.s.cr4 & cr4::PCE == 0 && c.s.cpl() != 0 && protected(c) {
        return Err(gp0());
    }
    Err(gp0())
}

/// CPUID: never faults (CPUID faulting is not advertised).
#[inline]
pub fn cpuid(_c: &Cpu) -> Flow {
    Ok(())
}

/// MONITOR/MWAIT: not advertised (CPUID.1:ECX.MONITOR = 0), so #UD.
pub fn monitor_mwait(_c: &Cpu) -> Flow {
    Err(ud())
}

/// SYSCALL: #UD unless EFER.SCE and 64-bit mode (Intel: SYSCALL is invalid in legacy and
/// compatibility mode; the model is GenuineIntel).
pub fn syscall(c: &Cpu) -> Flow {
    if c.s.efer & efer::SCE == 0 || !c.mode64 {
        return Err(ud());
    }
    Ok(())
}

/// SYSRET: #UD unless EFER.SCE and 64-bit mode; #GP(0) unless CPL 0.
pub fn sysret(c: &Cpu) -> Flow {
    syscall(c)?;
    cpl0(c)
}

/// SYSENTER: #GP(0) in real mode or when IA32_SYSENTER_CS selects the null descriptor.
pub fn sysenter(c: &Cpu) -> Flow {
    if !protected(c) || c.s.msr.sysenter_cs & 0xfffc == 0 {
        return Err(gp0());
    }
    Ok(())
}

/// SYSEXIT: as SYSENTER, and CPL 0.
pub fn sysexit(c: &Cpu) -> Flow {
    sysenter(c)?;
    cpl0(c)
}

/// SWAPGS: #UD outside 64-bit mode, #GP(0) at CPL > 0.
pub fn swapgs(c: &Cpu) -> Flow {
    if !c.mode64 {
        return Err(ud());
    }
    cpl0(c)
}

/// Alignment check (#AC(0)) for a data access by the instruction: CR0.AM, EFLAGS.AC, CPL 3
/// and an address that is not a multiple of the operand size. Implicit supervisor accesses
/// (descriptor tables, the TSS, the interrupt frame) are not checked.
#[inline]
pub fn alignment_active(c: &Cpu) -> bool {
    c.s.cr0 & cr0::AM != 0 && c.s.rflags & rflags::AC != 0 && c.s.cpl() == 3
}

pub fn alignment(c: &Cpu, lin: u64, size: u8) -> Flow {
    if size > 1 && lin & (size as u64 - 1) != 0 && alignment_active(c) {
        return Err(Trap::Exception(Exception::with_code(AC, 0)));
    }
    Ok(())
}

/// The x87 unmasked-exception hook (for the x87 work): #MF when CR0.NE; with NE clear PCs
/// route FERR# to IRQ 13, which is not modelled.
pub fn x87_error(c: &Cpu) -> Trap {
    if c.s.cr0 & cr0::NE != 0 {
        Trap::Exception(Exception::new(MF))
    } else {
        Trap::Unsupported("x87 error reporting through FERR#/IRQ 13 (CR0.NE = 0)")
    }
}

/// The SSE unmasked-exception hook (for the SSE work): #XM when CR4.OSXMMEXCPT, else #UD.
pub fn simd_error(c: &Cpu) -> Trap {
    if c.s.cr4 & cr4::OSXMMEXCPT != 0 {
        Trap::Exception(Exception::new(XM))
    } else {
        ud()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::env;
    use crate::exception::GP;
    use crate::state::{CpuState, Segment, CS, SS};

    fn user_cpu() -> Cpu {
        let mut s = CpuState::protected_flat();
        s.seg[SS].attr |= 3 << seg_attr::DPL_SHIFT;
        s.seg[CS].attr |= 3 << seg_attr::DPL_SHIFT;
        s.seg[CS].selector |= 3;
        Cpu::new(env(1 << 20), s)
    }

    fn gp_code(f: Flow) -> Option<u32> {
        match f {
            Err(Trap::Exception(e)) if e.vector == GP => e.error_code,
            _ => None,
        }
    }

    #[test]
    fn cpl3_privileged_and_iopl() {
        let mut c = user_cpu();
        assert_eq!(gp_code(cpl0(&c)), Some(0));
        assert_eq!(gp_code(interrupt_flag(&c)), Some(0));
        c.s.rflags |= rflags::IOPL;
        assert!(interrupt_flag(&c).is_ok());
        assert!(io(&mut c, 0x3f8, 1).is_ok());
        assert_eq!(popf_mask(&c) & rflags::IOPL, 0);
        assert_ne!(popf_mask(&c) & rflags::IF, 0);
    }

    #[test]
    fn tsd_pce_umip() {
        let mut c = user_cpu();
        assert!(tsc(&c).is_ok());
        c.s.cr4 |= cr4::TSD | cr4::UMIP;
        assert_eq!(gp_code(tsc(&c)), Some(0));
        assert_eq!(gp_code(store_descriptor(&c)), Some(0));
        assert_eq!(gp_code(pmc(&c, 0)), Some(0));
    }

    #[test]
    fn io_bitmap_every_byte() {
        let mut c = user_cpu();
        // A 32-bit TSS at 0x1000 with the bitmap at offset 0x68, limit covering 16 bytes of it
        // (ports 0–127).
        c.s.tr = Segment {
            selector: 0x28,
            base: 0x1000,
            limit: 0x68 + 16,
            attr: 0x8b,
        };
        c.write_lin(0x1066, 2, 0x68).unwrap();
        // Allow ports 0x40–0x47 except 0x43.
        c.write_lin(0x1068 + 8, 1, 0x08).unwrap();
        assert!(io(&mut c, 0x40, 1).is_ok());
        assert!(io(&mut c, 0x40, 2).is_ok());
        assert!(io(&mut c, 0x44, 4).is_ok());
        assert_eq!(gp_code(io(&mut c, 0x43, 1)), Some(0));
        assert_eq!(gp_code(io(&mut c, 0x42, 2)), Some(0));
        assert_eq!(gp_code(io(&mut c, 0x40, 4)), Some(0));
        // Other map bytes are zero (allowed) up to the limit (inclusive): port 0x7f reads
        // map bytes 15 and 16, both inside; port 0x80 needs byte 17, beyond it.
        assert!(io(&mut c, 0x50, 1).is_ok());
        assert!(io(&mut c, 0x7f, 1).is_ok());
        assert_eq!(gp_code(io(&mut c, 0x80, 1)), Some(0));
        assert_eq!(gp_code(io(&mut c, 0x3f8, 1)), Some(0));
        // A 16-bit TSS has no bitmap.
        c.s.tr.attr = 0x83;
        assert_eq!(gp_code(io(&mut c, 0x40, 1)), Some(0));
    }

    #[test]
    fn general_detect() {
        let mut s = CpuState::protected_flat();
        s.dr7 = 0x400 | crate::debug::DR7_GD;
        let mut c = Cpu::new(env(1 << 20), s);
        assert_eq!(
            debug_register(&mut c),
            Err(Trap::Exception(Exception::new(DB)))
        );
        assert_ne!(c.s.dr6 & crate::debug::DR6_BD, 0);
        assert_eq!(c.s.dr7 & crate::debug::DR7_GD, 0);
        assert!(debug_register(&mut c).is_ok());
    }

    #[test]
    fn alignment_only_at_cpl3_with_am_and_ac() {
        let mut c = user_cpu();
        assert!(alignment(&c, 0x1001, 4).is_ok());
        c.s.cr0 |= cr0::AM;
        c.s.rflags |= rflags::AC;
        assert_eq!(
            alignment(&c, 0x1001, 4),
            Err(Trap::Exception(Exception::with_code(AC, 0)))
        );
        assert!(alignment(&c, 0x1004, 4).is_ok());
        assert!(alignment(&c, 0x1001, 1).is_ok());
    }
}
