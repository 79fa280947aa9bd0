//! The one x86-64 register file gdb sees in every CPU mode, and its conversion to and from
//! `CpuState`.
//!
//! The layout never changes with the guest's mode, which is what keeps gdb working across
//! the switches from real to protected to long mode (QEMU's stub changes its 'g' packet
//! size there and gdb gives up with "Remote 'g' packet reply is too long"). Real-mode and
//! 32-bit values are simply zero-extended.

use gdbstub::arch::{Arch, Registers};
use twinvm_cpu::state::{CpuState, CS, DS, ES, FS, GS, SS};

/// The target description: lowercase names as QEMU's, grouped so that `info registers`
/// shows general, segment and control registers.
pub const TARGET_XML: &str = include_str!("target.xml");

/// Our architecture for gdbstub: 64-bit addresses, our register file and description.
pub enum TwinX86 {}

impl Arch for TwinX86 {
    type Usize = u64;
    type Registers = GdbRegs;
    /// x86 gdb sends kind 1 for breakpoints; any kind is accepted.
    type BreakpointKind = usize;
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// gdb's order of the general registers, as indices into `CpuState::gpr`.
const GDB_GPR_ORDER: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];
/// gdb's order of the segment registers.
const GDB_SEG_ORDER: [usize; 6] = [CS, SS, DS, ES, FS, GS];

/// The register file in the order of target.xml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GdbRegs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8–r15.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub eflags: u32,
    /// cs, ss, ds, es, fs, gs selectors.
    pub seg: [u32; 6],
    pub st: [[u8; 10]; 8],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub fpu: [u32; 8],
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub fs_base: u64,
    pub gs_base: u64,
    pub k_gs_base: u64,
    /// cr0, cr2, cr3, cr4, cr8, efer.
    pub ctrl: [u64; 6],
}

/// Bytes of a 'g' packet.
pub const GDB_REGS_LEN: usize =
    16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4 + 3 * 8 + 6 * 8;

impl Registers for GdbRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut put = |b: &[u8]| b.iter().for_each(|&x| write_byte(Some(x)));
        self.gpr.iter().for_each(|r| put(&r.to_le_bytes()));
        put(&self.rip.to_le_bytes());
        put(&self.eflags.to_le_bytes());
        self.seg.iter().for_each(|r| put(&r.to_le_bytes()));
        self.st.iter().for_each(|r| put(r));
        self.fpu.iter().for_each(|r| put(&r.to_le_bytes()));
        self.xmm.iter().for_each(|r| put(&r.to_le_bytes()));
        put(&self.mxcsr.to_le_bytes());
        put(&self.fs_base.to_le_bytes());
        put(&self.gs_base.to_le_bytes());
        put(&self.k_gs_base.to_le_bytes());
        self.ctrl.iter().for_each(|r| put(&r.to_le_bytes()));
    }

    /// Accepts exactly a whole register file: a short or long packet is rejected, so a
    /// malformed write never half-applies.
    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() != GDB_REGS_LEN {
            return Err(());
        }
        let mut r = Reader(bytes);
        let mut n = GdbRegs::default();
        for g in n.gpr.iter_mut() {
            *g = r.u64();
        }
        n.rip = r.u64();
        n.eflags = r.u32();
        for s in n.seg.iter_mut() {
            *s = r.u32();
        }
        for st in n.st.iter_mut() {
            st.copy_from_slice(r.take(10));
        }
        for f in n.fpu.iter_mut() {
            *f = r.u32();
        }
        for x in n.xmm.iter_mut() {
            *x = u128::from_le_bytes(r.array());
        }
        n.mxcsr = r.u32();
        n.fs_base = r.u64();
        n.gs_base = r.u64();
        n.k_gs_base = r.u64();
        for c in n.ctrl.iter_mut() {
            *c = r.u64();
        }
        *self = n;
        Ok(())
    }
}

/// Reads little-endian fields from a slice whose length was checked beforehand.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let s = self.take(N);
        a[..s.len()].copy_from_slice(s);
        a
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The x87 tag of an 80-bit value: 0 valid, 1 zero, 2 special.
fn x87_tag(v: &[u8]) -> u32 {
    let exp = le16(v, 8) & 0x7fff;
    let mant = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
    if exp == 0x7fff {
        2
    } else if exp == 0 {
        if mant == 0 {
            1
        } else {
            2
        }
    } else if mant >> 63 == 0 {
        2
    } else {
        0
    }
}

impl GdbRegs {
    pub fn from_state(s: &CpuState) -> Self {
        let fx = &s.fx.0;
        let mut r = GdbRegs::default();
        for (i, &g) in GDB_GPR_ORDER.iter().enumerate() {
            r.gpr[i] = s.gpr[g];
        }
        r.rip = s.rip;
        r.eflags = s.rflags as u32;
        for (i, &g) in GDB_SEG_ORDER.iter().enumerate() {
            r.seg[i] = s.seg[g].selector as u32;
        }
        for (i, st) in r.st.iter_mut().enumerate() {
            st.copy_from_slice(&fx[32 + 16 * i..42 + 16 * i]);
        }
        // FXSAVE keeps an abridged tag (one bit per physical register); gdb wants the full
        // two-bit tags, which follow from the register contents.
        let top = (le16(fx, 2) >> 11) & 7;
        let mut ftag = 0u32;
        for phys in 0..8u16 {
            let t = if fx[4] & (1 << phys) == 0 {
                3
            } else {
                let st = ((phys + 8 - top) % 8) as usize;
                x87_tag(&fx[32 + 16 * st..42 + 16 * st])
            };
            ftag |= t << (2 * phys);
        }
        r.fpu = [
            le16(fx, 0) as u32,
            le16(fx, 2) as u32,
            ftag,
            le16(fx, 12) as u32,
            le32(fx, 8),
            le16(fx, 20) as u32,
            le32(fx, 16),
            (le16(fx, 6) & 0x7ff) as u32,
        ];
        for (i, x) in r.xmm.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            b.copy_from_slice(&fx[160 + 16 * i..176 + 16 * i]);
            *x = u128::from_le_bytes(b);
        }
        r.mxcsr = le32(fx, 24);
        r.fs_base = s.seg[FS].base;
        r.gs_base = s.seg[GS].base;
        r.k_gs_base = s.msr.kernel_gs_base;
        r.ctrl = [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer];
        r
    }

    /// Writes the register file into `s`. A changed selector in real or virtual-8086 mode
    /// also moves the segment base (selector × 16); in protected mode the descriptor cache
    /// is kept, as gdb has no way to say which descriptor it means.
    pub fn apply(&self, s: &mut CpuState) {
        for (i, &g) in GDB_GPR_ORDER.iter().enumerate() {
            s.gpr[g] = self.gpr[i];
        }
        s.rip = self.rip;
        s.rflags = (s.rflags & !0xffff_ffff) | (self.eflags as u64 & 0x003f_7fd5) | 2;
        let real = s.cr0 & 1 == 0 || s.rflags & twinvm_cpu::state::rflags::VM != 0;
        for (i, &g) in GDB_SEG_ORDER.iter().enumerate() {
            let sel = self.seg[i] as u16;
            if s.seg[g].selector != sel {
                s.seg[g].selector = sel;
                if real {
                    s.seg[g].base = (sel as u64) << 4;
                }
            }
        }
        let fx = &mut s.fx.0;
        for (i, st) in self.st.iter().enumerate() {
            fx[32 + 16 * i..42 + 16 * i].copy_from_slice(st);
        }
        let [fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop] = self.fpu;
        fx[0..2].copy_from_slice(&(fctrl as u16).to_le_bytes());
        fx[2..4].copy_from_slice(&(fstat as u16).to_le_bytes());
        let mut abridged = 0u8;
        for phys in 0..8 {
            if (ftag >> (2 * phys)) & 3 != 3 {
                abridged |= 1 << phys;
            }
        }
        fx[4] = abridged;
        fx[6..8].copy_from_slice(&((fop & 0x7ff) as u16).to_le_bytes());
        fx[8..12].copy_from_slice(&fioff.to_le_bytes());
        fx[12..14].copy_from_slice(&(fiseg as u16).to_le_bytes());
        fx[16..20].copy_from_slice(&fooff.to_le_bytes());
        fx[20..22].copy_from_slice(&(foseg as u16).to_le_bytes());
        for (i, x) in self.xmm.iter().enumerate() {
            fx[160 + 16 * i..176 + 16 * i].copy_from_slice(&x.to_le_bytes());
        }
        fx[24..28].copy_from_slice(&self.mxcsr.to_le_bytes());
        s.seg[FS].base = self.fs_base;
        s.seg[GS].base = self.gs_base;
        s.msr.kernel_gs_base = self.k_gs_base;
        [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer] = self.ctrl;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_description() {
        // Every <reg> of target.xml, in order, with its size.
        let mut bits = 0;
        for line in TARGET_XML
            .lines()
            .filter(|l| l.trim_start().starts_with("<reg "))
        {
            let b = line.split("bitsize=\"").nth(1).unwrap();
            bits += b[..b.find('"').unwrap()].parse::<usize>().unwrap();
        }
        assert_eq!(bits / 8, GDB_REGS_LEN);
        let mut n = 0;
        GdbRegs::default().gdb_serialize(|_| n += 1);
        assert_eq!(n, GDB_REGS_LEN);
    }

    #[test]
    fn round_trip_and_rejects_wrong_lengths() {
        let mut s = CpuState::protected_flat();
        s.gpr = std::array::from_fn(|i| 0x1111 * (i as u64 + 1));
        s.fx.0[160] = 0x5a;
        s.fx.0[4] = 0x80; // physical register 7 in use (ST7, with TOP = 0)
        s.msr.kernel_gs_base = 0xdead;
        s.cr3 = 0x1000;
        let r = GdbRegs::from_state(&s);
        assert_eq!(r.gpr[1], s.gpr[3], "rbx");
        assert_eq!(r.xmm[0] & 0xff, 0x5a);
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap()));
        let mut back = GdbRegs::default();
        assert!(back.gdb_deserialize(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(back, GdbRegs::default(), "a short packet changes nothing");
        let mut long = bytes.clone();
        long.push(0);
        assert!(back.gdb_deserialize(&long).is_err());
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        let mut s2 = CpuState::protected_flat();
        back.apply(&mut s2);
        assert_eq!(s2.gpr, s.gpr);
        assert_eq!(s2.fx.0[..], s.fx.0[..]);
        assert_eq!(s2.cr3, 0x1000);
        assert_eq!(s2.msr.kernel_gs_base, 0xdead);
    }

    #[test]
    fn full_tags_from_contents() {
        let mut s = CpuState::reset();
        // TOP = 7; ST0 (physical 7) holds 1.0, the rest empty.
        s.fx.0[2..4].copy_from_slice(&(7u16 << 11).to_le_bytes());
        s.fx.0[4] = 0x80;
        s.fx.0[32..42].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        let r = GdbRegs::from_state(&s);
        assert_eq!(r.fpu[2], 0x3fff);
    }
}
