//! Segment descriptor loads (MOV Sreg, POP Sreg, far transfers, LDS…).
//!
//! Descriptor reads, data/stack segment loads with every check of SDM vol. 3 ch. 5, and
//! the per-access limit/type checks (skipped for flat segments via `Cpu::seg_fast`). Far
//! transfers through gates live in `far.rs`, task switches in `tasks.rs`.

use crate::cpu::Cpu;
use crate::exception::{gp, Exception, Trap, GP, NP, SS as SS_VEC, TS};
use crate::state::{cr0, rflags, seg_attr, Segment, DS, ES, FS, GS, SS};

impl Cpu {
    /// Linear address of the descriptor for `selector` in the GDT or LDT, or `None` when
    /// it lies past the table's limit (or the LDT is unusable). `bytes` is 8, or 16 for a
    /// long-mode system descriptor.
    pub fn descriptor_addr(&self, selector: u16, bytes: u64) -> Option<u64> {
        let (base, limit) = if selector & 4 != 0 {
            if self.s.ldtr.attr & seg_attr::UNUSABLE != 0 || !self.s.ldtr.present() {
                return None;
            }
            (self.s.ldtr.base, self.s.ldtr.limit)
        } else {
            (self.s.gdtr.base, self.s.gdtr.limit as u32)
        };
        let off = (selector & !7) as u64;
        if off + bytes - 1 > limit as u64 {
            return None;
        }
        Some(base.wrapping_add(off))
    }

    /// Reads the raw descriptor for a non-null `selector`: the low qword and, for a
    /// system descriptor in long mode (16 bytes), the high one. #GP(selector) when it lies
    /// past the table limit.
    pub fn read_descriptor_raw(&mut self, selector: u16) -> Result<(u64, u64), Trap> {
        let addr = self
            .descriptor_addr(selector, 8)
            .ok_or_else(|| gp(selector as u32 & !3))?;
        let lo = self.read_lin_sys(addr, 8)?;
        let system = lo & (1 << 44) == 0;
        if !(self.s.long_mode_active() && system) {
            return Ok((lo, 0));
        }
        let addr = self
            .descriptor_addr(selector, 16)
            .ok_or_else(|| gp(selector as u32 & !3))?;
        Ok((lo, self.read_lin_sys(addr + 8, 8)?))
    }

    /// Reads the descriptor for `selector` from the GDT or LDT. `None` for a null selector.
    /// The accessed bit is not touched: `mark_accessed` sets it once a load succeeded.
    pub fn read_descriptor(&mut self, selector: u16) -> Result<Option<Segment>, Trap> {
        if selector & !3 == 0 {
            return Ok(None);
        }
        let (lo, hi) = self.read_descriptor_raw(selector)?;
        let mut seg = decode_descriptor(selector, lo);
        // A 16-byte system descriptor in long mode carries base bits 63:32 in the next qword.
        if self.s.long_mode_active()
            && seg.attr & seg_attr::S == 0
            && matches!(seg.attr & 0xf, 2 | 9 | 0xb)
        {
            seg.base |= (hi & 0xffff_ffff) << 32;
        }
        Ok(Some(seg))
    }

    /// Sets the accessed bit of a code/data descriptor, as the processor does when it loads
    /// a segment register (a supervisor write, whatever the CPL).
    pub fn mark_accessed(&mut self, seg: &mut Segment) {
        if seg.attr & seg_attr::S == 0 || seg.attr & seg_attr::ACCESSED != 0 {
            return;
        }
        seg.attr |= seg_attr::ACCESSED;
        let Some(addr) = self.descriptor_addr(seg.selector, 8) else {
            return;
        };
        let user = self.s.cpl() == 3;
        self.tlb.set_user(false);
        if let Ok(b) = self.read_slow(addr + 5, 1, crate::mmu::Access::Read) {
            let _ = self.write_lin(addr + 5, 1, b | 1);
        }
        self.tlb.set_user(user);
    }

    /// Recomputes `seg_fast`, the per-segment "no limit/type check needed" bits.
    pub fn refresh_segments(&mut self) {
        let pm = self.s.cr0 & cr0::PE != 0 && self.s.rflags & rflags::VM == 0;
        let mut fast = [0u8; 2];
        for (n, s) in self.s.seg.iter().enumerate() {
            let code = s.attr & seg_attr::CODE != 0;
            if s.limit != 0xffff_ffff || (!code && s.attr & seg_attr::CE != 0) {
                continue;
            }
            let bit = 1u8 << n;
            if !pm {
                fast[0] |= bit;
                fast[1] |= bit;
            } else if s.attr & seg_attr::UNUSABLE == 0 {
                let rw = s.attr & seg_attr::RW != 0;
                if !code || rw {
                    fast[0] |= bit;
                }
                if !code && rw {
                    fast[1] |= bit;
                }
            }
        }
        self.seg_fast = fast;
    }

    /// Loads a data or stack segment register (not CS): MOV/POP Sreg, LDS…, with the
    /// checks of the SDM's MOV pseudocode.
    pub fn load_segment(&mut self, seg: usize, selector: u16) -> Result<(), Trap> {
        if self.s.cr0 & cr0::PE == 0 || self.s.rflags & rflags::VM != 0 {
            // Real mode keeps the cached limit and attributes ("unreal" big segments).
            self.s.seg[seg] = Segment {
                selector,
                base: (selector as u64) << 4,
                ..self.s.seg[seg]
            };
            self.refresh_segments();
            return Ok(());
        }
        let cpl = self.s.cpl();
        let desc = if seg == SS {
            self.stack_segment(selector, cpl, Fault::Gp)?
        } else {
            self.data_segment(selector, cpl, Fault::Gp)?
        };
        self.s.seg[seg] = desc;
        if seg == SS {
            self.update_mode();
        } else {
            self.refresh_segments();
        }
        Ok(())
    }

    /// Checks and returns the descriptor a stack segment load of `selector` at privilege
    /// `cpl` gives (null allowed only in 64-bit mode below CPL 3). `kind` picks #GP or #TS
    /// for the selector errors; a not-present segment is #SS.
    pub fn stack_segment(&mut self, selector: u16, cpl: u8, kind: Fault) -> Result<Segment, Trap> {
        let rpl = (selector & 3) as u8;
        let Some(mut desc) = self.read_descriptor_as(selector, kind)? else {
            if self.mode64 && cpl != 3 && rpl == cpl {
                return Ok(null_segment(selector, cpl));
            }
            return Err(kind.trap(0));
        };
        let code = desc.attr & seg_attr::CODE != 0;
        let rw = desc.attr & seg_attr::RW != 0;
        if desc.attr & seg_attr::S == 0 || code || !rw || rpl != cpl || desc.dpl() != cpl {
            return Err(kind.trap(selector));
        }
        if !desc.present() {
            return Err(Fault::Ss.trap(selector));
        }
        self.mark_accessed(&mut desc);
        Ok(desc)
    }

    /// Checks and returns the descriptor a DS/ES/FS/GS load of `selector` gives at `cpl`;
    /// a null selector gives an unusable segment.
    pub fn data_segment(&mut self, selector: u16, cpl: u8, kind: Fault) -> Result<Segment, Trap> {
        let rpl = (selector & 3) as u8;
        let Some(mut desc) = self.read_descriptor_as(selector, kind)? else {
            return Ok(null_segment(selector, 0));
        };
        let code = desc.attr & seg_attr::CODE != 0;
        let rw = desc.attr & seg_attr::RW != 0;
        if desc.attr & seg_attr::S == 0 || (code && !rw) {
            return Err(kind.trap(selector));
        }
        let conforming_code = code && desc.attr & seg_attr::CE != 0;
        if !conforming_code && (rpl > desc.dpl() || cpl > desc.dpl()) {
            return Err(kind.trap(selector));
        }
        if !desc.present() {
            return Err(Fault::Np.trap(selector));
        }
        self.mark_accessed(&mut desc);
        Ok(desc)
    }

    /// `read_descriptor` with the table-limit fault mapped to `kind`.
    fn read_descriptor_as(&mut self, selector: u16, kind: Fault) -> Result<Option<Segment>, Trap> {
        if selector & !3 != 0 && self.descriptor_addr(selector, 8).is_none() {
            return Err(kind.trap(selector));
        }
        self.read_descriptor(selector)
    }

    /// Loads CS for a far JMP/CALL/RET to `selector:offset` (kept for callers outside
    /// the far-transfer code: a JMP).
    pub fn load_cs_far(&mut self, selector: u16, offset: u64, size: u8) -> Result<(), Trap> {
        self.far_transfer(selector, offset, size, false)
    }

    /// Nulls ES/DS/FS/GS when they hold data or non-conforming code segments more
    /// privileged than `cpl` (far RET and IRET to an outer level).
    pub fn null_outer_segments(&mut self, cpl: u8) {
        for n in [ES, DS, FS, GS] {
            let s = self.s.seg[n];
            let conforming = s.attr & seg_attr::CODE != 0 && s.attr & seg_attr::CE != 0;
            if s.attr & seg_attr::UNUSABLE == 0 && !conforming && s.dpl() < cpl {
                self.s.seg[n] = Segment {
                    selector: 0,
                    base: if n >= FS { s.base } else { 0 },
                    limit: 0,
                    attr: seg_attr::UNUSABLE,
                };
            }
        }
        self.refresh_segments();
    }
}

/// Which exception a failed descriptor check raises (the error code is the selector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Gp,
    Ts,
    Np,
    Ss,
}

impl Fault {
    pub fn trap(self, selector: u16) -> Trap {
        let v = match self {
            Fault::Gp => GP,
            Fault::Ts => TS,
            Fault::Np => NP,
            Fault::Ss => SS_VEC,
        };
        Trap::Exception(Exception::with_code(v, selector as u32 & !3))
    }
}

/// A null (unusable) segment register; `dpl` matters for SS, whose DPL is the CPL.
pub fn null_segment(selector: u16, dpl: u8) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0,
        attr: seg_attr::UNUSABLE | ((dpl as u32) << seg_attr::DPL_SHIFT),
    }
}

/// The limit and type checks of a data access outside 64-bit code (SDM vol. 3 §5.3–5.4):
/// null (unusable) segments, writes to code or read-only data, reads of execute-only code
/// → #GP(0); offsets outside the limit (expand-down: outside limit+1..=0xFFFF/0xFFFFFFFF
/// by the B bit) → #SS(0) for SS, #GP(0) otherwise. Real and virtual-8086 mode check only
/// the limit.
#[cold]
pub(crate) fn check_access(
    c: &Cpu,
    seg: usize,
    off: u64,
    size: u8,
    write: bool,
) -> Result<(), Trap> {
    let s = &c.s.seg[seg];
    let pm = c.s.cr0 & cr0::PE != 0 && c.s.rflags & rflags::VM == 0;
    let code = s.attr & seg_attr::CODE != 0;
    if pm {
        if s.attr & seg_attr::UNUSABLE != 0 {
            return Err(gp(0));
        }
        let rw = s.attr & seg_attr::RW != 0;
        // Code: never writable, readable only with R. Data: always readable, W for writes.
        let allowed = if code { !write && rw } else { !write || rw };
        if !allowed {
            return Err(gp(0));
        }
    }
    let last = off.wrapping_add(size as u64 - 1);
    let bad = if !code && s.attr & seg_attr::CE != 0 {
        let upper = if s.big() { 0xffff_ffff } else { 0xffff };
        off <= s.limit as u64 || last > upper || last < off
    } else {
        last > s.limit as u64 || last < off
    };
    if bad {
        return Err(if seg == SS { Fault::Ss.trap(0) } else { gp(0) });
    }
    Ok(())
}

/// Decodes an 8-byte legacy descriptor.
pub fn decode_descriptor(selector: u16, raw: u64) -> Segment {
    let limit_raw = (raw & 0xffff) | ((raw >> 32) & 0xf_0000);
    let base = ((raw >> 16) & 0xff_ffff) | ((raw >> 32) & 0xff00_0000);
    let access = ((raw >> 40) & 0xff) as u32;
    let flags = ((raw >> 52) & 0xf) as u32;
    let g = flags & 8 != 0;
    let limit = if g {
        ((limit_raw as u32) << 12) | 0xfff
    } else {
        limit_raw as u32
    };
    Segment {
        selector,
        base,
        limit,
        attr: access | (flags << 12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_descriptors() {
        let s = decode_descriptor(8, 0x00af_9a00_0000_ffff);
        assert!(s.long());
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.attr & 0xff, 0x9a);
        let s = decode_descriptor(0x10, 0x00cf_9300_0000_ffff);
        assert!(s.big());
        assert_eq!(s.base, 0);
    }
}
