//! Debug exceptions: EFLAGS.TF single-stepping and the DR0–DR3 breakpoints (execute, data
//! write, data read/write, I/O) with DR6/DR7 semantics and RF (SDM vol. 3 ch. 18), plus
//! alignment checking (#AC), which needs the same per-access hook.
//!
//! None of this may cost the common case anything: the run loop looks at one word of state
//! per block (`Cpu::needs_slow_path`) and only then single-steps through `Interpreter::step`,
//! which calls into here. Data breakpoints and #AC need to see every data access, so while
//! they are armed the TLB is bypassed (`Tlb::set_bypass`) and every access takes the slow
//! path, where `watch_access` looks at it.

use crate::cpu::Cpu;
use crate::exception::Trap;
use crate::mmu::Access;
use crate::state::{cr0, cr4, rflags, CS};

pub const DR6_BD: u64 = 1 << 13;
pub const DR6_BS: u64 = 1 << 14;
pub const DR7_GD: u64 = 1 << 13;
/// DR6 bits that read as 1 (reserved) on a processor without RTM.
pub const DR6_FIXED1: u64 = 0xffff_0ff0;

/// The R/W field of breakpoint `n` in DR7.
#[inline]
fn rw(dr7: u64, n: usize) -> u64 {
    (dr7 >> (16 + n * 4)) & 3
}

/// Length in bytes of breakpoint `n` (LEN: 00 = 1, 01 = 2, 11 = 4, 10 = 8).
#[inline]
fn len(dr7: u64, n: usize) -> u64 {
    match (dr7 >> (18 + n * 4)) & 3 {
        0 => 1,
        1 => 2,
        2 => 8,
        _ => 4,
    }
}

#[inline]
fn enabled(dr7: u64, n: usize) -> bool {
    dr7 & (3 << (n * 2)) != 0
}

/// Whether `[addr, addr+size)` overlaps breakpoint `n`'s range (its address aligned down
/// to its length, as the hardware compares).
fn overlaps(c: &Cpu, n: usize, addr: u64, size: u64) -> bool {
    let l = len(c.s.dr7, n);
    let start = c.s.dr[n] & !(l - 1);
    addr < start.wrapping_add(l) && start < addr.wrapping_add(size)
}

impl Cpu {
    /// Whether the next instructions must be single-stepped: TF or RF set, a breakpoint
    /// enabled in DR7, alignment checking possible (CR0.AM and EFLAGS.AC, the same bit), or
    /// a debug trap held over an interrupt shadow.
    #[inline(always)]
    pub fn needs_slow_path(&self) -> bool {
        let s = &self.s;
        ((s.rflags & (rflags::TF | rflags::RF))
            | (s.rflags & s.cr0 & cr0::AM)
            | (s.dr7 & 0xff)
            | self.dbg.pending)
            != 0
    }

    /// Whether data accesses must be watched (data breakpoints or #AC armed).
    pub(crate) fn wants_watch(&self) -> bool {
        let dr7 = self.s.dr7;
        crate::monitor::alignment_active(self)
            || (0..4).any(|n| enabled(dr7, n) && matches!(rw(dr7, n), 1 | 3))
    }

    /// Turns the per-access watch (TLB bypass) on or off.
    pub(crate) fn set_watch(&mut self, on: bool) {
        if self.dbg.watch != on {
            self.dbg.watch = on;
            self.tlb.set_bypass(on);
        }
    }

    /// Called on every data access that missed the TLB while the watch is on: #AC for a
    /// misaligned user access, and data breakpoints at any CPL (remembered, reported as a
    /// trap after the instruction).
    pub(crate) fn watch_access(&mut self, lin: u64, size: u8, access: Access) -> Result<(), Trap> {
        // Implicit supervisor accesses (descriptor tables, TSS, interrupt frames) made for
        // CPL 3 code are never alignment-checked.
        if self.tlb.user_mode() {
            crate::monitor::alignment(self, lin, size)?;
        }
        let dr7 = self.s.dr7;
        for n in 0..4 {
            if !enabled(dr7, n) {
                continue;
            }
            let hit = match rw(dr7, n) {
                1 => access == Access::Write,
                3 => access != Access::Exec,
                _ => false,
            };
            if hit && overlaps(self, n, lin, size as u64) {
                self.dbg.hits |= 1 << n;
            }
        }
        Ok(())
    }

    /// The linear address of the next instruction (what execute breakpoints compare).
    pub fn linear_rip(&self) -> u64 {
        if self.mode64 {
            self.s.rip
        } else {
            self.s.seg[CS].base.wrapping_add(self.s.rip) & 0xffff_ffff
        }
    }

    /// Execute breakpoints that match the next instruction (B0–B3 bits), unless RF.
    pub fn exec_breakpoints(&self) -> u64 {
        if self.s.rflags & rflags::RF != 0 {
            return 0;
        }
        let dr7 = self.s.dr7;
        let lin = self.linear_rip();
        (0..4)
            .filter(|&n| enabled(dr7, n) && rw(dr7, n) == 0 && self.s.dr[n] == lin)
            .fold(0, |m, n| m | 1 << n)
    }

    /// Reports a #DB: B0–B3 are replaced by `hits`, BS/BD are sticky (SDM vol. 3 §18.2.3).
    pub fn set_dr6(&mut self, hits: u64, single_step: bool) {
        let mut d = (self.s.dr6 & !0xf) | (hits & 0xf) | DR6_FIXED1;
        if single_step {
            d |= DR6_BS;
        }
        self.s.dr6 = d;
    }
}

/// I/O breakpoints (R/W = 10 with CR4.DE): an access to any port of the breakpoint's range.
pub(crate) fn note_io(c: &mut Cpu, port: u16, size: u8) {
    if c.s.cr4 & cr4::DE == 0 {
        return;
    }
    let dr7 = c.s.dr7;
    for n in 0..4 {
        if enabled(dr7, n) && rw(dr7, n) == 2 && overlaps(c, n, port as u64, size as u64) {
            c.dbg.hits |= 1 << n;
        }
    }
}

/// Debug state that is not architectural (the architectural part is DR0–7 in `CpuState`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugState {
    /// Breakpoints hit by the current instruction's data/I/O accesses (B0–B3).
    pub hits: u64,
    /// DR6 bits of a #DB trap held until the end of an interrupt shadow (MOV SS/POP SS), or
    /// `BS` | hits; 0 when none is pending.
    pub pending: u64,
    /// Data accesses are being watched (TLB bypassed).
    pub watch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::env;
    use crate::state::CpuState;

    #[test]
    fn lengths_and_overlap() {
        let mut c = Cpu::new(env(1 << 20), CpuState::protected_flat());
        // DR0: 4-byte write breakpoint at 0x1002 (compared as 0x1000..0x1004).
        c.s.dr[0] = 0x1002;
        c.s.dr7 = 0x400 | 1 | (1 << 16) | (3 << 18);
        assert_eq!(len(c.s.dr7, 0), 4);
        assert!(overlaps(&c, 0, 0x1003, 1));
        assert!(overlaps(&c, 0, 0xffe, 4));
        assert!(!overlaps(&c, 0, 0x1004, 4));
        assert!(!overlaps(&c, 0, 0xffc, 4));
        assert!(c.wants_watch());
        // Execute breakpoint at the current RIP, suppressed by RF.
        c.s.dr7 = 0x400 | 2 << 2;
        c.s.dr[1] = c.linear_rip();
        assert!(!c.wants_watch());
        assert_eq!(c.exec_breakpoints(), 2);
        c.s.rflags |= rflags::RF;
        assert_eq!(c.exec_breakpoints(), 0);
    }

    #[test]
    fn io_breakpoints_need_de() {
        let mut c = Cpu::new(env(1 << 20), CpuState::protected_flat());
        c.s.dr[3] = 0x3f8;
        c.s.dr7 = 0x400 | (1 << 6) | (2 << 28) | (1 << 30);
        note_io(&mut c, 0x3f9, 1);
        assert_eq!(c.dbg.hits, 0);
        c.s.cr4 |= cr4::DE;
        note_io(&mut c, 0x3f7, 1);
        assert_eq!(c.dbg.hits, 0);
        note_io(&mut c, 0x3f9, 1);
        assert_eq!(c.dbg.hits, 8);
    }
}
