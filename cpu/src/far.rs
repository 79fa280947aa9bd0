//! Far transfers in protected and long mode, as the SDM vol. 2 pseudocode of JMP, CALL,
//! RET and IRET describes them: direct to code segments (conforming or not), through
//! call gates (16/32/64-bit, with the inner stack from the TSS and parameter copy), to
//! task gates and TSSs (→ `tasks.rs`), and returns to the same or an outer privilege level.

use crate::cpu::Cpu;
use crate::exception::{gp, gp0, Exception, Flow, Trap, SS as SS_VEC};
use crate::flags::size_mask;
use crate::segments::{null_segment, Fault};
use crate::state::{cr0, rflags, seg_attr, Segment, CS, RSP, SS};
use crate::tasks::TaskReason;

/// System descriptor types (S = 0).
pub mod sys_type {
    pub const TSS16: u32 = 1;
    pub const LDT: u32 = 2;
    pub const TSS16_BUSY: u32 = 3;
    pub const CALL_GATE16: u32 = 4;
    pub const TASK_GATE: u32 = 5;
    pub const TSS32: u32 = 9;
    pub const TSS32_BUSY: u32 = 0xb;
    pub const CALL_GATE32: u32 = 0xc;
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

fn is_code(d: &Segment) -> bool {
    d.attr & seg_attr::S != 0 && d.attr & seg_attr::CODE != 0
}

fn conforming(d: &Segment) -> bool {
    d.attr & seg_attr::CE != 0
}

/// Saved state to roll back a transfer that faults half-way.
struct Saved {
    cs: Segment,
    ss: Segment,
    rsp: u64,
}

impl Cpu {
    fn save(&self) -> Saved {
        Saved {
            cs: self.s.seg[CS],
            ss: self.s.seg[SS],
            rsp: self.s.gpr[RSP],
        }
    }

    fn restore(&mut self, v: Saved) {
        self.s.seg[CS] = v.cs;
        self.s.seg[SS] = v.ss;
        self.s.gpr[RSP] = v.rsp;
        self.update_mode();
    }

    fn real_mode_far(&mut self, selector: u16, offset: u64, size: u8, call: bool) -> Flow {
        let target = offset & size_mask(size.min(4));
        if target > self.s.seg[CS].limit as u64 {
            return Err(gp0());
        }
        if call {
            let rsp = self.s.gpr[RSP];
            self.push(size, self.s.seg[CS].selector as u64)?;
            if let Err(e) = self.push(size, self.next_rip) {
                self.s.gpr[RSP] = rsp;
                return Err(e);
            }
        }
        self.s.seg[CS] = Segment {
            selector,
            base: (selector as u64) << 4,
            ..self.s.seg[CS]
        };
        self.next_rip = target;
        self.update_mode();
        Ok(())
    }

    /// The target offset for code segment `code`, truncated to the operand size and
    /// checked against the limit (or for canonical form in 64-bit code): #GP(0).
    pub(crate) fn far_target(&self, code: &Segment, offset: u64, size: u8) -> Result<u64, Trap> {
        let long = self.s.long_mode_active() && code.long();
        let t = offset & size_mask(if long { size } else { size.min(4) });
        if long {
            if !canonical(t) {
                return Err(gp0());
            }
        } else if t > code.limit as u64 {
            return Err(gp0());
        }
        Ok(t)
    }

    /// Far JMP (`call` false) or far CALL to `selector:offset` with operand size `size`.
    /// The return address of a CALL is `next_rip`.
    pub fn far_transfer(&mut self, selector: u16, offset: u64, size: u8, call: bool) -> Flow {
        if self.s.cr0 & cr0::PE == 0 || self.s.rflags & rflags::VM != 0 {
            return self.real_mode_far(selector, offset, size, call);
        }
        if selector & !3 == 0 {
            return Err(gp0());
        }
        let (lo, hi) = self.read_descriptor_raw(selector)?;
        let desc = crate::segments::decode_descriptor(selector, lo);
        if desc.attr & seg_attr::S != 0 {
            return self.far_direct(desc, offset, size, call);
        }
        let lma = self.s.long_mode_active();
        match desc.attr & 0xf {
            sys_type::CALL_GATE32 => self.far_gate(desc, lo, hi, call),
            sys_type::CALL_GATE16 if !lma => self.far_gate(desc, lo, hi, call),
            sys_type::TASK_GATE | sys_type::TSS16 | sys_type::TSS32 if !lma => {
                self.far_task(selector, desc, lo, call)
            }
            _ => Err(gp(selector as u32 & !3)),
        }
    }

    /// A far JMP/CALL straight to a code segment: no privilege change.
    fn far_direct(&mut self, mut desc: Segment, offset: u64, size: u8, call: bool) -> Flow {
        let sel = desc.selector;
        let cpl = self.s.cpl();
        let rpl = (sel & 3) as u8;
        if !is_code(&desc) {
            return Err(gp(sel as u32 & !3));
        }
        if conforming(&desc) {
            if desc.dpl() > cpl {
                return Err(gp(sel as u32 & !3));
            }
        } else if rpl > cpl || desc.dpl() != cpl {
            return Err(gp(sel as u32 & !3));
        }
        if !desc.present() {
            return Err(Fault::Np.trap(sel));
        }
        if self.s.long_mode_active() && desc.long() && desc.big() {
            return Err(gp(sel as u32 & !3));
        }
        let target = self.far_target(&desc, offset, size)?;
        if call {
            self.push_return(size)?;
        }
        self.mark_accessed(&mut desc);
        self.s.seg[CS] = Segment {
            selector: (sel & !3) | cpl as u16,
            ..desc
        };
        self.next_rip = target;
        self.update_mode();
        Ok(())
    }

    /// Pushes CS and the return address (`next_rip`) with `size` bytes each, on the
    /// current stack; RSP is unchanged if either push faults.
    fn push_return(&mut self, size: u8) -> Flow {
        let rsp = self.s.gpr[RSP];
        let r = self
            .push(size, self.s.seg[CS].selector as u64)
            .and_then(|_| self.push(size, self.next_rip));
        if r.is_err() {
            self.s.gpr[RSP] = rsp;
        }
        r
    }

    /// A far JMP/CALL through a call gate (SDM vol. 2, CALL: CALL-GATE).
    fn far_gate(&mut self, gate: Segment, lo: u64, hi: u64, call: bool) -> Flow {
        let gsel = gate.selector;
        let cpl = self.s.cpl();
        let rpl = (gsel & 3) as u8;
        let lma = self.s.long_mode_active();
        if gate.dpl() < cpl || gate.dpl() < rpl {
            return Err(gp(gsel as u32 & !3));
        }
        if !gate.present() {
            return Err(Fault::Np.trap(gsel));
        }
        // The upper half of a 64-bit gate must have type 0 where a descriptor's type is.
        if lma && (hi >> 40) & 0x1f != 0 {
            return Err(gp(gsel as u32 & !3));
        }
        let csel = (lo >> 16) as u16;
        let gate_size: u8 = match (lma, gate.attr & 0xf) {
            (true, _) => 8,
            (false, sys_type::CALL_GATE32) => 4,
            _ => 2,
        };
        let mut offset = (lo & 0xffff) | if gate_size >= 4 { (lo >> 48) << 16 } else { 0 };
        if lma {
            offset |= (hi & 0xffff_ffff) << 32;
        }
        let params = if lma { 0 } else { (lo >> 32) & 0x1f };
        if csel & !3 == 0 {
            return Err(gp0());
        }
        let Some(mut code) = self.read_descriptor(csel)? else {
            return Err(gp0());
        };
        if !is_code(&code) || code.dpl() > cpl {
            return Err(gp(csel as u32 & !3));
        }
        if lma && (!code.long() || code.big()) {
            return Err(gp(csel as u32 & !3));
        }
        if !call && !conforming(&code) && code.dpl() != cpl {
            return Err(gp(csel as u32 & !3));
        }
        if !code.present() {
            return Err(Fault::Np.trap(csel));
        }
        let target = self.far_target(&code, offset, gate_size)?;
        self.mark_accessed(&mut code);
        let new_cpl = code.dpl();
        let inner = call && !conforming(&code) && new_cpl < cpl;
        if inner {
            self.call_gate_inner(code, csel, target, gate_size, params)?;
        } else {
            if call {
                self.push_return(gate_size)?;
            }
            self.s.seg[CS] = Segment {
                selector: (csel & !3) | cpl as u16,
                ..code
            };
            self.update_mode();
        }
        self.next_rip = target;
        Ok(())
    }

    /// The new stack for privilege level `dpl` from the current TSS: (SS descriptor, RSP).
    /// In long mode SS is null with RPL = `dpl`.
    pub(crate) fn inner_stack(&mut self, dpl: u8) -> Result<(Segment, u64), Trap> {
        let tr = self.s.tr;
        let ts = || Fault::Ts.trap(tr.selector);
        if self.s.long_mode_active() {
            let off = 4 + dpl as u64 * 8;
            if off + 7 > tr.limit as u64 {
                return Err(ts());
            }
            let rsp = self.read_lin_sys(tr.base + off, 8)?;
            return Ok((null_segment(dpl as u16, dpl), rsp));
        }
        let tss32 = tr.attr & 8 != 0;
        let (off, w) = if tss32 {
            (4 + dpl as u64 * 8, 4u8)
        } else {
            (2 + dpl as u64 * 4, 2u8)
        };
        if off + w as u64 + 1 > tr.limit as u64 {
            return Err(ts());
        }
        let sp = self.read_lin_sys(tr.base + off, w)?;
        let ss_sel = self.read_lin_sys(tr.base + off + w as u64, 2)? as u16;
        if ss_sel & !3 == 0 {
            return Err(Fault::Ts.trap(0));
        }
        let ss = self.stack_segment(ss_sel, dpl, Fault::Ts)?;
        Ok((ss, sp))
    }

    /// CALL through a gate to a more privileged non-conforming segment: switch to the
    /// TSS stack, push the old SS:ESP, copy `params` parameters, push CS:EIP.
    fn call_gate_inner(
        &mut self,
        code: Segment,
        csel: u16,
        target: u64,
        size: u8,
        params: u64,
    ) -> Flow {
        let new_cpl = code.dpl();
        let (new_ss, new_sp) = self.inner_stack(new_cpl)?;
        let saved = self.save();
        // Parameters come from the caller's stack, read before anything changes.
        let mut copied = Vec::with_capacity(params as usize);
        for k in 0..params {
            copied.push(self.stack_peek(k * size as u64, size)?);
        }
        let ret = self.next_rip;
        let new_sp = if self.s.long_mode_active() || new_ss.big() {
            new_sp
        } else {
            new_sp & 0xffff
        };
        self.s.seg[SS] = new_ss;
        self.s.seg[CS] = Segment {
            selector: (csel & !3) | new_cpl as u16,
            ..code
        };
        self.s.gpr[RSP] = new_sp;
        self.update_mode();
        let mut frame = vec![saved.ss.selector as u64, saved.rsp];
        frame.extend(copied.iter().rev());
        frame.push(saved.cs.selector as u64);
        frame.push(ret);
        for v in frame {
            if let Err(e) = self.push(size, v) {
                let ss_sel = new_ss.selector;
                self.restore(saved);
                return Err(match e {
                    Trap::Exception(Exception { vector: SS_VEC, .. })
                        if !self.s.long_mode_active() =>
                    {
                        Fault::Ss.trap(ss_sel)
                    }
                    e => e,
                });
            }
        }
        self.next_rip = target;
        Ok(())
    }

    /// A far JMP/CALL to a TSS descriptor or a task gate: a task switch.
    fn far_task(&mut self, sel: u16, desc: Segment, lo: u64, call: bool) -> Flow {
        let cpl = self.s.cpl();
        let rpl = (sel & 3) as u8;
        if desc.dpl() < cpl || desc.dpl() < rpl {
            return Err(gp(sel as u32 & !3));
        }
        let tss_sel = if desc.attr & 0xf == sys_type::TASK_GATE {
            if !desc.present() {
                return Err(Fault::Np.trap(sel));
            }
            (lo >> 16) as u16
        } else {
            sel
        };
        let tss = self.tss_descriptor(tss_sel, Fault::Gp)?;
        let reason = if call {
            TaskReason::Call
        } else {
            TaskReason::Jmp
        };
        let ret = self.next_rip;
        self.task_switch(tss, reason, ret, None)
    }

    /// Far RET (`size` bytes per slot, `imm` extra bytes released) in protected mode.
    pub fn far_return(&mut self, size: u8, imm: u64) -> Flow {
        if self.s.cr0 & cr0::PE == 0 || self.s.rflags & rflags::VM != 0 {
            let ip = self.stack_peek(0, size)?;
            let cs = self.stack_peek(size as u64, size)? as u16;
            let target = ip & size_mask(size);
            if target > self.s.seg[CS].limit as u64 {
                return Err(gp0());
            }
            self.s.seg[CS] = Segment {
                selector: cs,
                base: (cs as u64) << 4,
                ..self.s.seg[CS]
            };
            self.next_rip = target;
            self.stack_adjust(2 * size as u64 + imm);
            self.update_mode();
            return Ok(());
        }
        let ip = self.stack_peek(0, size)?;
        let csel = self.stack_peek(size as u64, size)? as u16;
        let cpl = self.s.cpl();
        let rpl = (csel & 3) as u8;
        let code = self.return_code_segment(csel, cpl)?;
        let target = self.far_target(&code, ip, size)?;
        if rpl == cpl {
            self.s.seg[CS] = code;
            self.next_rip = target;
            self.stack_adjust(2 * size as u64 + imm);
            self.update_mode();
            return Ok(());
        }
        let base = 2 * size as u64 + imm;
        let new_sp = self.stack_peek(base, size)?;
        let ss_sel = self.stack_peek(base + size as u64, size)? as u16;
        let to64 = self.s.long_mode_active() && code.long();
        let ss = self.return_stack_segment(ss_sel, rpl, to64)?;
        self.s.seg[CS] = code;
        self.s.seg[SS] = ss;
        self.set_stack_pointer(new_sp.wrapping_add(imm), size, to64);
        self.next_rip = target;
        self.update_mode();
        self.null_outer_segments(rpl);
        Ok(())
    }

    /// Loads RSP after a return to an outer level: the popped value at the new stack's
    /// width.
    pub(crate) fn set_stack_pointer(&mut self, v: u64, size: u8, to64: bool) {
        self.s.gpr[RSP] = if to64 {
            v
        } else if self.s.seg[SS].big() || size >= 4 {
            v & 0xffff_ffff
        } else {
            (self.s.gpr[RSP] & !0xffff) | (v & 0xffff)
        };
    }

    /// The checks on the CS a far RET or IRET returns to (RPL ≥ CPL, code, DPL rules,
    /// present); returns the descriptor with the popped selector.
    pub(crate) fn return_code_segment(&mut self, csel: u16, cpl: u8) -> Result<Segment, Trap> {
        let rpl = (csel & 3) as u8;
        if csel & !3 == 0 {
            return Err(gp0());
        }
        if rpl < cpl {
            return Err(gp(csel as u32 & !3));
        }
        let Some(mut code) = self.read_descriptor(csel)? else {
            return Err(gp0());
        };
        if !is_code(&code) {
            return Err(gp(csel as u32 & !3));
        }
        let bad_dpl = if conforming(&code) {
            code.dpl() > rpl
        } else {
            code.dpl() != rpl
        };
        if bad_dpl {
            return Err(gp(csel as u32 & !3));
        }
        if !code.present() {
            return Err(Fault::Np.trap(csel));
        }
        if self.s.long_mode_active() && code.long() && code.big() {
            return Err(gp(csel as u32 & !3));
        }
        self.mark_accessed(&mut code);
        code.selector = csel;
        Ok(code)
    }

    /// The SS a return to outer level `rpl` loads: a null one only when returning to
    /// 64-bit code below CPL 3.
    pub(crate) fn return_stack_segment(
        &mut self,
        ss_sel: u16,
        rpl: u8,
        to64: bool,
    ) -> Result<Segment, Trap> {
        if ss_sel & !3 == 0 {
            if to64 && rpl != 3 && (ss_sel & 3) as u8 == rpl {
                return Ok(null_segment(ss_sel, rpl));
            }
            return Err(gp0());
        }
        self.stack_segment(ss_sel, rpl, Fault::Gp)
    }
}
