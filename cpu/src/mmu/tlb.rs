//! The shadow tables, in two levels.
//!
//! - `Tlb` is the hit path: per access kind, a direct-mapped array from (linear page,
//!   privilege) to "host address minus linear page". A hit is one compare and one add. Its
//!   entries are derived from the architectural TLB below *with the permission checks of the
//!   moment already applied* (CPL, CR0.WP, SMEP/SMAP, NX), so it holds only the current
//!   context and is flushed whenever any of those inputs change. A flush bumps an epoch kept
//!   in the tag's low bits, so it costs nothing until the epoch wraps.
//! - `ArchTlb` models what x86 says a TLB holds: translations tagged with a PCID or marked
//!   global, with the combined R/W, U/S and XD rights of the walk and the dirty state of the
//!   leaf. It survives what the architecture lets it survive (MOV CR3 keeps globals and other
//!   PCIDs' entries), so a stale translation stays visible exactly until the required
//!   invalidation. Capacity evictions are allowed by the architecture and happen only when
//!   it grows very large.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Access;

pub(crate) const TLB_SIZE: usize = 256;
pub(crate) const PAGE_MASK: u64 = !0xfff;

const VALID: u64 = 1;
const USER: u64 = 2;
const EPOCH_SHIFT: u32 = 2;
const EPOCH_MASK: u64 = 0x3ff << EPOCH_SHIFT;

#[derive(Clone, Copy, Default)]
struct Entry {
    /// Linear page | epoch | user | valid.
    tag: u64,
    /// Host address of the page minus the linear page address.
    addend: u64,
    /// Guest-physical page, for dropping write entries to pages that now hold code.
    phys: u64,
}

/// The fast, direct-mapped shadow table per access kind (read, write, fetch).
pub struct Tlb {
    entries: Box<[[Entry; TLB_SIZE]; 3]>,
    /// No fills: every access takes the slow path (data breakpoints or #AC armed).
    bypass: bool,
    /// Tag bits a hit must match: valid, the privilege of accesses (user = CPL 3 and not an
    /// implicit supervisor access) and the current epoch.
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
            bypass: false,
            tag_bits: VALID | (1 << EPOCH_SHIFT),
        }
    }

    /// Sets the privilege of the following accesses: user (CPL 3) or supervisor. Code that
    /// makes implicit supervisor accesses at CPL 3 (descriptor tables, TSS, event delivery)
    /// switches to supervisor around them; the page walk follows this, not the CPL.
    pub fn set_user(&mut self, user: bool) {
        self.tag_bits = (self.tag_bits & !USER) | if user { USER } else { 0 };
    }

    /// Whether accesses are currently made with user privilege.
    #[inline]
    pub fn user(&self) -> bool {
        self.tag_bits & USER != 0
    }

    /// Same as `user`, under the name debug.rs uses.
    pub fn user_mode(&self) -> bool {
        self.user()
    }

    /// Stops (and drops) or resumes caching, so that every access reaches `read_slow` /
    /// `write_slow` (see debug.rs).
    pub fn set_bypass(&mut self, on: bool) {
        if on {
            self.flush();
        }
        self.bypass = on;
    }

    /// Valid entries of the current epoch and privilege as (access kind, linear page,
    /// physical page), for a debugger's dump.
    pub fn entries(&self) -> Vec<(Access, u64, u64)> {
        let kinds = [Access::Read, Access::Write, Access::Exec];
        let mut v = Vec::new();
        for (k, table) in kinds.iter().zip(self.entries.iter()) {
            for e in table.iter() {
                if e.tag & !PAGE_MASK == self.tag_bits {
                    v.push((*k, e.tag & PAGE_MASK, e.phys));
                }
            }
        }
        v
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

    pub(crate) fn fill(&mut self, access: Access, lin: u64, host_page: *mut u8, phys_page: u64) {
        if self.bypass {
            return;
        }
        let e = &mut self.entries[access as usize][Self::slot(lin)];
        e.tag = (lin & PAGE_MASK) | self.tag_bits;
        e.addend = (host_page as u64).wrapping_sub(lin & PAGE_MASK);
        e.phys = phys_page;
    }

    /// Drops every entry: a new epoch makes all old tags miss.
    pub fn flush(&mut self) {
        let next = ((self.tag_bits & EPOCH_MASK) + (1 << EPOCH_SHIFT)) & EPOCH_MASK;
        if next == 0 {
            // The epoch wrapped: old tags could match again, so clear them for real.
            for table in self.entries.iter_mut() {
                for e in table.iter_mut() {
                    e.tag = 0;
                }
            }
        }
        let next = if next == 0 { 1 << EPOCH_SHIFT } else { next };
        self.tag_bits = (self.tag_bits & !EPOCH_MASK) | next;
    }

    /// Drops every entry for one linear page, for both privileges.
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

/// Rights and state of one cached translation.
pub(crate) mod tflags {
    /// Writable at every level (R/W = 1 everywhere).
    pub const W: u8 = 1;
    /// User-accessible at every level.
    pub const U: u8 = 2;
    /// Execute-disable at some level (only with EFER.NXE).
    pub const NX: u8 = 4;
    /// Global page (G = 1 in the leaf with CR4.PGE).
    pub const G: u8 = 8;
    /// The leaf's dirty bit is known to be set: writes need no walk.
    pub const D: u8 = 16;
}

/// One translation as the architecture lets a TLB cache it: per 4 KiB page of the linear
/// address space (large pages are cached as 4 KiB fragments, which the SDM allows; each
/// remembers its page size so INVLPG drops all fragments of a large page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Translation {
    pub lin_page: u64,
    pub phys_page: u64,
    /// log2 of the page size that mapped it: 12, 21, 22 or 30.
    pub size_shift: u8,
    pub flags: u8,
}

impl Translation {
    #[inline]
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Multiplicative hash for page keys (the default SipHash is needlessly slow here).
#[derive(Default)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Key tag used for global translations (they match every PCID).
const GLOBAL_TAG: u64 = 0x1000;
/// Above this many translations the whole TLB is dropped (a capacity eviction).
const CAPACITY: usize = 1 << 16;

/// The architectural TLB: translations keyed by (linear page, PCID or "global").
#[derive(Default)]
pub struct ArchTlb {
    map: HashMap<u64, Translation, BuildHasherDefault<PageHasher>>,
    /// Fragments of large pages present (INVLPG then scans for them).
    large: usize,
}

fn key(lin: u64, tag: u64) -> u64 {
    // Bits 56:12 of the linear address: enough to tell canonical 48- and 57-bit addresses
    // apart, leaving 13 low bits for the PCID (12) or the global tag.
    (((lin >> 12) & ((1 << 45) - 1)) << 13) | tag
}

impl ArchTlb {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn lookup(&self, pcid: u16, lin: u64) -> Option<Translation> {
        self.map
            .get(&key(lin, pcid as u64))
            .or_else(|| self.map.get(&key(lin, GLOBAL_TAG)))
            .copied()
    }

    /// Caches a translation; returns true when the TLB was emptied to make room (the
    /// caller then flushes the fast table as well).
    pub(crate) fn insert(&mut self, pcid: u16, t: Translation) -> bool {
        let mut evicted = false;
        if self.map.len() >= CAPACITY {
            self.flush_all();
            evicted = true;
        }
        let tag = if t.has(tflags::G) {
            GLOBAL_TAG
        } else {
            pcid as u64
        };
        // One translation per page and context: a fresh walk replaces the other kind
        // (global vs PCID-tagged) too, or lookups would keep finding the older one.
        let other = if tag == GLOBAL_TAG {
            pcid as u64
        } else {
            GLOBAL_TAG
        };
        self.map.remove(&key(t.lin_page, other));
        if t.size_shift > 12 {
            self.large += 1;
        }
        self.map.insert(key(t.lin_page, tag), t);
        evicted
    }

    pub fn flush_all(&mut self) {
        self.map.clear();
        self.large = 0;
    }

    /// Drops the translations `drop` selects (by PCID tag and translation).
    fn retain(&mut self, mut drop: impl FnMut(u64, &Translation) -> bool) -> bool {
        let before = self.map.len();
        self.map.retain(|k, t| !drop(k & 0x1fff, t));
        self.large = self.map.values().filter(|t| t.size_shift > 12).count();
        self.map.len() != before
    }

    /// Non-global translations of one PCID (MOV CR3, INVPCID single-context).
    pub fn flush_pcid(&mut self, pcid: u16) -> bool {
        self.retain(|tag, _| tag == pcid as u64)
    }

    /// Every non-global translation (INVPCID all-context except globals).
    pub fn flush_nonglobal(&mut self) -> bool {
        self.retain(|tag, _| tag != GLOBAL_TAG)
    }

    /// Translations of the page containing `lin` for `pcid`, and, when `globals`, global
    /// ones too, including every fragment of a large page that covers `lin` (INVLPG,
    /// INVPCID individual-address). Returns whether anything was dropped.
    pub fn flush_page(&mut self, pcid: u16, lin: u64, globals: bool) -> bool {
        let mut dropped = self.map.remove(&key(lin, pcid as u64)).is_some();
        if globals {
            dropped |= self.map.remove(&key(lin, GLOBAL_TAG)).is_some();
        }
        if self.large > 0 {
            let lin = lin & PAGE_MASK;
            dropped |= self.retain(|tag, t| {
                (tag == pcid as u64 || (globals && tag == GLOBAL_TAG))
                    && t.size_shift > 12
                    && (t.lin_page ^ lin) >> t.size_shift == 0
            });
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(lin: u64, shift: u8, flags: u8) -> Translation {
        Translation {
            lin_page: lin,
            phys_page: lin + 0x100_0000,
            size_shift: shift,
            flags,
        }
    }

    #[test]
    fn fast_flush_by_epoch_and_page() {
        let mut tlb = Tlb::new();
        let mut page = [0u8; 4096];
        tlb.fill(Access::Read, 0x5000, page.as_mut_ptr(), 0x9000);
        assert_eq!(
            tlb.lookup(Access::Read, 0x5123),
            Some(page.as_mut_ptr().wrapping_add(0x123))
        );
        assert_eq!(tlb.lookup(Access::Write, 0x5123), None);
        tlb.set_user(true);
        assert_eq!(
            tlb.lookup(Access::Read, 0x5123),
            None,
            "privilege is part of the tag"
        );
        tlb.set_user(false);
        tlb.flush();
        assert_eq!(tlb.lookup(Access::Read, 0x5123), None);
        tlb.fill(Access::Read, 0x5000, page.as_mut_ptr(), 0x9000);
        tlb.flush_page(0x5fff);
        assert_eq!(tlb.lookup(Access::Read, 0x5000), None);
        // Epoch wrap-around still invalidates.
        tlb.fill(Access::Read, 0x5000, page.as_mut_ptr(), 0x9000);
        for _ in 0..1024 {
            tlb.flush();
        }
        assert_eq!(tlb.lookup(Access::Read, 0x5000), None);
    }

    #[test]
    fn pcid_and_global_tagging() {
        let mut a = ArchTlb::default();
        a.insert(1, t(0x1000, 12, 0));
        a.insert(2, t(0x2000, 12, tflags::G));
        assert!(a.lookup(1, 0x1000).is_some());
        assert!(a.lookup(2, 0x1000).is_none());
        assert!(a.lookup(7, 0x2000).is_some(), "global matches any PCID");
        a.flush_pcid(1);
        assert!(a.lookup(1, 0x1000).is_none());
        assert!(a.lookup(1, 0x2000).is_some());
        assert!(a.flush_page(5, 0x2000, true));
        assert!(a.lookup(1, 0x2000).is_none());
        // A page that became global replaces the PCID-tagged translation.
        a.insert(1, t(0x3000, 12, 0));
        a.insert(1, t(0x3000, 12, tflags::G | tflags::D));
        assert!(a.lookup(1, 0x3000).is_some_and(|t| t.has(tflags::D)));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn invlpg_drops_every_fragment_of_a_large_page() {
        let mut a = ArchTlb::default();
        a.insert(0, t(0x20_0000, 21, 0));
        a.insert(0, t(0x3f_f000, 21, 0));
        a.insert(0, t(0x40_0000, 21, 0));
        assert!(a.flush_page(0, 0x21_2345, true));
        assert!(a.lookup(0, 0x20_0000).is_none());
        assert!(a.lookup(0, 0x3f_f000).is_none());
        assert!(a.lookup(0, 0x40_0000).is_some());
        assert!(!a.flush_page(3, 0x40_0000, true), "other PCIDs keep theirs");
    }
}
