//! Exact conversion between `CpuState` and KVM's register structures. Pure functions, so
//! they are testable without /dev/kvm; `vcpu_state.rs` moves the results through ioctls.

use kvm_bindings::{
    kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events, kvm_xsave,
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_MOV_SS,
    KVM_X86_SHADOW_INT_STI,
};
use twinvm_cpu::state::{
    seg_attr, CpuState, Events, FxState, Msrs, PendingException, Segment, TableReg, CS, DS, ES, FS,
    GS, SS,
};

// ----- general-purpose registers -----

/// kvm_regs names registers; `CpuState::gpr` is in encoding order (RAX, RCX, RDX, RBX, RSP,
/// RBP, RSI, RDI, R8…).
pub fn regs_from_gprs(g: &[u64; 16], rip: u64, rflags: u64) -> kvm_regs {
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip,
        rflags,
    }
}

/// The general registers of `r` in encoding order.
pub fn gprs_from_regs(r: &kvm_regs) -> [u64; 16] {
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

pub fn regs_from_state(s: &CpuState) -> kvm_regs {
    regs_from_gprs(&s.gpr, s.rip, s.rflags)
}

pub fn regs_to_state(r: &kvm_regs, s: &mut CpuState) {
    s.gpr = gprs_from_regs(r);
    s.rip = r.rip;
    s.rflags = r.rflags;
}

// ----- segments and system registers -----

fn bit(attr: u32, b: u32) -> u8 {
    u8::from(attr & b != 0)
}

/// `seg_attr` is the VMX access-rights layout, which kvm_segment spreads over fields.
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    let a = s.attr;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & seg_attr::TYPE_MASK) as u8,
        s: bit(a, seg_attr::S),
        dpl: ((a >> seg_attr::DPL_SHIFT) & 3) as u8,
        present: bit(a, seg_attr::P),
        avl: bit(a, seg_attr::AVL),
        l: bit(a, seg_attr::L),
        db: bit(a, seg_attr::DB),
        g: bit(a, seg_attr::G),
        unusable: bit(a, seg_attr::UNUSABLE),
        padding: 0,
    }
}

pub fn segment_from_kvm(k: &kvm_segment) -> Segment {
    let flag = |v: u8, b: u32| if v != 0 { b } else { 0 };
    Segment {
        selector: k.selector,
        base: k.base,
        limit: k.limit,
        attr: (k.type_ as u32 & seg_attr::TYPE_MASK)
            | flag(k.s, seg_attr::S)
            | ((k.dpl as u32 & 3) << seg_attr::DPL_SHIFT)
            | flag(k.present, seg_attr::P)
            | flag(k.avl, seg_attr::AVL)
            | flag(k.l, seg_attr::L)
            | flag(k.db, seg_attr::DB)
            | flag(k.g, seg_attr::G)
            | flag(k.unusable, seg_attr::UNUSABLE),
    }
}

fn dtable(t: &TableReg) -> kvm_dtable {
    kvm_dtable {
        base: t.base,
        limit: t.limit,
        padding: [0; 3],
    }
}

fn table_reg(d: &kvm_dtable) -> TableReg {
    TableReg {
        base: d.base,
        limit: d.limit,
    }
}

/// The sregs for `s`. `interrupt_bitmap` stays empty: twinvm injects interrupts itself.
pub fn sregs_from_state(s: &CpuState) -> kvm_sregs {
    kvm_sregs {
        cs: segment_to_kvm(&s.seg[CS]),
        ds: segment_to_kvm(&s.seg[DS]),
        es: segment_to_kvm(&s.seg[ES]),
        fs: segment_to_kvm(&s.seg[FS]),
        gs: segment_to_kvm(&s.seg[GS]),
        ss: segment_to_kvm(&s.seg[SS]),
        tr: segment_to_kvm(&s.tr),
        ldt: segment_to_kvm(&s.ldtr),
        gdt: dtable(&s.gdtr),
        idt: dtable(&s.idtr),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.msr.apic_base,
        interrupt_bitmap: [0; 4],
    }
}

pub fn sregs_to_state(k: &kvm_sregs, s: &mut CpuState) {
    s.seg[CS] = segment_from_kvm(&k.cs);
    s.seg[DS] = segment_from_kvm(&k.ds);
    s.seg[ES] = segment_from_kvm(&k.es);
    s.seg[FS] = segment_from_kvm(&k.fs);
    s.seg[GS] = segment_from_kvm(&k.gs);
    s.seg[SS] = segment_from_kvm(&k.ss);
    s.tr = segment_from_kvm(&k.tr);
    s.ldtr = segment_from_kvm(&k.ldt);
    s.gdtr = table_reg(&k.gdt);
    s.idtr = table_reg(&k.idt);
    s.cr0 = k.cr0;
    s.cr2 = k.cr2;
    s.cr3 = k.cr3;
    s.cr4 = k.cr4;
    s.cr8 = k.cr8;
    s.efer = k.efer;
    s.msr.apic_base = k.apic_base;
}

// ----- x87/SSE -----

/// FXSAVE (64-bit format) offsets.
mod fx {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const FOP: usize = 6;
    pub const FIP: usize = 8;
    pub const FDP: usize = 16;
    pub const MXCSR: usize = 24;
    pub const ST0: usize = 32;
    pub const XMM0: usize = 160;
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// kvm_fpu carries everything in the FXSAVE image except MXCSR_MASK (a constant of the CPU)
/// and the reserved bytes; `fx_from_fpu` keeps those from `prev`.
pub fn fpu_from_fx(f: &FxState) -> kvm_fpu {
    let b = &f.0;
    let mut k = kvm_fpu {
        fcw: le16(b, fx::FCW),
        fsw: le16(b, fx::FSW),
        ftwx: b[fx::FTW],
        last_opcode: le16(b, fx::FOP),
        last_ip: le64(b, fx::FIP),
        last_dp: le64(b, fx::FDP),
        mxcsr: le32(b, fx::MXCSR),
        ..Default::default()
    };
    for (i, r) in k.fpr.iter_mut().enumerate() {
        r.copy_from_slice(&b[fx::ST0 + 16 * i..fx::ST0 + 16 * i + 16]);
    }
    for (i, r) in k.xmm.iter_mut().enumerate() {
        r.copy_from_slice(&b[fx::XMM0 + 16 * i..fx::XMM0 + 16 * i + 16]);
    }
    k
}

pub fn fx_from_fpu(k: &kvm_fpu, prev: &FxState) -> FxState {
    let mut out = *prev;
    let b = &mut out.0;
    b[fx::FCW..fx::FCW + 2].copy_from_slice(&k.fcw.to_le_bytes());
    b[fx::FSW..fx::FSW + 2].copy_from_slice(&k.fsw.to_le_bytes());
    b[fx::FTW] = k.ftwx;
    b[fx::FOP..fx::FOP + 2].copy_from_slice(&k.last_opcode.to_le_bytes());
    b[fx::FIP..fx::FIP + 8].copy_from_slice(&k.last_ip.to_le_bytes());
    b[fx::FDP..fx::FDP + 8].copy_from_slice(&k.last_dp.to_le_bytes());
    b[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&k.mxcsr.to_le_bytes());
    for (i, r) in k.fpr.iter().enumerate() {
        b[fx::ST0 + 16 * i..fx::ST0 + 16 * i + 16].copy_from_slice(r);
    }
    for (i, r) in k.xmm.iter().enumerate() {
        b[fx::XMM0 + 16 * i..fx::XMM0 + 16 * i + 16].copy_from_slice(r);
    }
    out
}

/// XSTATE_BV lives right after the legacy area; x87 and SSE components are bits 0 and 1.
const XSTATE_BV_WORD: usize = 512 / 4;
const XSTATE_X87_SSE: u32 = 3;

/// The legacy area of an XSAVE image is the FXSAVE image, byte for byte.
pub fn fx_from_xsave(x: &kvm_xsave) -> FxState {
    let mut out = [0u8; 512];
    for (i, w) in x.region[..128].iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    FxState(out)
}

/// Writes `f` into the legacy area of `x` (keeping the other components) and marks x87/SSE
/// as present so that XRSTOR loads them instead of their init values.
pub fn fx_into_xsave(f: &FxState, x: &mut kvm_xsave) {
    for (i, w) in x.region[..128].iter_mut().enumerate() {
        *w = le32(&f.0, 4 * i);
    }
    x.region[XSTATE_BV_WORD] |= XSTATE_X87_SSE;
}

// ----- events -----

pub fn events_from_state(e: &Events) -> kvm_vcpu_events {
    let mut k = kvm_vcpu_events {
        flags: KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW,
        ..Default::default()
    };
    // CpuState keeps one shadow bit: both kinds block interrupts for one instruction, which
    // is all twinvm models; MOV SS is the stronger (it also holds off debug traps).
    k.interrupt.shadow = if e.interrupt_shadow {
        KVM_X86_SHADOW_INT_MOV_SS as u8
    } else {
        0
    };
    k.nmi.pending = u8::from(e.nmi_pending);
    k.nmi.masked = u8::from(e.nmi_masked);
    if let Some(p) = e.pending_exception {
        k.exception.injected = 1;
        k.exception.nr = p.vector;
        k.exception.has_error_code = u8::from(p.error_code.is_some());
        k.exception.error_code = p.error_code.unwrap_or(0);
    }
    k
}

/// `halted` is not in kvm_vcpu_events (it is the MP state, which twinvm tracks itself
/// without an in-kernel irqchip); it is kept from `prev`.
pub fn events_to_state(k: &kvm_vcpu_events, prev: &Events) -> Events {
    let shadow = k.interrupt.shadow as u32 & (KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI);
    let pending_exception =
        (k.exception.injected != 0 || k.exception.pending != 0).then(|| PendingException {
            vector: k.exception.nr,
            error_code: (k.exception.has_error_code != 0).then_some(k.exception.error_code),
        });
    Events {
        interrupt_shadow: shadow != 0,
        // An NMI KVM has already begun injecting is still one the guest has not seen.
        nmi_pending: k.nmi.pending != 0 || k.nmi.injected != 0,
        nmi_masked: k.nmi.masked != 0,
        pending_exception,
        halted: prev.halted,
    }
}

// ----- MSRs -----

pub mod msr_index {
    pub const TSC: u32 = 0x10;
    pub const TSC_ADJUST: u32 = 0x3b;
    pub const SPEC_CTRL: u32 = 0x48;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_VAR_BASE: u32 = 0x200;
    pub const MTRR_FIX_64K: u32 = 0x250;
    pub const MTRR_FIX_16K: [u32; 2] = [0x258, 0x259];
    pub const MTRR_FIX_4K: u32 = 0x268;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const TSC_DEADLINE: u32 = 0x6e0;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// The fixed-range MTRR indices, in `Msrs::mtrr_fixed` order.
fn mtrr_fixed_indices() -> [u32; 11] {
    use msr_index::*;
    let mut a = [0u32; 11];
    a[0] = MTRR_FIX_64K;
    a[1] = MTRR_FIX_16K[0];
    a[2] = MTRR_FIX_16K[1];
    for (i, v) in a[3..].iter_mut().enumerate() {
        *v = MTRR_FIX_4K + i as u32;
    }
    a
}

/// Every MSR `Msrs` carries (APIC base goes through sregs), with its value in `m`.
pub fn msr_entries(m: &Msrs) -> Vec<(u32, u64)> {
    use msr_index::*;
    let mut v = vec![
        (STAR, m.star),
        (LSTAR, m.lstar),
        (CSTAR, m.cstar),
        (SFMASK, m.sfmask),
        (KERNEL_GS_BASE, m.kernel_gs_base),
        (SYSENTER_CS, m.sysenter_cs),
        (SYSENTER_ESP, m.sysenter_esp),
        (SYSENTER_EIP, m.sysenter_eip),
        (TSC, m.tsc),
        (TSC_ADJUST, m.tsc_adjust),
        (TSC_DEADLINE, m.tsc_deadline),
        (PAT, m.pat),
        (TSC_AUX, m.tsc_aux),
        (MISC_ENABLE, m.misc_enable),
        (SPEC_CTRL, m.spec_ctrl),
        (MTRR_DEF_TYPE, m.mtrr_def_type),
    ];
    for (idx, val) in mtrr_fixed_indices().iter().zip(m.mtrr_fixed) {
        v.push((*idx, val));
    }
    for (i, (base, mask)) in m.mtrr_var.iter().enumerate() {
        v.push((MTRR_VAR_BASE + 2 * i as u32, *base));
        v.push((MTRR_VAR_BASE + 2 * i as u32 + 1, *mask));
    }
    v
}

/// Stores one MSR value into `m`; false if `Msrs` has no place for `index`.
pub fn set_msr(m: &mut Msrs, index: u32, value: u64) -> bool {
    use msr_index::*;
    let slot = match index {
        STAR => &mut m.star,
        LSTAR => &mut m.lstar,
        CSTAR => &mut m.cstar,
        SFMASK => &mut m.sfmask,
        KERNEL_GS_BASE => &mut m.kernel_gs_base,
        SYSENTER_CS => &mut m.sysenter_cs,
        SYSENTER_ESP => &mut m.sysenter_esp,
        SYSENTER_EIP => &mut m.sysenter_eip,
        TSC => &mut m.tsc,
        TSC_ADJUST => &mut m.tsc_adjust,
        TSC_DEADLINE => &mut m.tsc_deadline,
        PAT => &mut m.pat,
        TSC_AUX => &mut m.tsc_aux,
        MISC_ENABLE => &mut m.misc_enable,
        SPEC_CTRL => &mut m.spec_ctrl,
        MTRR_DEF_TYPE => &mut m.mtrr_def_type,
        i if (MTRR_VAR_BASE..MTRR_VAR_BASE + 16).contains(&i) => {
            let n = ((i - MTRR_VAR_BASE) / 2) as usize;
            if i % 2 == 0 {
                &mut m.mtrr_var[n].0
            } else {
                &mut m.mtrr_var[n].1
            }
        }
        i => match mtrr_fixed_indices().iter().position(|&f| f == i) {
            Some(n) => &mut m.mtrr_fixed[n],
            None => return false,
        },
    };
    *slot = value;
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use twinvm_cpu::state::{efer, Segment};

    /// A state with every field distinct, so a swapped or dropped field shows.
    pub(crate) fn busy_state() -> CpuState {
        let mut s = CpuState::protected_flat();
        for (i, g) in s.gpr.iter_mut().enumerate() {
            *g = 0x1111_0000_0000_0000 * (i as u64 % 15 + 1) + i as u64;
        }
        s.rip = 0xffff_8000_0010_2030;
        s.rflags = 0x246 | (1 << 18);
        s.seg[CS] = Segment::flat(0x08, true, true);
        s.seg[SS] = Segment {
            selector: 0x13,
            base: 0,
            limit: 0xfffff,
            attr: seg_attr::P | seg_attr::S | seg_attr::RW | (3 << seg_attr::DPL_SHIFT),
        };
        s.seg[FS].base = 0x7fff_1234_5000;
        s.seg[GS] = Segment {
            selector: 0,
            base: 0xffff_8880_0000_0000,
            limit: 0,
            attr: seg_attr::UNUSABLE,
        };
        s.seg[ES].attr |= seg_attr::AVL | seg_attr::CE;
        s.tr = Segment {
            selector: 0x28,
            base: 0xffff_fe00_0000_3000,
            limit: 0x67,
            attr: 0x8b,
        };
        s.ldtr = Segment {
            selector: 0x30,
            base: 0x5000,
            limit: 0xff,
            attr: 0x82,
        };
        s.gdtr = TableReg {
            base: 0xffff_fe00_0000_1000,
            limit: 0x7f,
        };
        s.idtr = TableReg {
            base: 0xffff_fe00_0000_0000,
            limit: 0xfff,
        };
        s.cr0 = 0x8005_0033;
        s.cr2 = 0xdead_b000;
        s.cr3 = 0x1234_5000;
        s.cr4 = 0x3606f0;
        s.cr8 = 5;
        s.efer = efer::LME | efer::LMA | efer::NXE | efer::SCE;
        s.msr.apic_base = 0xfee0_0900;
        s
    }

    #[test]
    fn regs_round_trip() {
        let s = busy_state();
        let k = regs_from_state(&s);
        assert_eq!(
            (k.rax, k.rbx, k.rsp, k.r15),
            (s.gpr[0], s.gpr[3], s.gpr[4], s.gpr[15])
        );
        let mut t = CpuState::reset();
        regs_to_state(&k, &mut t);
        assert_eq!((t.gpr, t.rip, t.rflags), (s.gpr, s.rip, s.rflags));
    }

    #[test]
    fn sregs_round_trip() {
        let s = busy_state();
        let k = sregs_from_state(&s);
        assert_eq!(k.cs.l, 1);
        assert_eq!(k.cs.type_, 0xb);
        assert_eq!(k.ss.dpl, 3);
        assert_eq!(k.gs.unusable, 1);
        assert_eq!(k.es.avl, 1);
        let mut t = CpuState::reset();
        sregs_to_state(&k, &mut t);
        assert_eq!(t.seg, s.seg);
        assert_eq!(
            (t.tr, t.ldtr, t.gdtr, t.idtr),
            (s.tr, s.ldtr, s.gdtr, s.idtr)
        );
        assert_eq!(
            (t.cr0, t.cr2, t.cr3, t.cr4, t.cr8, t.efer, t.msr.apic_base),
            (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.msr.apic_base)
        );
    }

    #[test]
    fn every_attribute_bit_survives() {
        for b in [0u32, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16] {
            let seg = Segment {
                selector: 0x10,
                base: 0x1000,
                limit: 0xffff,
                attr: 1 << b,
            };
            assert_eq!(segment_from_kvm(&segment_to_kvm(&seg)), seg, "bit {b}");
        }
    }

    fn busy_fx() -> FxState {
        let mut f = FxState::default();
        for (i, b) in f.0.iter_mut().enumerate() {
            // Leave bytes 28..32 (MXCSR_MASK) and the reserved tail as they are.
            if !(28..32).contains(&i) && i < 416 && i != 5 {
                *b = (i * 7 + 3) as u8;
            }
        }
        f
    }

    #[test]
    fn fpu_round_trip() {
        let f = busy_fx();
        let k = fpu_from_fx(&f);
        assert_eq!(k.mxcsr, le32(&f.0, 24));
        assert_eq!(k.xmm[15], f.0[400..416]);
        assert_eq!(fx_from_fpu(&k, &f), f);
        // MXCSR_MASK comes from the previous image, not from kvm_fpu.
        assert_eq!(le32(&fx_from_fpu(&k, &FxState::default()).0, 28), 0xffff);
    }

    #[test]
    fn xsave_round_trip_marks_components() {
        let f = busy_fx();
        let mut x = kvm_xsave::default();
        x.region[200] = 0xabcd;
        fx_into_xsave(&f, &mut x);
        assert_eq!(x.region[XSTATE_BV_WORD] & 3, 3);
        assert_eq!(x.region[200], 0xabcd, "other components are kept");
        assert_eq!(fx_from_xsave(&x), f);
    }

    #[test]
    fn events_round_trip() {
        let cases = [
            Events::default(),
            Events {
                interrupt_shadow: true,
                nmi_pending: true,
                nmi_masked: true,
                pending_exception: Some(PendingException {
                    vector: 14,
                    error_code: Some(2),
                }),
                halted: true,
            },
            Events {
                pending_exception: Some(PendingException {
                    vector: 6,
                    error_code: None,
                }),
                ..Default::default()
            },
        ];
        for e in cases {
            let k = events_from_state(&e);
            assert_eq!(events_to_state(&k, &e), e);
        }
        // Either kind of shadow reads back as a shadow.
        let mut k = kvm_vcpu_events::default();
        k.interrupt.shadow = KVM_X86_SHADOW_INT_STI as u8;
        assert!(events_to_state(&k, &Events::default()).interrupt_shadow);
    }

    #[test]
    fn msrs_round_trip() {
        let mut m = Msrs::default();
        let entries: Vec<(u32, u64)> = msr_entries(&m)
            .iter()
            .enumerate()
            .map(|(i, (idx, _))| (*idx, 0x1000 + i as u64))
            .collect();
        for (idx, v) in &entries {
            assert!(set_msr(&mut m, *idx, *v), "msr {idx:#x}");
        }
        assert_eq!(msr_entries(&m), entries);
        assert_eq!(m.mtrr_var[7].1, entries.last().map(|e| e.1).unwrap_or(0));
        assert!(!set_msr(&mut m, 0x1b, 0), "APIC base goes through sregs");
        let mut idx: Vec<u32> = entries.iter().map(|e| e.0).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), entries.len(), "no MSR listed twice");
    }
}
