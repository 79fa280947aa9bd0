//! Fast system calls: SYSCALL/SYSRET (64-bit mode, STAR/LSTAR/SFMASK) and SYSENTER/SYSEXIT
//! (legacy and 64-bit forms, IA32_SYSENTER_CS/ESP/EIP), as SDM vol. 2 describes them. The
//! segment registers are loaded with fixed flat descriptors, never read from the GDT.

use iced_x86::{Instruction, Mnemonic};

use crate::cpu::Cpu;
use crate::decode::{Handler, Insn};
use crate::exception::{gp0, Flow};
use crate::model::{feat, CpuModel};
use crate::monitor;
use crate::state::{rflags, seg_attr, Segment, CS, RCX, RDX, RSP, SS};

pub fn lookup(i: &Instruction, model: &CpuModel) -> Option<Handler> {
    use Mnemonic::*;
    Some(match i.mnemonic() {
        Syscall if model.has_ext1_edx(feat::SYSCALL) => syscall,
        Sysret | Sysretq if model.has_ext1_edx(feat::SYSCALL) => sysret,
        Sysenter if model.leaf1_edx & feat::SEP != 0 => sysenter,
        Sysexit | Sysexitq if model.leaf1_edx & feat::SEP != 0 => sysexit,
        _ => return None,
    })
}

/// Flat code segment at `dpl`: 64-bit (L) or 32-bit (D).
fn flat_code(selector: u16, dpl: u8, long: bool) -> Segment {
    let mut attr = 0xb | seg_attr::S | seg_attr::P | seg_attr::G | ((dpl as u32) << 5);
    attr |= if long { seg_attr::L } else { seg_attr::DB };
    Segment {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        attr,
    }
}

/// Flat writable, accessed data (stack) segment at `dpl`.
fn flat_stack(selector: u16, dpl: u8) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | seg_attr::S | seg_attr::P | seg_attr::G | seg_attr::DB | ((dpl as u32) << 5),
    }
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

fn syscall(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::syscall(c)?;
    let star_cs = ((c.s.msr.star >> 32) & 0xfffc) as u16;
    let flags = c.rflags();
    c.s.gpr[RCX] = c.next_rip;
    // RF is clear in the saved image: the instruction completed.
    c.s.gpr[11] = flags & !rflags::RF;
    c.set_rflags(flags & !c.s.msr.sfmask & !rflags::RF);
    c.s.seg[CS] = flat_code(star_cs, 0, true);
    c.s.seg[SS] = flat_stack(star_cs.wrapping_add(8), 0);
    c.next_rip = c.s.msr.lstar;
    c.update_mode();
    Ok(())
}

fn sysret(c: &mut Cpu, i: &Insn) -> Flow {
    monitor::sysret(c)?;
    let base = ((c.s.msr.star >> 48) & 0xffff) as u16;
    // REX.W selects the 64-bit form (the decoder's default size treats SYSRET as a return).
    let to64 = i.raw.mnemonic() == Mnemonic::Sysretq;
    let rcx = c.s.gpr[RCX];
    // The #GP for a non-canonical RCX is taken in ring 0, before anything changes.
    if to64 && !canonical(rcx) {
        return Err(gp0());
    }
    let target = if to64 { rcx } else { rcx & 0xffff_ffff };
    c.set_rflags((c.s.gpr[11] & 0x3c_7fd7) | rflags::FIXED1);
    c.s.seg[CS] = if to64 {
        flat_code(base.wrapping_add(16) | 3, 3, true)
    } else {
        flat_code(base | 3, 3, false)
    };
    c.s.seg[SS] = flat_stack(base.wrapping_add(8) | 3, 3);
    c.next_rip = target;
    c.update_mode();
    Ok(())
}

fn sysenter(c: &mut Cpu, _: &Insn) -> Flow {
    monitor::sysenter(c)?;
    let cs = (c.s.msr.sysenter_cs & 0xfffc) as u16;
    let long = c.s.long_mode_active();
    let flags = c.rflags();
    c.set_rflags(flags & !(rflags::VM | rflags::IF | rflags::RF));
    c.s.seg[CS] = flat_code(cs, 0, long);
    c.s.seg[SS] = flat_stack(cs.wrapping_add(8), 0);
    let (sp, ip) = (c.s.msr.sysenter_esp, c.s.msr.sysenter_eip);
    if long {
        c.s.gpr[RSP] = sp;
        c.next_rip = ip;
    } else {
        c.s.gpr[RSP] = sp & 0xffff_ffff;
        c.next_rip = ip & 0xffff_ffff;
    }
    c.update_mode();
    Ok(())
}

fn sysexit(c: &mut Cpu, i: &Insn) -> Flow {
    monitor::sysexit(c)?;
    let cs = (c.s.msr.sysenter_cs & 0xffff) as u16;
    let to64 = i.raw.mnemonic() == Mnemonic::Sysexitq;
    let (rcx, rdx) = (c.s.gpr[RCX], c.s.gpr[RDX]);
    if to64 && !(canonical(rcx) && canonical(rdx)) {
        return Err(gp0());
    }
    if to64 {
        c.s.seg[CS] = flat_code(cs.wrapping_add(32) | 3, 3, true);
        c.s.seg[SS] = flat_stack(cs.wrapping_add(40) | 3, 3);
        c.s.gpr[RSP] = rcx;
        c.next_rip = rdx;
    } else {
        c.s.seg[CS] = flat_code(cs.wrapping_add(16) | 3, 3, false);
        c.s.seg[SS] = flat_stack(cs.wrapping_add(24) | 3, 3);
        c.s.gpr[RSP] = rcx & 0xffff_ffff;
        c.next_rip = rdx & 0xffff_ffff;
    }
    c.update_mode();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::exception::{Exception, GP, UD};
    use crate::exec::RunExit;
    use crate::state::{efer, CS, RCX, SS};
    use crate::testing::{machine64, run64};

    // syscall; (at LSTAR) sysretq, or the 32-bit sysretl.
    const SYSCALL: [u8; 2] = [0x0f, 0x05];

    #[test]
    fn syscall_needs_sce() {
        let mut it = machine64();
        let r = run64(&mut it, &SYSCALL);
        assert_eq!(r, RunExit::Exception(Exception::new(UD)));
    }

    /// Makes the test identity map user-accessible.
    fn user_pages(it: &mut crate::exec::Interpreter) {
        let m = &it.cpu.env.mem;
        m.write_u64(it.cpu.s.cr3, 0x2000 | 7).unwrap();
        m.write_u64(0x2000, 0x3000 | 7).unwrap();
        for i in 0..512u64 {
            m.write_u64(0x3000 + i * 8, (i << 21) | 0x87).unwrap();
        }
        it.cpu.flush_tlb();
    }

    #[test]
    fn syscall_enters_ring0_and_sysret_returns() {
        let mut it = machine64();
        user_pages(&mut it);
        it.cpu.s.efer |= efer::SCE;
        // Kernel CS 0x10 / SS 0x18; user base 0x20: SYSRET64 CS 0x33, SS 0x2b.
        it.cpu.s.msr.star = (0x20u64 << 48) | (0x10u64 << 32);
        it.cpu.s.msr.sfmask = 0x200; // IF
        let start = crate::testing::CODE;
        // syscall at start; the kernel entry (LSTAR) is `sysretq` right after it.
        it.cpu.s.msr.lstar = start + 2;
        it.cpu.s.gpr[11] = 0;
        // The guest returns to RCX (start + 2) in ring 3 and runs the sysretq again there:
        // #GP(0) because CPL is 3.
        let r = run64(&mut it, &[0x0f, 0x05, 0x48, 0x0f, 0x07]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(GP, 0)));
        let s = it.cpu.state();
        assert_eq!(s.seg[CS].selector, 0x33);
        assert_eq!(s.seg[SS].selector, 0x2b);
        assert_eq!(s.cpl(), 3);
        assert_eq!(s.rip, start + 2);
    }

    #[test]
    fn sysretl_returns_to_compatibility_mode() {
        let mut it = machine64();
        user_pages(&mut it);
        it.cpu.s.efer |= efer::SCE;
        it.cpu.s.msr.star = 0x30u64 << 48;
        // sysretl to a HLT in 32-bit code at CPL 3: #GP(0).
        it.cpu.s.gpr[RCX] = crate::testing::CODE + 2;
        let r = run64(&mut it, &[0x0f, 0x07]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(GP, 0)));
        let s = it.cpu.state();
        assert_eq!(s.seg[CS].selector, 0x33);
        assert!(!s.seg[CS].long() && s.seg[CS].big());
        assert_eq!(s.rip, crate::testing::CODE + 2);
    }

    #[test]
    fn sysret_noncanonical_rcx_faults_in_ring0() {
        let mut it = machine64();
        it.cpu.s.efer |= efer::SCE;
        it.cpu.s.gpr[RCX] = 0x8000_0000_0000;
        let r = run64(&mut it, &[0x48, 0x0f, 0x07]);
        assert_eq!(r, RunExit::Exception(Exception::with_code(GP, 0)));
        assert_eq!(it.cpu.state().cpl(), 0);
    }
}
