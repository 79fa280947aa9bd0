//! MMU tests: walks in every paging mode, rights, error codes, A/D bits, TLB semantics.

use super::walk::{PTE_A, PTE_D};
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

fn pf_code(c: u32) -> Trap {
    Trap::Exception(Exception::with_code(PF, c))
}

fn bits32_cpu(pse: bool) -> Cpu {
    let e = env(16 << 20);
    let m = e.mem.clone();
    // PD at 0x1000: PDE 0 → PT at 0x2000; PDE 1 = 4 MiB page at 0x0080_0000 with PSE-36
    // bits 39:32 = 0x12 (above RAM: only the translation is checked); PDE 2 → PT with bit 7
    // set (a 4 MiB page only with CR4.PSE).
    m.write_u32(0x1000, 0x2000 | 7).unwrap();
    m.write_u32(0x1004, 0x0080_0000 | (0x12 << 13) | 0x87)
        .unwrap();
    m.write_u32(0x1008, 0x2000 | 0x87).unwrap();
    m.write_u32(0x100c, 0x0080_0000 | (1 << 21) | 0x87).unwrap(); // bit 21 reserved
    m.write_u32(0x2000 + 4 * 3, 0x0030_0000 | 3).unwrap();
    let mut s = CpuState::protected_flat();
    s.cr3 = 0x1000;
    s.cr0 |= cr0::PG;
    if pse {
        s.cr4 |= cr4::PSE;
    }
    Cpu::new(e, s)
}

#[test]
fn bits32_4k_4m_and_pse36() {
    let mut c = bits32_cpu(true);
    assert_eq!(c.translate(0x3abc, Access::Read).unwrap(), 0x30_0abc);
    assert_eq!(
        c.translate(0x0051_2345, Access::Read).unwrap(),
        0x12_0091_2345
    );
    // With PSE the same PDE is a 4 MiB page; its bit 13 is physical bit 32.
    assert_eq!(
        c.translate(0x0080_3abc, Access::Read).unwrap(),
        0x1_0000_3abc
    );
    assert_eq!(
        c.translate(0x00c0_0000, Access::Read).unwrap_err(),
        pf_code(pf::P | pf::RSVD)
    );
    assert_eq!(c.s.cr2, 0x00c0_0000);
    // No NX in 32-bit paging, and no I/D bit without SMEP even with EFER.NXE.
    c.s.efer |= efer::NXE;
    assert_eq!(
        c.translate(0x0100_0000, Access::Exec).unwrap_err(),
        pf_code(0)
    );
    // Without PSE, bit 7 is ignored: PDE 2 points at the page table.
    let mut c = bits32_cpu(false);
    assert_eq!(c.translate(0x0080_3abc, Access::Read).unwrap(), 0x30_0abc);
}

fn pae_cpu() -> Cpu {
    let e = env(16 << 20);
    let m = e.mem.clone();
    // PDPT at 0x1020 (32-byte aligned): entry 0 → PD at 0x2000, entry 1 not present.
    m.write_u64(0x1020, 0x2000 | 1).unwrap();
    m.write_u64(0x2000, 0x0020_0000 | 0x83).unwrap(); // 2 MiB page
    m.write_u64(0x2008, 0x3000 | 3).unwrap();
    m.write_u64(0x3000 + 8, 0x8000_0000_0040_0000 | 3).unwrap(); // XD 4K page
    m.write_u64(0x3000 + 16, 0x0000_0100_0040_0000 | 3).unwrap(); // bit 40 ≥ MAXPHYADDR
    let mut s = CpuState::protected_flat();
    s.cr4 |= cr4::PAE;
    Cpu::new(e, s)
}

#[test]
fn pae_pdptes_load_at_mov_cr_and_reserved_bits() {
    let mut c = pae_cpu();
    c.s.cr3 = 0x1020;
    // Enabling paging loads the PDPTEs; later changes to memory are not seen.
    let cr0v = c.s.cr0 | cr0::PG;
    let (cr4v, ef) = (c.s.cr4, c.s.efer);
    c.commit_paging_control(cr0v, cr4v, ef).unwrap();
    c.env.mem.write_u64(0x1020, 0).unwrap();
    assert_eq!(c.translate(0x1234, Access::Read).unwrap(), 0x20_1234);
    assert_eq!(
        c.translate(0x4000_0000, Access::Read).unwrap_err(),
        pf_code(0)
    );
    // XD is reserved while EFER.NXE = 0.
    assert_eq!(
        c.translate(0x20_1000, Access::Read).unwrap_err(),
        pf_code(pf::P | pf::RSVD)
    );
    c.s.efer |= efer::NXE;
    c.flush_tlb();
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x40_0000);
    assert_eq!(
        c.translate(0x20_1000, Access::Exec).unwrap_err(),
        pf_code(pf::P | pf::I)
    );
    assert_eq!(
        c.translate(0x20_2000, Access::Write).unwrap_err(),
        pf_code(pf::P | pf::RSVD | pf::W)
    );
    // A PDPTE with a reserved bit: MOV CR3 raises #GP and loads nothing.
    c.env.mem.write_u64(0x1040, 0x2000 | 1 | (1 << 5)).unwrap();
    assert_eq!(c.load_cr3(0x1040), Err(gp0()));
    assert_eq!(c.s.cr3, 0x1020);
    c.env.mem.write_u64(0x1040, 0x2000 | 1).unwrap();
    c.load_cr3(0x1040).unwrap();
    assert_eq!(c.translate(0x1234, Access::Read).unwrap(), 0x20_1234);
}

#[test]
fn four_level_gigabyte_pages_and_reserved_bits() {
    let mut c = long_mode_cpu();
    let m = c.env.mem.clone();
    m.write_u64(0x2008, 0x4000_0000 | 0x83).unwrap(); // 1 GiB page at 1 GiB
    m.write_u64(0x2010, 0x4000_0000 | (1 << 13) | 0x83).unwrap(); // bit 13 reserved
    m.write_u64(0x1008, 0x2000 | 0x83).unwrap(); // PS in a PML4E
    m.write_u64(0x3010, 0x0020_0000 | (1 << 51) | 0x83).unwrap(); // bit 51 ≥ M
    assert_eq!(c.translate(0x7654_3210, Access::Read).unwrap(), 0x7654_3210);
    let rsvd = pf_code(pf::P | pf::RSVD);
    assert_eq!(c.translate(0x8000_0000, Access::Read).unwrap_err(), rsvd);
    assert_eq!(c.translate(0x80_0000_0000, Access::Read).unwrap_err(), rsvd);
    assert_eq!(c.translate(0x40_0000, Access::Read).unwrap_err(), rsvd);
    // A reserved-bit fault sets no accessed bit anywhere.
    assert_eq!(m.read_u64(0x3010).unwrap() & PTE_A, 0);
}

#[test]
fn rights_wp_smep_smap_and_error_codes() {
    let mut c = long_mode_cpu();
    let m = c.env.mem.clone();
    // Make the 4K page table user-accessible: PML4E/PDPTE/PDE with U.
    m.write_u64(0x1000, 0x2000 | 7).unwrap();
    m.write_u64(0x2000, 0x3000 | 7).unwrap();
    m.write_u64(0x3008, 0x4000 | 7).unwrap();
    m.write_u64(0x4000 + 8, 0x0050_0000 | 7).unwrap(); // user RW at 2M+4K
    m.write_u64(0x4000 + 16, 0x0051_0000 | 5).unwrap(); // user RO at 2M+8K
    m.write_u64(0x4000 + 24, 0x0052_0000 | 3).unwrap(); // supervisor RW at 2M+12K
                                                        // Supervisor write to a read-only page: allowed without WP.
    c.s.cr0 &= !cr0::WP;
    assert!(c.translate(0x20_2000, Access::Write).is_ok());
    let (cr0v, cr4v, ef) = (c.s.cr0 | cr0::WP, c.s.cr4, c.s.efer);
    c.commit_paging_control(cr0v, cr4v, ef).unwrap();
    assert_eq!(
        c.translate(0x20_2000, Access::Write).unwrap_err(),
        pf_code(pf::P | pf::W)
    );
    // User accesses.
    c.tlb.set_user(true);
    assert!(c.translate(0x20_1000, Access::Write).is_ok());
    assert_eq!(
        c.translate(0x20_3000, Access::Read).unwrap_err(),
        pf_code(pf::P | pf::U)
    );
    assert_eq!(
        c.translate(0x20_6000, Access::Read).unwrap_err(),
        pf_code(pf::U)
    );
    c.tlb.set_user(false);
    // SMEP: no supervisor fetch from a user page (I/D set with SMEP).
    let cr4v = c.s.cr4 | cr4::SMEP | cr4::SMAP;
    let (cr0v, ef) = (c.s.cr0, c.s.efer);
    c.commit_paging_control(cr0v, cr4v, ef).unwrap();
    assert_eq!(
        c.translate(0x20_1000, Access::Exec).unwrap_err(),
        pf_code(pf::P | pf::I)
    );
    // SMAP: supervisor data access to a user page only with AC = 1, never cached fast.
    assert_eq!(
        c.translate(0x20_1000, Access::Read).unwrap_err(),
        pf_code(pf::P)
    );
    c.s.rflags |= crate::state::rflags::AC;
    c.write_lin(0x20_1000, 4, 0xdead).unwrap();
    assert!(c.tlb.lookup(Access::Write, 0x20_1000).is_none());
    c.s.rflags &= !crate::state::rflags::AC;
    assert!(c.read_lin(0x20_1000, 4).is_err());
    assert!(c.read_lin(0x20_3000, 4).is_ok());
}

#[test]
fn accessed_and_dirty_bits_as_hardware_sets_them() {
    let mut c = long_mode_cpu();
    let m = c.env.mem.clone();
    m.write_u64(0x4000 + 8, 0x0050_0000 | 3).unwrap();
    c.read_lin(0x20_1000, 8).unwrap();
    assert_eq!(m.read_u64(0x4008).unwrap() & (PTE_A | PTE_D), PTE_A);
    assert_eq!(m.read_u64(0x3008).unwrap() & (PTE_A | PTE_D), PTE_A);
    // The first write through a clean cached translation walks again and sets D on the
    // leaf only.
    c.write_lin(0x20_1000, 8, 1).unwrap();
    assert_eq!(m.read_u64(0x4008).unwrap() & PTE_D, PTE_D);
    assert_eq!(m.read_u64(0x3008).unwrap() & PTE_D, 0);
    assert_eq!(m.read_u64(0x1000).unwrap() & PTE_D, 0);
    // A write that faults sets nothing.
    m.write_u64(0x4000 + 16, 0x0051_0000 | 1).unwrap();
    assert!(c.write_lin(0x20_2000, 1, 0).is_err());
    assert_eq!(m.read_u64(0x4010).unwrap() & (PTE_A | PTE_D), 0);
}

#[test]
fn tlb_semantics_globals_pcid_invlpg_invpcid() {
    let mut c = long_mode_cpu();
    let m = c.env.mem.clone();
    m.write_u64(0x4000 + 8, 0x0050_0000 | 3).unwrap(); // 2M+4K non-global
    m.write_u64(0x4000 + 16, 0x0051_0000 | 3 | (1 << 8))
        .unwrap(); // 2M+8K global
    let (cr0v, ef) = (c.s.cr0, c.s.efer);
    c.commit_paging_control(cr0v, c.s.cr4 | cr4::PGE, ef)
        .unwrap();
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x50_0000);
    assert_eq!(c.translate(0x20_2000, Access::Read).unwrap(), 0x51_0000);
    m.write_u64(0x4000 + 8, 0x0060_0000 | 3).unwrap();
    m.write_u64(0x4000 + 16, 0x0061_0000 | 3 | (1 << 8))
        .unwrap();
    // Stale until flushed; MOV CR3 drops only the non-global one.
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x50_0000);
    c.load_cr3(0x1000).unwrap();
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x60_0000);
    assert_eq!(c.translate(0x20_2000, Access::Read).unwrap(), 0x51_0000);
    c.invlpg(0x20_2fff);
    assert_eq!(c.translate(0x20_2000, Access::Read).unwrap(), 0x61_0000);
    // PCIDs: switch to PCID 1 keeping PCID 0's entries (bit 63), then back.
    let (cr0v, ef) = (c.s.cr0, c.s.efer);
    c.commit_paging_control(cr0v, c.s.cr4 | cr4::PCIDE, ef)
        .unwrap();
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x60_0000);
    m.write_u64(0x4000 + 8, 0x0070_0000 | 3).unwrap();
    c.load_cr3(0x1001).unwrap();
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x70_0000);
    c.load_cr3(0x1000 | (1 << 63)).unwrap();
    assert_eq!(c.s.cr3, 0x1000, "bit 63 is not stored");
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x60_0000);
    // INVPCID individual address for another PCID leaves the current one alone.
    c.invpcid(0, 1, 0x20_1000);
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x60_0000);
    c.invpcid(1, 0, 0);
    assert_eq!(c.translate(0x20_1000, Access::Read).unwrap(), 0x70_0000);
    // Setting PCIDE needs CR3[11:0] = 0; clearing it flushes everything.
    let (cr0v, ef) = (c.s.cr0, c.s.efer);
    c.commit_paging_control(cr0v, c.s.cr4 & !cr4::PCIDE, ef)
        .unwrap();
    assert!(c.atlb.is_empty());
    c.s.cr3 = 0x1005;
    assert_eq!(
        c.commit_paging_control(cr0v, c.s.cr4 | cr4::PCIDE, ef),
        Err(gp0())
    );
}
