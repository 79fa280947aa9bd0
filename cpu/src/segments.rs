//! Segment descriptor loads (MOV Sreg, POP Sreg, far transfers, LDS…).
//!
//! The foundation covers real mode and flat protected/long mode with the checks a loader
//! needs (present, type, null selector); the system-CPU work adds every privilege check.

use crate::cpu::Cpu;
use crate::exception::{gp, Exception, Trap, NP, SS as SS_VEC};
use crate::state::{cr0, rflags, seg_attr, Segment, CS, SS};

impl Cpu {
    /// Reads the descriptor for `selector` from the GDT or LDT. `None` for a null selector.
    pub fn read_descriptor(&mut self, selector: u16) -> Result<Option<Segment>, Trap> {
        if selector & !3 == 0 {
            return Ok(None);
        }
        let (base, limit) = if selector & 4 != 0 {
            if self.s.ldtr.attr & seg_attr::UNUSABLE != 0 || !self.s.ldtr.present() {
                return Err(gp(selector as u32 & !3));
            }
            (self.s.ldtr.base, self.s.ldtr.limit)
        } else {
            (self.s.gdtr.base, self.s.gdtr.limit as u32)
        };
        let off = (selector & !7) as u64;
        if off + 7 > limit as u64 {
            return Err(gp(selector as u32 & !3));
        }
        let addr = base.wrapping_add(off);
        let raw = self.read_lin_sys(addr, 8)?;
        let mut seg = decode_descriptor(selector, raw);
        // A 16-byte system descriptor in long mode carries base bits 63:32 in the next qword.
        if self.s.long_mode_active()
            && seg.attr & seg_attr::S == 0
            && matches!(seg.attr & 0xf, 2 | 9 | 0xb)
        {
            let hi = self.read_lin_sys(addr + 8, 8)?;
            seg.base |= (hi & 0xffff_ffff) << 32;
        }
        // Set the accessed bit, as the processor does on a load.
        if seg.attr & seg_attr::S != 0 && raw & (1 << 40) == 0 {
            let user = self.s.cpl() == 3;
            self.tlb.set_user(false);
            let _ = self.write_lin(addr + 5, 1, ((raw >> 40) as u8 | 1) as u64);
            self.tlb.set_user(user);
            seg.attr |= seg_attr::ACCESSED;
        }
        Ok(Some(seg))
    }

    /// Loads a data or stack segment register (not CS).
    pub fn load_segment(&mut self, seg: usize, selector: u16) -> Result<(), Trap> {
        if self.s.cr0 & cr0::PE == 0 || self.s.rflags & rflags::VM != 0 {
            self.s.seg[seg] = Segment {
                selector,
                base: (selector as u64) << 4,
                ..self.s.seg[seg]
            };
            if seg == SS {
                self.update_mode();
            }
            return Ok(());
        }
        let rpl = (selector & 3) as u8;
        let cpl = self.s.cpl();
        let Some(desc) = self.read_descriptor(selector)? else {
            if seg == SS && !(self.mode64 && rpl == cpl) {
                return Err(gp(0));
            }
            self.s.seg[seg] = Segment {
                selector,
                base: 0,
                limit: 0,
                attr: seg_attr::UNUSABLE,
            };
            return Ok(());
        };
        let code = desc.attr & seg_attr::CODE != 0;
        let rw = desc.attr & seg_attr::RW != 0;
        if desc.attr & seg_attr::S == 0 {
            return Err(gp(selector as u32 & !3));
        }
        if seg == SS {
            if code || !rw || rpl != cpl || desc.dpl() != cpl {
                return Err(gp(selector as u32 & !3));
            }
            if !desc.present() {
                return Err(Trap::Exception(Exception::with_code(
                    SS_VEC,
                    selector as u32 & !3,
                )));
            }
        } else {
            if code && !rw {
                return Err(gp(selector as u32 & !3));
            }
            let conforming_code = code && desc.attr & seg_attr::CE != 0;
            if !conforming_code && (rpl > desc.dpl() || cpl > desc.dpl()) {
                return Err(gp(selector as u32 & !3));
            }
            if !desc.present() {
                return Err(Trap::Exception(Exception::with_code(
                    NP,
                    selector as u32 & !3,
                )));
            }
        }
        self.s.seg[seg] = desc;
        if seg == SS {
            self.update_mode();
        }
        Ok(())
    }

    /// Loads CS for a far JMP/CALL/RET to `selector:offset` at the same privilege level
    /// (the gate and privilege-changing forms come with the system-CPU work).
    pub fn load_cs_far(&mut self, selector: u16, offset: u64, size: u8) -> Result<(), Trap> {
        if self.s.cr0 & cr0::PE == 0 || self.s.rflags & rflags::VM != 0 {
            self.s.seg[CS] = Segment {
                selector,
                base: (selector as u64) << 4,
                ..self.s.seg[CS]
            };
            self.next_rip = offset & if size == 2 { 0xffff } else { 0xffff_ffff };
            self.update_mode();
            return Ok(());
        }
        let Some(desc) = self.read_descriptor(selector)? else {
            return Err(gp(0));
        };
        if desc.attr & seg_attr::S == 0 {
            return Err(Trap::Unsupported(
                "far transfer through a call gate or task (system-CPU work)",
            ));
        }
        if desc.attr & seg_attr::CODE == 0 {
            return Err(gp(selector as u32 & !3));
        }
        let cpl = self.s.cpl();
        let rpl = (selector & 3) as u8;
        if desc.attr & seg_attr::CE != 0 {
            if desc.dpl() > cpl {
                return Err(gp(selector as u32 & !3));
            }
        } else if rpl > cpl || desc.dpl() != cpl {
            return Err(gp(selector as u32 & !3));
        }
        if !desc.present() {
            return Err(Trap::Exception(Exception::with_code(
                NP,
                selector as u32 & !3,
            )));
        }
        let long = self.s.long_mode_active() && desc.long();
        let target = match (long, size) {
            (true, _) => offset,
            (false, 2) => offset & 0xffff,
            _ => offset & 0xffff_ffff,
        };
        if !long && target > desc.limit as u64 {
            return Err(gp(0));
        }
        self.s.seg[CS] = Segment {
            selector: (selector & !3) | cpl as u16,
            ..desc
        };
        self.next_rip = target;
        self.update_mode();
        Ok(())
    }
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
