//! The page walk (SDM vol. 3 ch. 4): 32-bit paging with 4 MiB pages (PSE, PSE-36), PAE
//! paging with the PDPTE registers, and 4-level paging with 2 MiB and 1 GiB pages, with the
//! reserved-bit checks of every level. LA57 (5-level paging) is not implemented and not
//! advertised.
//!
//! The walk only reads: it returns the translation and the entries it used, and the caller
//! sets accessed/dirty bits once the access is known to be allowed, so a faulting access
//! leaves the tables untouched.

use super::pf;
use super::tlb::{tflags, Translation, PAGE_MASK};
use crate::cpu::Cpu;
use crate::exception::{gp0, Trap};
use crate::model::feat;
use crate::state::{cr0, cr4, efer};

pub(crate) const PTE_P: u64 = 1;
pub(crate) const PTE_W: u64 = 2;
pub(crate) const PTE_U: u64 = 4;
pub(crate) const PTE_A: u64 = 1 << 5;
pub(crate) const PTE_D: u64 = 1 << 6;
pub(crate) const PTE_PS: u64 = 1 << 7;
pub(crate) const PTE_G: u64 = 1 << 8;
pub(crate) const PTE_NX: u64 = 1 << 63;

/// Bits `hi..=lo` set.
const fn bits(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1)
}

/// A successful walk: the translation and the paging-structure entries it used (address,
/// value, 8-byte entry), the last one being the leaf.
pub(crate) struct Walked {
    pub t: Translation,
    pub used: [(u64, u64, bool); 4],
    pub n: usize,
}

impl Walked {
    fn push(&mut self, addr: u64, v: u64, wide: bool) {
        self.used[self.n] = (addr, v, wide);
        self.n += 1;
    }
}

/// Which paging mode CR0/CR4/EFER select.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    None,
    Bits32,
    Pae,
    Level4,
}

pub(crate) fn paging_mode(cr0: u64, cr4: u64, efer: u64) -> Mode {
    if cr0 & cr0::PG == 0 {
        Mode::None
    } else if efer & efer::LMA != 0 {
        Mode::Level4
    } else if cr4 & cr4::PAE != 0 {
        Mode::Pae
    } else {
        Mode::Bits32
    }
}

impl Cpu {
    fn phys_bits(&self) -> u32 {
        self.env.model.phys_bits as u32
    }

    fn read_pte(&self, addr: u64, wide: bool) -> u64 {
        let r = if wide {
            self.env.mem.read_u64(addr)
        } else {
            self.env.mem.read_u32(addr).map(|v| v as u64)
        };
        // An entry outside RAM reads as all ones on a PC bus (and then faults on its
        // reserved bits); a machine check would be harsher than hardware.
        r.unwrap_or(u64::MAX)
    }

    /// Walks the tables for `lin`. `Err` holds the #PF error-code bits the walk itself
    /// decides: 0 for a not-present entry, P|RSVD for a reserved bit.
    pub(crate) fn walk(&self, lin: u64) -> Result<Walked, u32> {
        let mut w = Walked {
            t: Translation {
                lin_page: lin & PAGE_MASK,
                phys_page: 0,
                size_shift: 12,
                flags: tflags::W | tflags::U,
            },
            used: [(0, 0, false); 4],
            n: 0,
        };
        let pge = self.s.cr4 & cr4::PGE != 0;
        match paging_mode(self.s.cr0, self.s.cr4, self.s.efer) {
            Mode::None => {
                w.t.phys_page = lin & 0xffff_f000;
                Ok(w)
            }
            Mode::Bits32 => self.walk32(lin, w, pge),
            Mode::Pae => {
                let pdpte = self.s.pdpte[((lin >> 30) & 3) as usize];
                if pdpte & PTE_P == 0 {
                    return Err(0);
                }
                let rsvd = bits(62, self.phys_bits()) | self.nx_reserved();
                self.walk_wide(lin, w, pdpte & self.addr_mask(), 2, rsvd, pge)
            }
            Mode::Level4 => {
                let rsvd = bits(51, self.phys_bits()) | self.nx_reserved();
                self.walk_wide(lin, w, self.s.cr3 & self.addr_mask(), 4, rsvd, pge)
            }
        }
    }

    fn nx_reserved(&self) -> u64 {
        if self.s.efer & efer::NXE != 0 {
            0
        } else {
            PTE_NX
        }
    }

    /// Physical-address bits M-1:12 of an entry.
    fn addr_mask(&self) -> u64 {
        bits(self.phys_bits() - 1, 12)
    }

    fn walk32(&self, lin: u64, mut w: Walked, pge: bool) -> Result<Walked, u32> {
        let pde_addr = (self.s.cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
        let pde = self.read_pte(pde_addr, false);
        if pde & PTE_P == 0 {
            return Err(0);
        }
        w.push(pde_addr, pde, false);
        self.combine(&mut w.t, pde);
        if pde & PTE_PS != 0 && self.s.cr4 & cr4::PSE != 0 {
            // PSE-36: PDE bits (M-20):13 are physical bits (M-1):32, bits 21:(M-19) are
            // reserved; M is MAXPHYADDR capped at 40 (32 without PSE-36).
            let m = if self.env.model.leaf1_edx & feat::PSE36 != 0 {
                self.phys_bits().min(40)
            } else {
                32
            };
            if pde & bits(21, m - 19) != 0 {
                return Err(pf::P | pf::RSVD);
            }
            let high = (pde >> 13) & ((1u64 << (m - 32)) - 1);
            w.t.size_shift = 22;
            w.t.phys_page = (pde & 0xffc0_0000) | (high << 32) | (lin & 0x003f_f000);
            self.leaf_flags(&mut w.t, pde, pge);
            return Ok(w);
        }
        let pte_addr = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
        let pte = self.read_pte(pte_addr, false);
        if pte & PTE_P == 0 {
            return Err(0);
        }
        w.push(pte_addr, pte, false);
        self.combine(&mut w.t, pte);
        w.t.phys_page = pte & 0xffff_f000;
        self.leaf_flags(&mut w.t, pte, pge);
        Ok(w)
    }

    /// PAE (levels = 2, below the PDPTE registers) and 4-level (levels = 4) walks.
    fn walk_wide(
        &self,
        lin: u64,
        mut w: Walked,
        mut table: u64,
        levels: u32,
        rsvd: u64,
        pge: bool,
    ) -> Result<Walked, u32> {
        let gb_pages = self.env.model.has_ext1_edx(feat::PDPE1GB);
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * (level - 1);
            let addr = table + ((lin >> shift) & 0x1ff) * 8;
            let e = self.read_pte(addr, true);
            if e & PTE_P == 0 {
                return Err(0);
            }
            let large = e & PTE_PS != 0;
            let extra = match level {
                // PML4E: PS is reserved.
                4 => PTE_PS,
                3 if large && !gb_pages => PTE_PS,
                3 if large => bits(29, 13),
                2 if large => bits(20, 13),
                _ => 0,
            };
            if e & (rsvd | extra) != 0 {
                return Err(pf::P | pf::RSVD);
            }
            w.push(addr, e, true);
            self.combine(&mut w.t, e);
            if level == 1 || (large && level <= 3) {
                let page = bits(self.phys_bits() - 1, shift) & e;
                w.t.size_shift = shift as u8;
                w.t.phys_page = page | (lin & bits(shift - 1, 12));
                self.leaf_flags(&mut w.t, e, pge);
                return Ok(w);
            }
            table = e & self.addr_mask();
        }
        unreachable!("level 1 always ends the walk")
    }

    /// Folds one entry's rights into the translation: R/W and U/S are ANDed, XD is ORed.
    fn combine(&self, t: &mut Translation, e: u64) {
        if e & PTE_W == 0 {
            t.flags &= !tflags::W;
        }
        if e & PTE_U == 0 {
            t.flags &= !tflags::U;
        }
        if e & PTE_NX != 0 && self.s.efer & efer::NXE != 0 {
            t.flags |= tflags::NX;
        }
    }

    fn leaf_flags(&self, t: &mut Translation, e: u64, pge: bool) {
        if pge && e & PTE_G != 0 {
            t.flags |= tflags::G;
        }
        if e & PTE_D != 0 {
            t.flags |= tflags::D;
        }
    }

    /// Reads the four PAE PDPTEs from CR3 (SDM 4.4.1). A present PDPTE with a reserved bit
    /// (63:M, 8:5, 2:1) makes the loading instruction raise #GP(0), loading nothing.
    pub(crate) fn read_pdptes(&self, cr3: u64) -> Result<[u64; 4], Trap> {
        let base = cr3 & 0xffff_ffe0;
        let rsvd = bits(63, self.phys_bits()) | bits(8, 5) | bits(2, 1);
        let mut p = [0u64; 4];
        for (k, e) in p.iter_mut().enumerate() {
            *e = self.read_pte(base + 8 * k as u64, true);
            if *e & PTE_P != 0 && *e & rsvd != 0 {
                return Err(gp0());
            }
        }
        Ok(p)
    }

    /// Sets the accessed bit in every entry the walk used and, for a write, the dirty bit
    /// of the leaf, as the processor does (never D in a non-leaf entry).
    pub(crate) fn set_accessed_dirty(&self, w: &Walked, write: bool) {
        for (k, &(addr, v, wide)) in w.used[..w.n].iter().enumerate() {
            let mut set = PTE_A;
            if write && k + 1 == w.n {
                set |= PTE_D;
            }
            if v & set != set {
                let nv = v | set;
                let _ = if wide {
                    self.env.mem.write_u64(addr, nv)
                } else {
                    self.env.mem.write_u32(addr, nv as u32)
                };
            }
        }
    }
}
