//! The fuzz machine both engines share: a long-mode system image (page tables, GDT, IDT,
//! TSS, one-HLT exception handlers, a ring-0 stack) and the CPL-3 state a stream starts
//! from. The ring-3 pages are the native oracle's (`oracle::Layout`), so its generator's
//! memory operands land in the sandbox.
//!
//! The ring-0 side is deliberately one instruction: every IDT vector points at its own
//! `hlt`, so the vector is read from where the HLT exit stopped, and the error code and the
//! interrupted RIP/RFLAGS/RSP from the frame on the ring-0 stack — an emulated ring 0
//! (this host's KVM runs it at ~1 M instructions/s) costs one instruction per stream.

use twinvm_cpu::oracle::Layout;
use twinvm_cpu::state::{cr0, cr4, efer, rflags, seg_attr, CpuState, Segment, TableReg};
use twinvm_cpu::state::{CS, DS, ES, FS, GS, SS};
use twinvm_devices::GuestMemory;

/// Guest RAM: the system pages below 1 MiB, the sandbox at 1–3 MiB.
pub const MEM_SIZE: u64 = 4 << 20;

const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
/// Page tables for the first two 2 MiB regions.
const PT0: u64 = 0x4000;
const PT1: u64 = 0x5000;
const GDT: u64 = 0x8000;
const IDT: u64 = 0x9000;
const TSS: u64 = 0xa000;
/// Handler for vector v at HANDLERS + v × HANDLER_STRIDE: `hlt; jmp $-1`.
pub const HANDLERS: u64 = 0xb000;
pub const HANDLER_STRIDE: u64 = 8;
/// Top of the ring-0 stack (TSS.RSP0); frames are pushed below it.
pub const RSP0: u64 = 0xd000;

pub const KERNEL_CS: u16 = 0x10;
const KERNEL_DS: u16 = 0x18;
/// Linux's user selectors: this host's KVM shows the host's selectors to ring-3 reads
/// (see `departures`), so the guest uses the very same values.
pub const USER_CS: u16 = 0x33;
pub const USER_SS: u16 = 0x2b;
const TSS_SEL: u16 = 0x40;

// Page-table entry bits.
const P: u64 = 1;
const W: u64 = 2;
const U: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const NX: u64 = 1 << 63;

/// The vectors that push an error code (64-bit mode).
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Writes the system image into `mem` (identical for both engines).
pub fn write_system(mem: &GuestMemory) -> Result<(), String> {
    let w = |a: u64, v: u64| {
        mem.write_u64(a, v)
            .map_err(|e| format!("fuzz machine image at {a:#x}: {e:?}"))
    };
    // Accessed/dirty preset, so neither engine writes the tables while a stream runs.
    w(PML4, PDPT | P | W | U | A)?;
    w(PDPT, PD | P | W | U | A)?;
    w(PD, PT0 | P | W | U | A)?;
    w(PD + 8, PT1 | P | W | U | A)?;
    // System pages: supervisor-only, so a ring-3 access to them is a #PF with U=1.
    for page in [GDT, IDT, TSS, HANDLERS, RSP0 - 0x1000] {
        w(PT0 + (page >> 12) * 8, page | P | W | A | D)?;
    }
    let l = Layout::get();
    // Code: user, read-only, executable. Data and stack: user, writable, not executable.
    for k in 0..(l.code_len as u64).div_ceil(0x1000) {
        let a = l.code + k * 0x1000;
        w(PT0 + ((a >> 12) & 511) * 8, a | P | U | A)?;
    }
    for (base, len) in [(l.data, l.data_len), (l.stack, l.stack_len)] {
        for k in 0..(len as u64).div_ceil(0x1000) {
            let a = base + k * 0x1000;
            let pt = if a >> 21 == 0 { PT0 } else { PT1 };
            w(pt + ((a >> 12) & 511) * 8, a | P | W | U | A | D | NX)?;
        }
    }

    // GDT: null, kernel code/data, Linux's user code32/data/code64, the TSS.
    w(GDT + KERNEL_CS as u64, 0x00af_9a00_0000_ffff)?;
    w(GDT + KERNEL_DS as u64, 0x00cf_9200_0000_ffff)?;
    w(GDT + 0x20, 0x00cf_fa00_0000_ffff)?;
    w(GDT + (USER_SS & !3) as u64, 0x00cf_f200_0000_ffff)?;
    w(GDT + (USER_CS & !3) as u64, 0x00af_fa00_0000_ffff)?;
    let (lo, hi) = tss_descriptor(TSS, 0x67, 0xb);
    w(GDT + TSS_SEL as u64, lo)?;
    w(GDT + TSS_SEL as u64 + 8, hi)?;

    // TSS: RSP0, and an I/O map base past the limit (no bitmap: ring-3 I/O is #GP).
    w(TSS + 4, RSP0)?;
    mem.write(TSS + 0x66, &0x68u16.to_le_bytes())
        .map_err(|e| format!("fuzz machine TSS: {e:?}"))?;

    // IDT: 256 ring-0 interrupt gates, each to its own HLT.
    for v in 0..256u64 {
        let off = HANDLERS + v * HANDLER_STRIDE;
        let lo = (off & 0xffff)
            | (KERNEL_CS as u64) << 16
            | 0xe << 40
            | 1 << 47
            | ((off >> 16) & 0xffff) << 48;
        w(IDT + v * 16, lo)?;
        w(IDT + v * 16 + 8, off >> 32)?;
        // hlt; jmp $-1 (back to the hlt, should anything wake it).
        mem.write(off, &[0xf4, 0xeb, 0xfd])
            .map_err(|e| format!("fuzz machine handlers: {e:?}"))?;
    }
    Ok(())
}

fn tss_descriptor(base: u64, limit: u32, typ: u64) -> (u64, u64) {
    let lo = (limit as u64 & 0xffff)
        | (base & 0xff_ffff) << 16
        | typ << 40
        | 1 << 47
        | ((limit as u64 >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    (lo, base >> 32)
}

/// The CPL-3 state every stream starts from (registers and RFLAGS are set per stream).
/// IF=1 and IOPL=0, as this host's KVM reports them to ring 3 whatever the guest set.
pub fn user_state() -> CpuState {
    let mut s = CpuState::protected_flat();
    s.cr0 = cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::PG;
    s.cr3 = PML4;
    s.cr4 = cr4::PAE | cr4::OSFXSR | cr4::OSXMMEXCPT;
    s.efer = efer::LME | efer::LMA | efer::NXE;
    let dpl3 = 3 << seg_attr::DPL_SHIFT;
    s.seg[CS] = Segment::flat(USER_CS, true, true);
    s.seg[CS].attr |= dpl3;
    s.seg[SS] = Segment::flat(USER_SS, false, false);
    s.seg[SS].attr |= dpl3;
    for seg in [DS, ES, FS, GS] {
        s.seg[seg] = Segment {
            selector: 0,
            base: 0,
            limit: 0,
            attr: seg_attr::UNUSABLE,
        };
    }
    s.tr = Segment {
        selector: TSS_SEL,
        base: TSS,
        limit: 0x67,
        attr: 0xb | seg_attr::P,
    };
    s.ldtr = Segment {
        selector: 0,
        base: 0,
        limit: 0,
        attr: seg_attr::UNUSABLE,
    };
    s.gdtr = TableReg {
        base: GDT,
        limit: 0x4f,
    };
    s.idtr = TableReg {
        base: IDT,
        limit: 0xfff,
    };
    s.rflags = rflags::FIXED1 | rflags::IF;
    s.rip = Layout::get().code;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_descriptor_fields() {
        let (lo, hi) = tss_descriptor(0x1234_5678_9abc_def0, 0x67, 0xb);
        assert_eq!(lo & 0xffff, 0x67);
        assert_eq!((lo >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((lo >> 40) & 0xf, 0xb);
        assert_eq!((lo >> 56) & 0xff, 0x9a);
        assert_eq!(hi, 0x1234_5678);
    }

    #[test]
    fn error_code_vectors() {
        assert!(has_error_code(14) && has_error_code(13) && has_error_code(8));
        assert!(!has_error_code(6) && !has_error_code(0) && !has_error_code(3));
    }
}
