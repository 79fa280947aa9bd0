//! Hardware task switching for legacy protected mode (SDM vol. 3 ch. 7): JMP/CALL to a
//! TSS or task gate, interrupts and exceptions through task gates, IRET with NT set.
//!
//! The new task's TSS is read completely before anything changes, so a fault while reading
//! it leaves the old task intact; faults while loading the new task's segment registers
//! happen in the new task's context, as on hardware. Not modelled: the T (debug trap) bit
//! and switching to a virtual-8086 task (reported as unsupported).

use crate::cpu::Cpu;
use crate::exception::{Flow, Trap};
use crate::far::sys_type;
use crate::segments::{null_segment, Fault};
use crate::state::{cr0, rflags, seg_attr, Segment, CS, SS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskReason {
    Jmp,
    Call,
    Iret,
    /// An interrupt or exception through a task gate (nests like CALL).
    Int,
}

/// Where the dynamic fields live in a 16- or 32-bit TSS.
struct Layout {
    width: u8,
    eip: u64,
    eflags: u64,
    gpr: u64,
    seg: u64,
    nseg: usize,
    ldt: u64,
    cr3: Option<u64>,
    min_limit: u32,
}

const TSS32: Layout = Layout {
    width: 4,
    eip: 0x20,
    eflags: 0x24,
    gpr: 0x28,
    seg: 0x48,
    nseg: 6,
    ldt: 0x60,
    cr3: Some(0x1c),
    min_limit: 0x67,
};

const TSS16: Layout = Layout {
    width: 2,
    eip: 0x0e,
    eflags: 0x10,
    gpr: 0x12,
    seg: 0x22,
    nseg: 4,
    ldt: 0x2a,
    cr3: None,
    min_limit: 0x2b,
};

fn layout(tss: &Segment) -> &'static Layout {
    if tss.attr & 8 != 0 {
        &TSS32
    } else {
        &TSS16
    }
}

/// The new task's state, read before the switch commits.
struct TaskImage {
    eip: u64,
    eflags: u64,
    gpr: [u64; 8],
    seg: [u16; 6],
    ldt: u16,
    cr3: Option<u64>,
}

impl Cpu {
    /// The descriptor of a TSS named by a JMP/CALL/task gate: in the GDT, an available
    /// 16- or 32-bit TSS (a busy one is `kind`(selector)), present (#NP).
    pub(crate) fn tss_descriptor(&mut self, sel: u16, kind: Fault) -> Result<Segment, Trap> {
        if sel & 4 != 0 || sel & !3 == 0 {
            return Err(kind.trap(sel));
        }
        let desc = self.read_descriptor(sel)?.ok_or(kind.trap(sel))?;
        let t = desc.attr & 0x1f;
        if t != sys_type::TSS16 && t != sys_type::TSS32 {
            return Err(kind.trap(sel));
        }
        if !desc.present() {
            return Err(Fault::Np.trap(sel));
        }
        Ok(desc)
    }

    /// An interrupt or exception delivered through a task gate naming `tss_sel`: switches
    /// to that task (nested) and pushes the error code on its stack. The old task resumes
    /// at `self.s.rip`.
    pub fn task_gate_event(&mut self, tss_sel: u16, error_code: Option<u32>) -> Flow {
        let tss = self.tss_descriptor(tss_sel, Fault::Gp)?;
        let ret = self.s.rip;
        self.task_switch(tss, TaskReason::Int, ret, error_code)
    }

    /// IRET with EFLAGS.NT in legacy protected mode: return to the task in the back link.
    pub fn iret_task_return(&mut self) -> Flow {
        let link = self.read_lin_sys(self.s.tr.base, 2)? as u16;
        if link & 4 != 0 || link & !3 == 0 {
            return Err(Fault::Ts.trap(link));
        }
        let desc = self
            .read_descriptor(link)
            .map_err(|_| Fault::Ts.trap(link))?
            .ok_or(Fault::Ts.trap(link))?;
        let t = desc.attr & 0x1f;
        if t != sys_type::TSS16_BUSY && t != sys_type::TSS32_BUSY {
            return Err(Fault::Ts.trap(link));
        }
        if !desc.present() {
            return Err(Fault::Np.trap(link));
        }
        let ret = self.next_rip;
        self.task_switch(desc, TaskReason::Iret, ret, None)
    }

    fn read_task_image(&mut self, tss: &Segment) -> Result<TaskImage, Trap> {
        let l = layout(tss);
        let b = tss.base;
        let w = l.width;
        let mut img = TaskImage {
            eip: self.read_lin_sys(b + l.eip, w)?,
            eflags: self.read_lin_sys(b + l.eflags, w)?,
            gpr: [0; 8],
            seg: [0; 6],
            ldt: self.read_lin_sys(b + l.ldt, 2)? as u16,
            cr3: None,
        };
        for k in 0..8 {
            img.gpr[k] = self.read_lin_sys(b + l.gpr + k as u64 * w as u64, w)?;
        }
        for k in 0..l.nseg {
            img.seg[k] = self.read_lin_sys(b + l.seg + k as u64 * w as u64, 2)? as u16;
        }
        if let Some(off) = l.cr3 {
            img.cr3 = Some(self.read_lin_sys(b + off, 4)?);
        }
        Ok(img)
    }

    /// A supervisor write to a system structure, whatever the CPL.
    fn write_sys(&mut self, lin: u64, size: u8, v: u64) -> Flow {
        let user = self.s.cpl() == 3;
        self.tlb.set_user(false);
        let r = self.write_lin(lin, size, v);
        self.tlb.set_user(user);
        r
    }

    fn save_task_image(&mut self, eip: u64, eflags: u64) -> Flow {
        let tr = self.s.tr;
        let l = layout(&tr);
        let (b, w) = (tr.base, l.width);
        self.write_sys(b + l.eip, w, eip)?;
        self.write_sys(b + l.eflags, w, eflags)?;
        for k in 0..8 {
            let v = self.s.gpr[k];
            self.write_sys(b + l.gpr + k as u64 * w as u64, w, v)?;
        }
        for k in 0..l.nseg {
            let v = self.s.seg[k].selector as u64;
            self.write_sys(b + l.seg + k as u64 * w as u64, 2, v)?;
        }
        Ok(())
    }

    fn set_busy(&mut self, sel: u16, busy: bool) -> Flow {
        let addr = self.s.gdtr.base + (sel & !7) as u64 + 5;
        let b = self.read_lin_sys(addr, 1)?;
        let nb = if busy { b | 2 } else { b & !2 };
        self.write_sys(addr, 1, nb)
    }

    /// Switches from the current task to the one whose TSS descriptor is `new`. The old
    /// task resumes at `ret_eip`. `error_code` is pushed on the new task's stack.
    pub(crate) fn task_switch(
        &mut self,
        new: Segment,
        reason: TaskReason,
        ret_eip: u64,
        error_code: Option<u32>,
    ) -> Flow {
        let nl = layout(&new);
        if new.limit < nl.min_limit {
            return Err(Fault::Ts.trap(new.selector));
        }
        let old = self.s.tr;
        if old.limit < layout(&old).min_limit {
            return Err(Fault::Ts.trap(old.selector));
        }
        let img = self.read_task_image(&new)?;
        if nl.width == 4 && img.eflags & rflags::VM != 0 {
            return Err(Trap::Unsupported(
                "virtual-8086 mode (task switch to a task with EFLAGS.VM=1)",
            ));
        }
        // Commit: save the old task, update busy bits and the back link.
        let mut old_flags = self.rflags();
        if reason == TaskReason::Iret {
            old_flags &= !rflags::NT;
        }
        self.save_task_image(ret_eip, old_flags)?;
        if matches!(reason, TaskReason::Jmp | TaskReason::Iret) {
            self.set_busy(old.selector, false)?;
        }
        let mut eflags = img.eflags;
        if matches!(reason, TaskReason::Call | TaskReason::Int) {
            self.write_sys(new.base, 2, old.selector as u64)?;
            eflags |= rflags::NT;
        }
        if reason != TaskReason::Iret {
            self.set_busy(new.selector, true)?;
        }
        self.s.tr = Segment {
            attr: new.attr | 2,
            ..new
        };
        self.s.cr0 |= cr0::TS;
        if let (Some(cr3), true) = (img.cr3, self.s.cr0 & cr0::PG != 0) {
            crate::interp::system::write_cr(self, 3, cr3)?;
        }
        self.load_task_registers(&img, nl.width, eflags);
        self.load_task_segments(&img, nl.nseg)?;
        if let Some(ec) = error_code {
            self.push(nl.width, ec as u64)?;
        }
        let cs = self.s.seg[CS];
        if self.s.rip > cs.limit as u64 {
            return Err(crate::exception::gp0());
        }
        Ok(())
    }

    fn load_task_registers(&mut self, img: &TaskImage, width: u8, eflags: u64) {
        if width == 4 {
            self.set_rflags(eflags & 0xffff_ffff);
            for k in 0..8 {
                self.s.gpr[k] = img.gpr[k] & 0xffff_ffff;
            }
            self.s.rip = img.eip & 0xffff_ffff;
        } else {
            let hi = self.rflags() & !0xffff;
            self.set_rflags(hi | (eflags & 0xffff));
            for k in 0..8 {
                self.s.gpr[k] = (self.s.gpr[k] & !0xffff) | (img.gpr[k] & 0xffff);
            }
            self.s.rip = img.eip & 0xffff;
        }
        self.next_rip = self.s.rip;
        // Selectors are loaded first, their descriptors marked invalid until checked.
        let cpl = (img.seg[CS] & 3) as u8;
        for k in 0..6 {
            self.s.seg[k] = null_segment(img.seg[k], cpl);
        }
        self.s.ldtr = null_segment(img.ldt, 0);
        self.break_block = true;
    }

    /// Loads LDTR and the segment registers of the new task with the task-switch checks
    /// (#TS, #NP, #SS with the selector), in the new task's context.
    fn load_task_segments(&mut self, img: &TaskImage, nseg: usize) -> Flow {
        if img.ldt & !3 != 0 {
            if img.ldt & 4 != 0 {
                return Err(Fault::Ts.trap(img.ldt));
            }
            let d = self
                .read_descriptor(img.ldt)
                .map_err(|_| Fault::Ts.trap(img.ldt))?
                .ok_or(Fault::Ts.trap(img.ldt))?;
            if d.attr & seg_attr::S != 0 || d.attr & 0xf != sys_type::LDT || !d.present() {
                return Err(Fault::Ts.trap(img.ldt));
            }
            self.s.ldtr = d;
        }
        let csel = img.seg[CS];
        let cpl = (csel & 3) as u8;
        let code = self
            .read_descriptor(csel)
            .map_err(|_| Fault::Ts.trap(csel))?
            .ok_or(Fault::Ts.trap(csel))?;
        let is_code = code.attr & seg_attr::S != 0 && code.attr & seg_attr::CODE != 0;
        let conforming = code.attr & seg_attr::CE != 0;
        if !is_code || (conforming && code.dpl() > cpl) || (!conforming && code.dpl() != cpl) {
            return Err(Fault::Ts.trap(csel));
        }
        if !code.present() {
            return Err(Fault::Np.trap(csel));
        }
        let mut code = code;
        self.mark_accessed(&mut code);
        self.s.seg[CS] = code;
        let ss = self.stack_segment(img.seg[SS], cpl, Fault::Ts)?;
        self.s.seg[SS] = ss;
        self.update_mode();
        for k in [0usize, 3, 4, 5] {
            if k >= nseg {
                continue;
            }
            let d = self.data_segment(img.seg[k], cpl, Fault::Ts)?;
            self.s.seg[k] = d;
        }
        self.refresh_segments();
        Ok(())
    }
}
