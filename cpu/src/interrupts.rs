//! Event delivery: exceptions, software interrupts and external interrupts through the
//! real-mode IVT, the protected-mode IDT and the long-mode IDT.

use crate::cpu::Cpu;
use crate::exception::{gp, Exception, Trap, DF, GP, NP, SS as SS_VEC, TS};
use crate::state::{cr0, rflags, Segment, CS, RSP, SS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A fault or trap raised by an instruction.
    Exception,
    /// INT n / INT3 / INTO: gate DPL is checked against CPL.
    Software,
    /// An interrupt from the controllers (or NMI).
    External,
}

#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub vector: u8,
    pub error_code: Option<u32>,
    pub kind: EventKind,
}

/// Exception classes for the double-fault rules (SDM vol. 3, table 6-5).
fn class(vector: u8) -> u8 {
    match vector {
        0 | 10..=13 => 1, // contributory
        14 => 2,          // page fault
        _ => 0,           // benign
    }
}

impl Cpu {
    /// Delivers an event. A fault while delivering it is handled as the SDM's table 6-5
    /// says: contributory after contributory, or anything but benign after a page fault,
    /// becomes #DF; otherwise the second exception is delivered instead (serially). A fault
    /// while delivering #DF is a triple fault (returned as an error for the caller to act
    /// on). A fault while delivering INT n/INT3/INTO is a fault of that instruction: it is
    /// returned, so that it is delivered with RIP at the instruction.
    pub fn deliver_event(&mut self, d: Delivery) -> Result<(), Trap> {
        let mut cur = d;
        // Each round either succeeds, escalates to #DF or ends in a triple fault; benign
        // chains are bounded by the small number of distinct vectors involved.
        for _ in 0..8 {
            let second = match self.deliver_once(cur) {
                Ok(()) => return Ok(()),
                Err(Trap::Exception(e)) => e,
                Err(t) => return Err(t),
            };
            if cur.kind == EventKind::Software {
                return Err(Trap::Exception(second));
            }
            if cur.vector == DF && cur.kind == EventKind::Exception {
                return Err(Trap::Exception(second));
            }
            // The fault happened while delivering an event external to the program: the EXT
            // bit of a selector error code says so (SDM vol. 3 §6.13).
            let mut code = second.error_code;
            if matches!(second.vector, TS | NP | SS_VEC | GP) {
                code = code.map(|c| c | 1);
            }
            let (c1, c2) = if cur.kind == EventKind::Exception {
                (class(cur.vector), class(second.vector))
            } else {
                (0, class(second.vector))
            };
            let double = (c1 == 1 && c2 == 1) || (c1 == 2 && c2 != 0);
            cur = if double {
                Delivery {
                    vector: DF,
                    error_code: Some(0),
                    kind: EventKind::Exception,
                }
            } else {
                Delivery {
                    vector: second.vector,
                    error_code: code,
                    kind: EventKind::Exception,
                }
            };
        }
        Err(Trap::Exception(Exception::new(DF)))
    }

    fn deliver_once(&mut self, d: Delivery) -> Result<(), Trap> {
        self.break_block = true;
        self.s.events.interrupt_shadow = false;
        if self.s.cr0 & cr0::PE == 0 {
            self.deliver_real(d.vector)
        } else if self.s.long_mode_active() {
            self.deliver_long(d)
        } else {
            self.deliver_protected(d)
        }
    }

    fn deliver_real(&mut self, vector: u8) -> Result<(), Trap> {
        let off = vector as u64 * 4;
        if off + 3 > self.s.idtr.limit as u64 {
            return Err(gp(0));
        }
        let entry = self.read_lin(self.s.idtr.base + off, 4)?;
        let flags = self.rflags();
        self.push(2, flags)?;
        self.push(2, self.s.seg[CS].selector as u64)?;
        self.push(2, self.s.rip)?;
        self.set_rflags(flags & !(rflags::IF | rflags::TF | rflags::AC | rflags::RF));
        self.s.seg[CS] = Segment {
            selector: (entry >> 16) as u16,
            base: (entry >> 16 & 0xffff) << 4,
            ..self.s.seg[CS]
        };
        self.s.rip = entry & 0xffff;
        self.update_mode();
        Ok(())
    }

    /// Error code for a fault caused by the IDT entry of `vector`: IDT bit set, EXT when
    /// the event was not software-initiated.
    fn idt_error(&self, d: &Delivery) -> u32 {
        ((d.vector as u32) << 3) | 2 | (d.kind != EventKind::Software) as u32
    }

    fn read_gate(&mut self, d: &Delivery, size: u64) -> Result<(u64, u64), Trap> {
        let off = d.vector as u64 * size;
        if off + size - 1 > self.s.idtr.limit as u64 {
            return Err(gp(self.idt_error(d)));
        }
        let lo = self.read_lin_sys(self.s.idtr.base + off, 8)?;
        let hi = if size == 16 {
            self.read_lin_sys(self.s.idtr.base + off + 8, 8)?
        } else {
            0
        };
        Ok((lo, hi))
    }

    /// A supervisor read of a system structure (IDT, GDT, TSS), regardless of CPL.
    pub fn read_lin_sys(&mut self, lin: u64, size: u8) -> Result<u64, Trap> {
        let user = self.s.cpl() == 3;
        if user {
            self.tlb.set_user(false);
        }
        let r = self.read_slow(lin, size, crate::mmu::Access::Read);
        if user {
            self.tlb.set_user(true);
        }
        r
    }

    fn check_gate(&mut self, d: &Delivery, attr: u8, valid_types: &[u8]) -> Result<(), Trap> {
        let typ = attr & 0xf;
        let dpl = (attr >> 5) & 3;
        if !valid_types.contains(&typ) {
            return Err(gp(self.idt_error(d)));
        }
        if d.kind == EventKind::Software && dpl < self.s.cpl() {
            return Err(gp(self.idt_error(d)));
        }
        if attr & 0x80 == 0 {
            return Err(Trap::Exception(Exception::with_code(NP, self.idt_error(d))));
        }
        Ok(())
    }

    fn deliver_long(&mut self, d: Delivery) -> Result<(), Trap> {
        let (lo, hi) = self.read_gate(&d, 16)?;
        let attr = (lo >> 40) as u8;
        self.check_gate(&d, attr, &[0xe, 0xf])?;
        let selector = (lo >> 16) as u16;
        let target = (lo & 0xffff) | ((lo >> 48) << 16) | (hi << 32);
        let ist = (lo >> 32) & 7;
        let code = self.load_code_descriptor_for_gate(selector)?;
        let old_cpl = self.s.cpl();
        let new_cpl = handler_cpl(&code, old_cpl);
        // Handlers never run less privileged than the interrupted code (conforming ones
        // included: their DPL must not exceed the CPL).
        if code.dpl() > old_cpl {
            return Err(gp(selector as u32 & !3));
        }
        let old_ss = self.s.seg[SS];
        let old_rsp = self.s.gpr[RSP];
        let flags = self.rflags();
        let new_rsp = if ist != 0 {
            self.read_tss64(0x24 + (ist - 1) * 8)?
        } else if new_cpl < old_cpl {
            self.read_tss64(4 + new_cpl as u64 * 8)?
        } else {
            old_rsp
        } & !0xf;
        // Build the frame first, then commit, so a fault leaves the state untouched.
        let mut frame = vec![
            old_ss.selector as u64,
            old_rsp,
            flags,
            self.s.seg[CS].selector as u64,
            self.s.rip,
        ];
        if let Some(ec) = d.error_code {
            frame.push(ec as u64);
        }
        let saved_user = self.s.cpl() == 3;
        self.tlb.set_user(false);
        let mut sp = new_rsp;
        for v in &frame {
            sp = sp.wrapping_sub(8);
            if let Err(e) = self.write_lin(sp, 8, *v) {
                self.tlb.set_user(saved_user);
                return Err(e);
            }
        }
        self.s.gpr[RSP] = sp;
        if new_cpl < old_cpl {
            self.s.seg[SS] = Segment {
                selector: new_cpl as u16,
                base: 0,
                limit: 0,
                attr: crate::state::seg_attr::UNUSABLE | ((new_cpl as u32) << 5),
            };
        }
        self.s.seg[CS] = Segment {
            selector: (selector & !3) | new_cpl as u16,
            ..code
        };
        self.s.rip = target;
        let mut nf = flags & !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if attr & 0xf == 0xe {
            nf &= !rflags::IF;
        }
        self.set_rflags(nf);
        self.update_mode();
        Ok(())
    }

    fn read_tss64(&mut self, off: u64) -> Result<u64, Trap> {
        if off + 7 > self.s.tr.limit as u64 {
            return Err(Trap::Exception(Exception::with_code(
                TS,
                self.s.tr.selector as u32 & !3,
            )));
        }
        self.read_lin_sys(self.s.tr.base + off, 8)
    }

    /// Loads the code segment named by an interrupt or call gate (checks: not null, code,
    /// DPL ≤ CPL, present).
    pub(crate) fn load_code_descriptor_for_gate(&mut self, selector: u16) -> Result<Segment, Trap> {
        if selector & !3 == 0 {
            return Err(gp(0));
        }
        let seg = self
            .read_descriptor(selector)?
            .ok_or_else(|| gp(selector as u32 & !3))?;
        if seg.attr & crate::state::seg_attr::S == 0 || seg.attr & crate::state::seg_attr::CODE == 0
        {
            return Err(gp(selector as u32 & !3));
        }
        if !seg.present() {
            return Err(Trap::Exception(Exception::with_code(
                NP,
                selector as u32 & !3,
            )));
        }
        Ok(seg)
    }

    fn deliver_protected(&mut self, d: Delivery) -> Result<(), Trap> {
        let (lo, _) = self.read_gate(&d, 8)?;
        let attr = (lo >> 40) as u8;
        if attr & 0xf == 0x5 {
            self.check_gate(&d, attr, &[0x5])?;
            return self.task_gate_event((lo >> 16) as u16, d.error_code);
        }
        self.check_gate(&d, attr, &[0x6, 0x7, 0xe, 0xf])?;
        let selector = (lo >> 16) as u16;
        let target = (lo & 0xffff) | ((lo >> 48) << 16);
        let code = self.load_code_descriptor_for_gate(selector)?;
        let gate32 = attr & 8 != 0;
        let size = if gate32 { 4 } else { 2 };
        let old_cpl = self.s.cpl();
        let new_cpl = handler_cpl(&code, old_cpl);
        // Handlers never run less privileged than the interrupted code (conforming ones
        // included: their DPL must not exceed the CPL).
        if code.dpl() > old_cpl {
            return Err(gp(selector as u32 & !3));
        }
        let flags = self.rflags();
        let (old_ss, old_esp) = (self.s.seg[SS], self.s.gpr[RSP]);
        let inner = if new_cpl < old_cpl {
            // The inner stack from the TSS (16- or 32-bit), with the SS checks of the SDM.
            Some(self.inner_stack(new_cpl)?)
        } else {
            None
        };
        // Every push goes to the handler's stack with supervisor rights; a fault on any of
        // them leaves the interrupted context as it was.
        let pushed = (|| {
            if let Some((ss, sp)) = inner {
                self.s.seg[SS] = ss;
                self.s.gpr[RSP] = if ss.big() {
                    sp & 0xffff_ffff
                } else {
                    sp & 0xffff
                };
                self.tlb.set_user(false);
                self.push(size, old_ss.selector as u64)?;
                self.push(size, old_esp)?;
            }
            self.push(size, flags)?;
            self.push(size, self.s.seg[CS].selector as u64)?;
            self.push(size, self.s.rip)?;
            if let Some(ec) = d.error_code {
                self.push(size, ec as u64)?;
            }
            Ok::<(), Trap>(())
        })();
        if let Err(e) = pushed {
            self.s.seg[SS] = old_ss;
            self.s.gpr[RSP] = old_esp;
            self.tlb.set_user(old_cpl == 3);
            return Err(e);
        }
        self.s.seg[CS] = Segment {
            selector: (selector & !3) | new_cpl as u16,
            ..code
        };
        self.s.rip = if gate32 { target } else { target & 0xffff };
        let mut nf = flags & !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
        if attr & 7 == 6 {
            nf &= !rflags::IF;
        }
        self.set_rflags(nf);
        self.update_mode();
        Ok(())
    }
}

/// For callers that want the GP vector as a constant.
pub const GP_VECTOR: u8 = GP;

/// The privilege level an interrupt handler runs at: a conforming code segment keeps the
/// interrupted CPL (SDM vol. 3 §6.12.1.1), any other runs at its DPL.
fn handler_cpl(code: &Segment, old_cpl: u8) -> u8 {
    if code.attr & crate::state::seg_attr::CE != 0 {
        old_cpl
    } else {
        code.dpl()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::seg_attr;

    #[test]
    fn conforming_handlers_keep_the_interrupted_cpl() {
        let mut code = Segment::flat(0x08, true, false);
        assert_eq!(handler_cpl(&code, 3), 0);
        code.attr |= seg_attr::CE;
        assert_eq!(handler_cpl(&code, 3), 3);
        assert_eq!(handler_cpl(&code, 0), 0);
    }
}
