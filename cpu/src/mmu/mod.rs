//! Linear-to-physical translation: the page walk (`walk.rs`), the shadow tables in front of
//! it (`tlb.rs`), their invalidation with x86 TLB semantics, and the linear/physical access
//! paths every instruction uses.
//!
//! A translation is looked up in three places, fastest first: the fast shadow table (a hit
//! costs a compare and an add: the entry holds the host address minus the linear page),
//! the architectural TLB (PCID/global-tagged translations with their rights, checked against
//! the current CPL, CR0.WP, SMEP, SMAP and NX on every use), and the page walk.
//!
//! `stats.tlb_flushes` counts every change that can make a cached translation wrong; the
//! block cache's jump cache follows it.

mod tlb;
mod walk;

#[cfg(test)]
mod tests;

pub use tlb::{ArchTlb, Tlb};

use crate::cpu::Cpu;
use crate::exception::{gp0, Exception, Flow, Trap, PF};
use crate::model::{feat, CpuModel};
use crate::state::{cr0, cr4, efer, rflags};
use tlb::{tflags, Translation, PAGE_MASK};
use walk::{paging_mode, Mode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read = 0,
    Write = 1,
    Exec = 2,
}

/// #PF error code bits.
pub mod pf {
    pub const P: u32 = 1;
    pub const W: u32 = 2;
    pub const U: u32 = 4;
    pub const RSVD: u32 = 8;
    pub const I: u32 = 16;
}

/// CR4 bits that exist because of the paging features the model advertises (SMEP, SMAP,
/// PCIDE); MOV to CR4 accepts them on top of the base set.
pub fn cr4_paging_bits(model: &CpuModel) -> u64 {
    let mut b = 0;
    if model.has_leaf7_ebx(feat::SMEP) {
        b |= cr4::SMEP;
    }
    if model.has_leaf7_ebx(feat::SMAP) {
        b |= cr4::SMAP;
    }
    if model.has_leaf1_ecx(feat::PCID) {
        b |= cr4::PCIDE;
    }
    b
}

impl Cpu {
    /// The current PCID (CR3[11:0] with CR4.PCIDE, else 0).
    #[inline]
    pub fn pcid(&self) -> u16 {
        if self.s.cr4 & cr4::PCIDE != 0 {
            (self.s.cr3 & 0xfff) as u16
        } else {
            0
        }
    }

    fn page_fault(&mut self, lin: u64, access: Access, code: u32) -> Trap {
        self.s.cr2 = lin;
        let mut c = code;
        if access == Access::Write {
            c |= pf::W;
        }
        if self.tlb.user() {
            c |= pf::U;
        }
        // SDM 4.7: I/D is set for fetches only when SMEP is on, or NX can apply (PAE or
        // 4-level paging with EFER.NXE).
        if access == Access::Exec
            && (self.s.cr4 & cr4::SMEP != 0
                || (self.s.cr4 & cr4::PAE != 0 && self.s.efer & efer::NXE != 0))
        {
            c |= pf::I;
        }
        Trap::Exception(Exception::with_code(PF, c))
    }

    /// The access-rights check of SDM 4.6 against a (cached or fresh) translation, with
    /// the privilege the fast table is set to: user, or supervisor (implicit when CPL = 3).
    fn check_rights(&self, t: &Translation, access: Access) -> Result<(), u32> {
        let ok = if self.tlb.user() {
            t.has(tflags::U)
                && match access {
                    Access::Read => true,
                    Access::Write => t.has(tflags::W),
                    Access::Exec => !t.has(tflags::NX),
                }
        } else if access == Access::Exec {
            let smep_blocks = t.has(tflags::U) && self.s.cr4 & cr4::SMEP != 0;
            !t.has(tflags::NX) && !smep_blocks
        } else {
            // SMAP: supervisor data accesses to user pages only when explicit with AC=1.
            let implicit = self.s.cpl() == 3;
            let smap_blocks = t.has(tflags::U)
                && self.s.cr4 & cr4::SMAP != 0
                && (implicit || self.s.rflags & rflags::AC == 0);
            !smap_blocks
                && (access == Access::Read || t.has(tflags::W) || self.s.cr0 & cr0::WP == 0)
        };
        if ok {
            Ok(())
        } else {
            Err(pf::P)
        }
    }

    /// Translates `lin` for `access` with the current privilege. Returns the physical
    /// address and whether the fast table may cache the result (not for supervisor data
    /// accesses to user pages under SMAP: whether those are allowed depends on EFLAGS.AC,
    /// which the fast table does not key on).
    fn translate_entry(&mut self, lin: u64, access: Access) -> Result<(u64, bool), Trap> {
        if self.s.cr0 & cr0::PG == 0 {
            return Ok((lin & 0xffff_ffff, true));
        }
        let pcid = self.pcid();
        let t = match self.atlb.lookup(pcid, lin) {
            // A write through a translation not known dirty walks again to set D.
            Some(t) if access != Access::Write || t.has(tflags::D) => {
                if let Err(code) = self.check_rights(&t, access) {
                    return Err(self.fault_and_invalidate(pcid, lin, access, code));
                }
                t
            }
            old => {
                self.stats.page_walks += 1;
                let w = match self.walk(lin) {
                    Ok(w) => w,
                    Err(code) => return Err(self.fault_and_invalidate(pcid, lin, access, code)),
                };
                if let Err(code) = self.check_rights(&w.t, access) {
                    return Err(self.fault_and_invalidate(pcid, lin, access, code));
                }
                self.set_accessed_dirty(&w, access == Access::Write);
                let mut t = w.t;
                if access == Access::Write {
                    t.flags |= tflags::D;
                }
                // A walk that finds a different translation than the cached one (possible
                // for writes) must not leave fast entries of the old one behind.
                let changed = old.is_some_and(|o| {
                    o.phys_page != t.phys_page || (o.flags ^ t.flags) & !tflags::D != 0
                });
                if self.atlb.insert(pcid, t) || changed {
                    self.flush_fast();
                }
                t
            }
        };
        let fast_ok = access == Access::Exec
            || !t.has(tflags::U)
            || self.tlb.user()
            || self.s.cr4 & cr4::SMAP == 0;
        Ok((t.phys_page | (lin & 0xfff), fast_ok))
    }

    /// A page fault also drops any cached translation of the page (as processors do), so
    /// that a retry after the OS fixed the tables walks them again.
    fn fault_and_invalidate(&mut self, pcid: u16, lin: u64, access: Access, code: u32) -> Trap {
        if self.atlb.flush_page(pcid, lin, true) {
            self.flush_fast();
        }
        self.page_fault(lin, access, code)
    }

    /// Translates a linear address (TLB, then page walk), setting A/D bits as hardware does
    /// and raising #PF with the SDM's error code and CR2.
    pub fn translate(&mut self, lin: u64, access: Access) -> Result<u64, Trap> {
        self.translate_entry(lin, access).map(|(p, _)| p)
    }

    /// A debugger's look at a translation: a supervisor-view walk that leaves no trace —
    /// no A/D bits, no CR2, no TLB fill.
    pub fn translate_peek(&self, lin: u64) -> Option<u64> {
        if self.s.cr0 & cr0::PG == 0 {
            return Some(lin & 0xffff_ffff);
        }
        self.walk(lin).ok().map(|w| w.t.phys_page | (lin & 0xfff))
    }

    /// Drops every cached translation (all PCIDs, globals) and the fast table.
    pub fn flush_tlb(&mut self) {
        self.atlb.flush_all();
        self.flush_fast();
    }

    /// Drops the fast table only: the architectural TLB is unchanged but the checks baked
    /// into fast entries (privilege, WP, SMEP, SMAP, PCID) no longer hold.
    pub fn flush_fast(&mut self) {
        self.tlb.flush();
        self.stats.tlb_flushes += 1;
    }

    /// INVLPG: the page's translations for the current PCID and global ones (all
    /// fragments of a large page).
    pub fn invlpg(&mut self, lin: u64) {
        let pcid = self.pcid();
        if self.atlb.flush_page(pcid, lin, true) {
            self.flush_fast();
        }
    }

    /// INVPCID with a validated type and descriptor (SDM vol. 2, INVPCID).
    pub fn invpcid(&mut self, kind: u64, pcid: u16, lin: u64) {
        let dropped = match kind {
            0 => self.atlb.flush_page(pcid, lin, false),
            1 => self.atlb.flush_pcid(pcid),
            2 => {
                self.atlb.flush_all();
                true
            }
            _ => self.atlb.flush_nonglobal(),
        };
        if dropped {
            self.flush_fast();
        }
    }

    /// MOV to CR3 (and task switches): reserved-bit check, PDPTE load under PAE paging,
    /// and the invalidation of SDM 4.10.4.1 — the new PCID's non-global translations,
    /// unless CR4.PCIDE and bit 63 of the source say to keep them. Bit 63 is not stored.
    pub fn load_cr3(&mut self, v: u64) -> Flow {
        let pcide = self.s.cr4 & cr4::PCIDE != 0;
        let keep = pcide && v >> 63 != 0;
        let v = if pcide { v & !(1 << 63) } else { v };
        if self.mode64 && v >> self.env.model.phys_bits != 0 {
            return Err(gp0());
        }
        if paging_mode(self.s.cr0, self.s.cr4, self.s.efer) == Mode::Pae {
            self.s.pdpte = self.read_pdptes(v)?;
        }
        self.s.cr3 = v;
        self.stats.cr3_loads += 1;
        if !keep {
            let pcid = self.pcid();
            self.atlb.flush_pcid(pcid);
        }
        // The fast table holds one context; the PCID may have changed.
        self.flush_fast();
        Ok(())
    }

    /// Commits CR0/CR4/EFER from MOV to CR0 or CR4, after the caller's own checks: checks
    /// CR4.PCIDE's rules, loads the PDPTEs when PAE paging results and CD, NW, PG, PAE, PGE,
    /// PSE or SMEP changes (#GP(0) on a reserved bit, nothing committed), then invalidates
    /// as SDM 4.10.4.1 says.
    pub fn commit_paging_control(&mut self, new_cr0: u64, new_cr4: u64, new_efer: u64) -> Flow {
        let d0 = new_cr0 ^ self.s.cr0;
        let d4 = new_cr4 ^ self.s.cr4;
        if new_cr4 & cr4::PCIDE != 0 {
            // PCIDE only in IA-32e mode, and set only while CR3[11:0] = 0; PG cannot be
            // cleared while it is set.
            if new_efer & efer::LMA == 0
                || (d4 & cr4::PCIDE != 0 && self.s.cr3 & 0xfff != 0)
                || new_cr0 & cr0::PG == 0
            {
                return Err(gp0());
            }
        }
        let mode = paging_mode(new_cr0, new_cr4, new_efer);
        if mode == Mode::Pae
            && (d0 & (cr0::CD | cr0::NW | cr0::PG) != 0
                || d4 & (cr4::PAE | cr4::PGE | cr4::PSE | cr4::SMEP) != 0)
        {
            self.s.pdpte = self.read_pdptes(self.s.cr3)?;
        }
        self.s.cr0 = new_cr0;
        self.s.cr4 = new_cr4;
        self.s.efer = new_efer;
        if d0 & cr0::PG != 0
            || d4 & (cr4::PGE | cr4::PAE) != 0
            || (d4 & cr4::PCIDE != 0 && new_cr4 & cr4::PCIDE == 0)
            || (d4 & cr4::SMEP != 0 && new_cr4 & cr4::SMEP != 0)
        {
            self.flush_tlb();
        } else if d0 & (cr0::WP | cr0::PE) != 0 || d4 & (cr4::SMEP | cr4::SMAP) != 0 {
            self.flush_fast();
        }
        Ok(())
    }

    /// Translates and, when the page is RAM that this access kind may use directly, fills
    /// the fast table. Returns the physical address.
    pub(crate) fn translate_fill(&mut self, lin: u64, access: Access) -> Result<u64, Trap> {
        self.stats.tlb_misses += 1;
        let (phys, fast_ok) = self.translate_entry(lin, access)?;
        if !fast_ok {
            return Ok(phys);
        }
        let phys_page = phys & PAGE_MASK;
        if let Some(r) = self.env.mem.host_range(phys_page) {
            let usable = match access {
                Access::Write => r.writable && !self.code_pages.contains(&phys_page),
                _ => true,
            };
            // Watched pages stay out of the TLB so that every access reaches the slow path.
            if usable && r.len >= 4096 && !self.debug.watches_page(lin) {
                self.tlb.fill(access, lin, r.ptr, phys_page);
            }
        }
        Ok(phys)
    }

    /// Linear read of 1, 2, 4 or 8 bytes.
    #[inline]
    pub fn read_lin(&mut self, lin: u64, size: u8) -> Result<u64, Trap> {
        if (lin & 0xfff) + size as u64 <= 4096 {
            if let Some(p) = self.tlb.lookup(Access::Read, lin) {
                self.stats.tlb_hits += 1;
                // SAFETY: the TLB maps whole RAM pages of a live mapping, and the access
                // does not cross the page.
                return Ok(unsafe { read_host(p, size) });
            }
        }
        self.read_slow(lin, size, Access::Read)
    }

    /// Linear write of 1, 2, 4 or 8 bytes.
    #[inline]
    pub fn write_lin(&mut self, lin: u64, size: u8, v: u64) -> Result<(), Trap> {
        if (lin & 0xfff) + size as u64 <= 4096 {
            if let Some(p) = self.tlb.lookup(Access::Write, lin) {
                self.stats.tlb_hits += 1;
                // SAFETY: as in `read_lin`; write entries exist only for writable RAM.
                unsafe { write_host(p, size, v) };
                return Ok(());
            }
        }
        self.write_slow(lin, size, v)
    }

    pub(crate) fn read_slow(&mut self, lin: u64, size: u8, access: Access) -> Result<u64, Trap> {
        if self.dbg.watch {
            self.watch_access(lin, size, access)?;
        }
        let mut bytes = [0u8; 8];
        let first = (4096 - (lin & 0xfff)).min(size as u64) as usize;
        // Translate every page before touching any, so a fault on the second page leaves
        // nothing half done.
        let p0 = self.translate_fill(lin, access)?;
        let p1 = if first < size as usize {
            Some(self.translate_fill(lin.wrapping_add(first as u64), access)?)
        } else {
            None
        };
        self.read_phys(p0, &mut bytes[..first]);
        if let Some(p1) = p1 {
            self.read_phys(p1, &mut bytes[first..size as usize]);
        }
        if self.debug.watching() {
            self.debug.check(lin, size, false);
        }
        Ok(u64::from_le_bytes(bytes))
    }

    fn write_slow(&mut self, lin: u64, size: u8, v: u64) -> Result<(), Trap> {
        if self.dbg.watch {
            self.watch_access(lin, size, Access::Write)?;
        }
        let bytes = v.to_le_bytes();
        let first = (4096 - (lin & 0xfff)).min(size as u64) as usize;
        let p0 = self.translate_fill(lin, Access::Write)?;
        let p1 = if first < size as usize {
            Some(self.translate_fill(lin.wrapping_add(first as u64), Access::Write)?)
        } else {
            None
        };
        self.write_phys(p0, &bytes[..first]);
        if let Some(p1) = p1 {
            self.write_phys(p1, &bytes[first..size as usize]);
        }
        if self.debug.watching() {
            self.debug.check(lin, size, true);
        }
        if self.env.control.is_pending() {
            return Err(Trap::Stop);
        }
        Ok(())
    }

    /// Reads guest-physical memory or MMIO.
    pub fn read_phys(&mut self, phys: u64, buf: &mut [u8]) {
        if let Some(r) = self.env.mem.host_range(phys) {
            if r.len >= buf.len() as u64 {
                // SAFETY: the range covers `buf.len()` bytes of a live mapping.
                unsafe { std::ptr::copy_nonoverlapping(r.ptr, buf.as_mut_ptr(), buf.len()) };
                return;
            }
        }
        self.stats.mmio_reads += 1;
        if let Some((apic, off)) = crate::apic_port::mmio_hit(self, phys) {
            apic.mmio_read(off, buf);
            return;
        }
        self.env.mmio.read(phys, buf);
    }

    /// Writes guest-physical memory or MMIO, keeping decoded code coherent.
    pub fn write_phys(&mut self, phys: u64, data: &[u8]) {
        let page = phys & PAGE_MASK;
        if self.code_pages.contains(&page) {
            self.smc_pages.push((page, phys, phys + data.len() as u64));
            self.break_block = true;
        }
        if let Some(r) = self.env.mem.host_range(phys) {
            if r.len >= data.len() as u64 {
                if r.writable {
                    // SAFETY: the range covers `data.len()` writable bytes.
                    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), r.ptr, data.len()) };
                }
                // Writes to ROM are dropped, as on a PC.
                return;
            }
        }
        self.stats.mmio_writes += 1;
        if let Some((apic, off)) = crate::apic_port::mmio_hit(self, phys) {
            apic.mmio_write(off, data);
            // The write may have made an interrupt deliverable (EOI, TPR, self-IPI).
            self.break_block = true;
            return;
        }
        self.env.mmio.write(phys, data);
    }

    /// Reads `buf.len()` bytes at a linear address for instruction fetch.
    pub(crate) fn fetch(&mut self, lin: u64, buf: &mut [u8]) -> Result<(), Trap> {
        let mut done = 0;
        while done < buf.len() {
            let a = lin.wrapping_add(done as u64);
            let a = if self.mode64 { a } else { a & 0xffff_ffff };
            let n = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            let p = self.translate(a, Access::Exec)?;
            self.read_phys(p, &mut buf[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// # Safety
/// `p` must point to at least `size` readable bytes.
#[inline(always)]
pub(crate) unsafe fn read_host(p: *const u8, size: u8) -> u64 {
    match size {
        1 => *p as u64,
        2 => (p as *const u16).read_unaligned() as u64,
        4 => (p as *const u32).read_unaligned() as u64,
        _ => (p as *const u64).read_unaligned(),
    }
}

/// # Safety
/// `p` must point to at least `size` writable bytes.
#[inline(always)]
pub(crate) unsafe fn write_host(p: *mut u8, size: u8, v: u64) {
    match size {
        1 => *p = v as u8,
        2 => (p as *mut u16).write_unaligned(v as u16),
        4 => (p as *mut u32).write_unaligned(v as u32),
        _ => (p as *mut u64).write_unaligned(v),
    }
}
