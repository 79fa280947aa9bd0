//! `CpuState`: the architectural state of one vCPU, engine-neutral and plain data.
//!
//! Every engine converts to and from it exactly; snapshots, migration, the gdb stub and the
//! conformance runner move state only through it.

/// Segment register indices, in the x86 encoding order (ModRM `reg` of MOV Sreg).
pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

/// General-purpose register indices.
pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// RFLAGS bits.
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const LA57: u64 = 1 << 12;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    pub const PKE: u64 = 1 << 22;
}

pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

/// Segment attributes in the VMX "access rights" layout (the one KVM's `kvm_segment`
/// flattens): type 0–3, S 4, DPL 5–6, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16.
pub mod seg_attr {
    pub const TYPE_MASK: u32 = 0xf;
    pub const ACCESSED: u32 = 1;
    pub const S: u32 = 1 << 4;
    pub const DPL_SHIFT: u32 = 5;
    pub const P: u32 = 1 << 7;
    pub const AVL: u32 = 1 << 12;
    pub const L: u32 = 1 << 13;
    pub const DB: u32 = 1 << 14;
    pub const G: u32 = 1 << 15;
    pub const UNUSABLE: u32 = 1 << 16;
    /// Code segment type bit (with S set).
    pub const CODE: u32 = 1 << 3;
    /// Readable (code) / writable (data).
    pub const RW: u32 = 1 << 1;
    /// Conforming (code) / expand-down (data).
    pub const CE: u32 = 1 << 2;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    /// Byte-granular limit (already scaled by G).
    pub limit: u32,
    pub attr: u32,
}

impl Segment {
    /// A real-mode style segment: base = selector × 16, 64 KiB limit, present data.
    pub fn real(selector: u16) -> Self {
        Segment {
            selector,
            base: (selector as u64) << 4,
            limit: 0xffff,
            attr: seg_attr::P | seg_attr::S | seg_attr::RW | seg_attr::ACCESSED,
        }
    }

    /// A flat 4 GiB segment of the given type bits, DPL 0.
    pub fn flat(selector: u16, code: bool, long: bool) -> Self {
        let mut attr = seg_attr::P | seg_attr::S | seg_attr::RW | seg_attr::ACCESSED | seg_attr::G;
        if code {
            attr |= seg_attr::CODE;
        }
        if long {
            attr |= seg_attr::L;
        } else {
            attr |= seg_attr::DB;
        }
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            attr,
        }
    }

    pub fn dpl(&self) -> u8 {
        ((self.attr >> seg_attr::DPL_SHIFT) & 3) as u8
    }
    pub fn long(&self) -> bool {
        self.attr & seg_attr::L != 0
    }
    pub fn big(&self) -> bool {
        self.attr & seg_attr::DB != 0
    }
    pub fn present(&self) -> bool {
        self.attr & seg_attr::P != 0
    }
}

/// GDTR/IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableReg {
    pub base: u64,
    pub limit: u16,
}

/// The MSRs that carry state (the rest are derived or constant in the CPU model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    /// The guest's TSC value at the moment the state was taken.
    pub tsc: u64,
    pub tsc_adjust: u64,
    pub tsc_deadline: u64,
    pub pat: u64,
    pub apic_base: u64,
    pub tsc_aux: u64,
    pub misc_enable: u64,
    pub spec_ctrl: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [(u64, u64); 8],
}

/// x87/SSE state in the 512-byte FXSAVE layout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FxState(pub [u8; 512]);

impl Default for FxState {
    fn default() -> Self {
        let mut a = [0u8; 512];
        // FCW = 0x037f (FNINIT), MXCSR = 0x1f80 (reset), MXCSR_MASK = 0xffff.
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        a[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        FxState(a)
    }
}

impl std::fmt::Debug for FxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FxState")
            .field("fcw", &u16::from_le_bytes([self.0[0], self.0[1]]))
            .field(
                "mxcsr",
                &u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]]),
            )
            .finish_non_exhaustive()
    }
}

/// An exception waiting to be delivered (e.g. taken out of KVM between injection and entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingException {
    pub vector: u8,
    pub error_code: Option<u32>,
}

/// Events and activity state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Interrupts are blocked for one instruction after MOV SS/POP SS/STI.
    pub interrupt_shadow: bool,
    pub nmi_pending: bool,
    pub nmi_masked: bool,
    pub pending_exception: Option<PendingException>,
    pub halted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuState {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS (FS/GS bases are the FS_BASE/GS_BASE MSRs).
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    /// PAE paging's PDPTE registers, loaded from CR3 by MOV to CR0/CR3/CR4 (SDM 4.4.1).
    pub pdpte: [u64; 4],
    pub xcr0: u64,
    /// DR0–DR3.
    pub dr: [u64; 4],
    pub dr6: u64,
    pub dr7: u64,
    pub msr: Msrs,
    pub fx: FxState,
    pub events: Events,
}

impl Default for CpuState {
    fn default() -> Self {
        Self::reset()
    }
}

impl CpuState {
    /// The state after RESET: real mode, CS:IP = F000:FFF0 with CS base 0xFFFF0000.
    pub fn reset() -> Self {
        let mut seg = [Segment::real(0); 6];
        seg[CS] = Segment {
            selector: 0xf000,
            base: 0xffff_0000,
            limit: 0xffff,
            attr: seg_attr::P | seg_attr::S | seg_attr::CODE | seg_attr::RW | seg_attr::ACCESSED,
        };
        let mut gpr = [0u64; 16];
        // EDX holds the processor signature after reset.
        gpr[RDX] = 0x0000_0663;
        CpuState {
            gpr,
            rip: 0xfff0,
            rflags: rflags::FIXED1,
            seg,
            ldtr: Segment {
                attr: 0x82,
                limit: 0xffff,
                ..Default::default()
            },
            tr: Segment {
                attr: 0x8b,
                limit: 0xffff,
                ..Default::default()
            },
            gdtr: TableReg {
                base: 0,
                limit: 0xffff,
            },
            idtr: TableReg {
                base: 0,
                limit: 0xffff,
            },
            cr0: cr0::ET | cr0::NW | cr0::CD,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            pdpte: [0; 4],
            xcr0: 1,
            dr: [0; 4],
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            msr: Msrs {
                pat: 0x0007_0406_0007_0406,
                apic_base: 0xfee0_0000 | (1 << 11) | (1 << 8),
                misc_enable: 1,
                ..Default::default()
            },
            fx: FxState::default(),
            events: Events::default(),
        }
    }

    /// 32-bit flat protected mode, paging off: the multiboot entry state.
    pub fn protected_flat() -> Self {
        let mut s = Self::reset();
        s.cr0 = cr0::PE | cr0::ET;
        s.seg = [Segment::flat(0x18, false, false); 6];
        s.seg[CS] = Segment::flat(0x10, true, false);
        s.rflags = rflags::FIXED1;
        s.gdtr = TableReg { base: 0, limit: 0 };
        s.idtr = TableReg { base: 0, limit: 0 };
        s.gpr[RDX] = 0;
        s
    }

    pub fn cpl(&self) -> u8 {
        if self.cr0 & cr0::PE == 0 {
            0
        } else {
            self.seg[SS].dpl()
        }
    }

    pub fn long_mode_active(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// Whether the current code is 64-bit (long mode with CS.L).
    pub fn in_64bit_code(&self) -> bool {
        self.long_mode_active() && self.seg[CS].long()
    }

    /// Code size in bits (16, 32 or 64), which decides decoding.
    pub fn code_bits(&self) -> u32 {
        if self.cr0 & cr0::PE == 0 {
            if self.seg[CS].big() {
                32
            } else {
                16
            }
        } else if self.in_64bit_code() {
            64
        } else if self.seg[CS].big() {
            32
        } else {
            16
        }
    }

    /// A short name of the CPU mode, for `--stats`, errors and the gdb monitor.
    pub fn mode_name(&self) -> &'static str {
        if self.cr0 & cr0::PE == 0 {
            "real"
        } else if self.rflags & rflags::VM != 0 {
            "virtual-8086"
        } else if self.in_64bit_code() {
            "long (64-bit)"
        } else if self.long_mode_active() {
            "long (compatibility)"
        } else {
            "protected"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state_is_real_mode_at_reset_vector() {
        let s = CpuState::reset();
        assert_eq!(s.seg[CS].base + s.rip, 0xffff_fff0);
        assert_eq!(s.code_bits(), 16);
        assert_eq!(s.mode_name(), "real");
        assert_eq!(s.cpl(), 0);
    }

    #[test]
    fn flat_protected_is_32_bit() {
        let s = CpuState::protected_flat();
        assert_eq!(s.code_bits(), 32);
        assert_eq!(s.mode_name(), "protected");
    }
}
