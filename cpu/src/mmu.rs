//! Linear-to-physical translation: the page walk and the software TLB in front of it.
//!
//! `translate` is the single entry point every access goes through on a TLB miss; the
//! system-CPU work grows it (SMEP/SMAP, PKU, PCID-tagged entries) without changing callers.
//! A TLB hit costs a compare and an add: the entry holds the host address minus the linear
//! page.

use crate::cpu::Cpu;
use crate::exception::{Exception, Trap, PF};
use crate::state::{cr0, cr4, efer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read = 0,
    Write = 1,
    Exec = 2,
}

const TLB_SIZE: usize = 256;
const PAGE_MASK: u64 = !0xfff;

#[derive(Clone, Copy, Default)]
struct Entry {
    /// Linear page | tag bits (valid, user).
    tag: u64,
    /// Host address of the page minus the linear page address.
    addend: u64,
    /// Guest-physical page, for invalidating entries that point to it.
    phys: u64,
}

/// Direct-mapped TLBs for reads, writes and fetches.
pub struct Tlb {
    entries: Box<[[Entry; TLB_SIZE]; 3]>,
    /// Tag bits that a hit must match: bit 0 valid, bit 1 user (CPL 3).
    tag_bits: u64,
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlb {
    pub fn new() -> Self {
        Tlb {
            entries: Box::new([[Entry::default(); TLB_SIZE]; 3]),
            tag_bits: 1,
        }
    }

    pub fn set_user(&mut self, user: bool) {
        self.tag_bits = 1 | ((user as u64) << 1);
    }

    /// Slot of a linear page: low page-number bits folded with higher ones, so that buffers
    /// a multiple of 1 MiB apart do not evict each other.
    #[inline(always)]
    fn slot(lin: u64) -> usize {
        (((lin >> 12) ^ (lin >> 20)) as usize) & (TLB_SIZE - 1)
    }

    #[inline(always)]
    pub fn lookup(&self, access: Access, lin: u64) -> Option<*mut u8> {
        let e = &self.entries[access as usize][Self::slot(lin)];
        if e.tag == (lin & PAGE_MASK) | self.tag_bits {
            Some(lin.wrapping_add(e.addend) as *mut u8)
        } else {
            None
        }
    }

    fn fill(&mut self, access: Access, lin: u64, host_page: *mut u8, phys_page: u64) {
        let e = &mut self.entries[access as usize][Self::slot(lin)];
        e.tag = (lin & PAGE_MASK) | self.tag_bits;
        e.addend = (host_page as u64).wrapping_sub(lin & PAGE_MASK);
        e.phys = phys_page;
    }

    pub fn flush(&mut self) {
        for table in self.entries.iter_mut() {
            for e in table.iter_mut() {
                e.tag = 0;
            }
        }
    }

    /// Drops every entry for one linear page (INVLPG).
    pub fn flush_page(&mut self, lin: u64) {
        for table in self.entries.iter_mut() {
            let e = &mut table[Self::slot(lin)];
            if e.tag & PAGE_MASK == lin & PAGE_MASK {
                e.tag = 0;
            }
        }
    }

    /// Drops write entries that map the physical page (it now holds decoded code).
    pub fn flush_phys_writes(&mut self, phys_page: u64) {
        for e in self.entries[Access::Write as usize].iter_mut() {
            if e.tag != 0 && e.phys == phys_page {
                e.tag = 0;
            }
        }
    }
}

/// #PF error code bits.
pub mod pf {
    pub const P: u32 = 1;
    pub const W: u32 = 2;
    pub const U: u32 = 4;
    pub const RSVD: u32 = 8;
    pub const I: u32 = 16;
}

const PTE_P: u64 = 1;
const PTE_W: u64 = 2;
const PTE_U: u64 = 4;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;

impl Cpu {
    fn page_fault(&mut self, lin: u64, access: Access, code: u32) -> Trap {
        self.s.cr2 = lin;
        let mut c = code;
        if access == Access::Write {
            c |= pf::W;
        }
        if access == Access::Exec && self.s.efer & efer::NXE != 0 {
            c |= pf::I;
        }
        if self.s.cpl() == 3 {
            c |= pf::U;
        }
        Trap::Exception(Exception::with_code(PF, c))
    }

    fn read_pte(&self, addr: u64, wide: bool) -> Result<u64, Trap> {
        let r = if wide {
            self.env.mem.read_u64(addr)
        } else {
            self.env.mem.read_u32(addr).map(|v| v as u64)
        };
        // A page-table entry outside RAM reads as all ones on a PC bus; treating it as a
        // machine check would be harsher than hardware, so follow the bus.
        Ok(r.unwrap_or(u64::MAX))
    }

    fn set_pte_bits(&self, addr: u64, old: u64, bits: u64, wide: bool) {
        if old & bits == bits {
            return;
        }
        let v = old | bits;
        let _ = if wide {
            self.env.mem.write_u64(addr, v)
        } else {
            self.env.mem.write_u32(addr, v as u32)
        };
    }

    /// Walks the guest page tables for `lin`. Sets A (and D on writes) as hardware does.
    pub fn translate(&mut self, lin: u64, access: Access) -> Result<u64, Trap> {
        if self.s.cr0 & cr0::PG == 0 {
            return Ok(lin & 0xffff_ffff);
        }
        let user = self.s.cpl() == 3;
        let wp = self.s.cr0 & cr0::WP != 0;
        let nxe = self.s.efer & efer::NXE != 0;
        let phys_mask = (1u64 << 52) - 1;
        // (table address, entry index, wide, levels left)
        let (mut table, levels, wide): (u64, u32, bool) = if self.s.efer & efer::LMA != 0 {
            (self.s.cr3 & 0x000f_ffff_ffff_f000, 4, true)
        } else if self.s.cr4 & cr4::PAE != 0 {
            (self.s.cr3 & 0xffff_ffe0, 3, true)
        } else {
            (self.s.cr3 & 0xffff_f000, 2, false)
        };
        let mut writable = true;
        let mut user_ok = true;
        let mut nx = false;
        let mut level = levels;
        loop {
            let (shift, idx_bits) = if wide {
                (12 + 9 * (level - 1), 9)
            } else {
                (12 + 10 * (level - 1), 10)
            };
            let idx = (lin >> shift) & ((1 << idx_bits) - 1);
            // The PAE PDPT has 4 entries indexed by bits 31:30.
            let idx = if wide && levels == 3 && level == 3 {
                (lin >> 30) & 3
            } else {
                idx
            };
            let addr = table + idx * if wide { 8 } else { 4 };
            let pte = self.read_pte(addr, wide)?;
            if pte & PTE_P == 0 {
                return Err(self.page_fault(lin, access, 0));
            }
            let pdpt_pae = wide && levels == 3 && level == 3;
            if !pdpt_pae {
                writable &= pte & PTE_W != 0;
                user_ok &= pte & PTE_U != 0;
                nx |= nxe && pte & PTE_NX != 0;
            }
            let large = level > 1
                && pte & PTE_PS != 0
                && !pdpt_pae
                && (level <= 2 && (wide || self.s.cr4 & cr4::PSE != 0)
                    || (level == 3 && levels == 4));
            if level == 1 || large {
                let page_size_shift = shift;
                if access == Access::Write && !writable && (user || wp) {
                    return Err(self.page_fault(lin, access, pf::P));
                }
                if user && !user_ok {
                    return Err(self.page_fault(lin, access, pf::P));
                }
                if access == Access::Exec && nx {
                    return Err(self.page_fault(lin, access, pf::P));
                }
                let mut bits = PTE_A;
                if access == Access::Write {
                    bits |= PTE_D;
                }
                self.set_pte_bits(addr, pte, bits, wide);
                let base = if !wide && large {
                    // PSE-36: bits 13..20 of a 4 MiB PDE are physical address bits 32..39.
                    (pte & 0xffc0_0000) | ((pte >> 13) & 0xff) << 32
                } else {
                    pte & phys_mask & !((1u64 << page_size_shift) - 1)
                };
                return Ok(base | (lin & ((1u64 << page_size_shift) - 1)));
            }
            if !pdpt_pae {
                self.set_pte_bits(addr, pte, PTE_A, wide);
            }
            table = if wide {
                pte & phys_mask & !0xfff
            } else {
                pte & 0xffff_f000
            };
            level -= 1;
        }
    }

    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
        self.stats.tlb_flushes += 1;
    }

    /// Translates and, when the page is RAM that this access kind may use directly, fills
    /// the TLB. Returns the physical address.
    pub(crate) fn translate_fill(&mut self, lin: u64, access: Access) -> Result<u64, Trap> {
        let phys = self.translate(lin, access)?;
        let phys_page = phys & PAGE_MASK;
        if let Some(r) = self.env.mem.host_range(phys_page) {
            let usable = match access {
                Access::Write => r.writable && !self.code_pages.contains(&phys_page),
                _ => true,
            };
            if usable && r.len >= 4096 {
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
                // SAFETY: as in `read_lin`; write entries exist only for writable RAM.
                unsafe { write_host(p, size, v) };
                return Ok(());
            }
        }
        self.write_slow(lin, size, v)
    }

    pub(crate) fn read_slow(&mut self, lin: u64, size: u8, access: Access) -> Result<u64, Trap> {
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
        Ok(u64::from_le_bytes(bytes))
    }

    fn write_slow(&mut self, lin: u64, size: u8, v: u64) -> Result<(), Trap> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::env;
    use crate::state::CpuState;

    fn long_mode_cpu() -> Cpu {
        let e = env(16 << 20);
        let m = e.mem.clone();
        // PML4 at 0x1000 → PDPT at 0x2000 → PD at 0x3000 (2 MiB pages) and a PT at 0x4000.
        m.write_u64(0x1000, 0x2000 | 3).unwrap();
        m.write_u64(0x2000, 0x3000 | 3).unwrap();
        m.write_u64(0x3000, 0x83).unwrap(); // 0..2M → 0, 2 MiB page
        m.write_u64(0x3008, 0x4000 | 3).unwrap(); // 2M..4M → PT
        m.write_u64(0x4000 + 8 * 5, 0x00a0_0000 | 1).unwrap(); // read-only 4K page
        let mut s = CpuState::protected_flat();
        s.cr3 = 0x1000;
        s.cr4 |= cr4::PAE;
        s.efer = efer::LME | efer::LMA;
        s.cr0 |= cr0::PG | cr0::WP;
        Cpu::new(e, s)
    }

    #[test]
    fn walk_2m_and_4k_pages() {
        let mut c = long_mode_cpu();
        assert_eq!(c.translate(0x12_3456, Access::Read).unwrap(), 0x12_3456);
        assert_eq!(c.translate(0x20_5123, Access::Read).unwrap(), 0xa0_0123);
        // Accessed bits were set on the way.
        assert_ne!(c.env.mem.read_u64(0x1000).unwrap() & PTE_A, 0);
        assert_ne!(c.env.mem.read_u64(0x4000 + 40).unwrap() & PTE_A, 0);
    }

    #[test]
    fn write_to_read_only_page_faults_with_code() {
        let mut c = long_mode_cpu();
        let e = c.translate(0x20_5000, Access::Write).unwrap_err();
        assert_eq!(e, Trap::Exception(Exception::with_code(PF, pf::P | pf::W)));
        assert_eq!(c.s.cr2, 0x20_5000);
        let e = c.translate(0x20_6000, Access::Read).unwrap_err();
        assert_eq!(e, Trap::Exception(Exception::with_code(PF, 0)));
    }

    #[test]
    fn tlb_hit_after_fill_and_dirty_bit() {
        let mut c = long_mode_cpu();
        c.write_lin(0x1_0000, 8, 0x1122_3344_5566_7788).unwrap();
        assert!(c.tlb.lookup(Access::Write, 0x1_0008).is_some());
        assert_eq!(c.read_lin(0x1_0004, 4).unwrap(), 0x1122_3344);
        assert_ne!(c.env.mem.read_u64(0x3000).unwrap() & PTE_D, 0);
    }

    #[test]
    fn page_crossing_access() {
        let mut c = long_mode_cpu();
        c.write_lin(0x5ffe, 4, 0xaabb_ccdd).unwrap();
        assert_eq!(c.read_lin(0x5ffe, 4).unwrap(), 0xaabb_ccdd);
        assert_eq!(c.read_lin(0x6000, 1).unwrap(), 0xbb);
    }
}
