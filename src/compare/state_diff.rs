//! Field-by-field differences between two final CPU states.

use twinvm_cpu::state::{CpuState, Msrs};

const GPR: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
const SEG: [&str; 6] = ["es", "cs", "ss", "ds", "fs", "gs"];

/// Parts of the FXSAVE image by name: (name, offset, length).
const FX_PARTS: &[(&str, usize, usize)] = &[
    ("fcw", 0, 2),
    ("fsw", 2, 2),
    ("ftw", 4, 1),
    ("fop", 6, 2),
    ("fip", 8, 8),
    ("fdp", 16, 8),
    ("mxcsr", 24, 4),
];

/// The guest's TSC comes from the host clock until timers are deterministic (`--icount`),
/// so it differs between any two runs and is left out.
fn comparable_msrs(m: &Msrs) -> Msrs {
    Msrs { tsc: 0, ..*m }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().rev().map(|x| format!("{x:02x}")).collect()
}

/// Every differing field, as "name: A vs B".
pub fn differences(a: &CpuState, b: &CpuState) -> Vec<String> {
    let mut d = Vec::new();
    let mut num = |name: &str, x: u64, y: u64| {
        if x != y {
            d.push(format!("{name}: {x:#x} vs {y:#x}"));
        }
    };
    for (i, n) in GPR.iter().enumerate() {
        num(n, a.gpr[i], b.gpr[i]);
    }
    num("rip", a.rip, b.rip);
    num("rflags", a.rflags, b.rflags);
    for (n, x, y) in [
        ("cr0", a.cr0, b.cr0),
        ("cr2", a.cr2, b.cr2),
        ("cr3", a.cr3, b.cr3),
        ("cr4", a.cr4, b.cr4),
        ("cr8", a.cr8, b.cr8),
        ("efer", a.efer, b.efer),
        ("xcr0", a.xcr0, b.xcr0),
        ("dr6", a.dr6, b.dr6),
        ("dr7", a.dr7, b.dr7),
    ] {
        num(n, x, y);
    }
    for i in 0..4 {
        num(&format!("dr{i}"), a.dr[i], b.dr[i]);
    }
    let mut dbg = |name: &str, x: String, y: String| {
        if x != y {
            d.push(format!("{name}: {x} vs {y}"));
        }
    };
    for (i, n) in SEG.iter().enumerate() {
        dbg(n, format!("{:x?}", a.seg[i]), format!("{:x?}", b.seg[i]));
    }
    dbg("ldtr", format!("{:x?}", a.ldtr), format!("{:x?}", b.ldtr));
    dbg("tr", format!("{:x?}", a.tr), format!("{:x?}", b.tr));
    dbg("gdtr", format!("{:x?}", a.gdtr), format!("{:x?}", b.gdtr));
    dbg("idtr", format!("{:x?}", a.idtr), format!("{:x?}", b.idtr));
    dbg(
        "events",
        format!("{:?}", a.events),
        format!("{:?}", b.events),
    );
    let (ma, mb) = (comparable_msrs(&a.msr), comparable_msrs(&b.msr));
    if ma != mb {
        let (la, lb) = (format!("{ma:#x?}"), format!("{mb:#x?}"));
        for (x, y) in la.lines().zip(lb.lines()).filter(|(x, y)| x != y) {
            d.push(format!(
                "msr {} vs {}",
                x.trim().trim_end_matches(','),
                y.trim().trim_end_matches(',')
            ));
        }
    }
    let (fa, fb) = (&a.fx.0, &b.fx.0);
    for &(n, off, len) in FX_PARTS {
        let (x, y) = (&fa[off..off + len], &fb[off..off + len]);
        if x != y {
            d.push(format!("{n}: 0x{} vs 0x{}", hex_bytes(x), hex_bytes(y)));
        }
    }
    for i in 0..8 {
        let r = 32 + 16 * i..32 + 16 * i + 10;
        if fa[r.clone()] != fb[r.clone()] {
            d.push(format!(
                "st{i}: 0x{} vs 0x{}",
                hex_bytes(&fa[r.clone()]),
                hex_bytes(&fb[r])
            ));
        }
    }
    for i in 0..16 {
        let r = 160 + 16 * i..176 + 16 * i;
        if fa[r.clone()] != fb[r.clone()] {
            d.push(format!(
                "xmm{i}: 0x{} vs 0x{}",
                hex_bytes(&fa[r.clone()]),
                hex_bytes(&fb[r])
            ));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_difference_and_ignores_tsc() {
        let a = CpuState::protected_flat();
        let mut b = a.clone();
        assert!(differences(&a, &b).is_empty());
        b.msr.tsc = 12345;
        assert!(differences(&a, &b).is_empty());
        b.gpr[3] = 7;
        b.seg[1].selector = 0x18;
        b.msr.lstar = 0x1000;
        b.fx.0[160 + 16 * 2] = 1;
        let d = differences(&a, &b);
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(d[0], "rbx: 0x0 vs 0x7");
        assert!(d[1].starts_with("cs: "), "{}", d[1]);
        assert!(d[2].contains("lstar: 0x0 vs lstar: 0x1000"), "{}", d[2]);
        assert!(d[3].starts_with("xmm2: "), "{}", d[3]);
    }
}
