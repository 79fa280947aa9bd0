//! Named CPU models and feature editing for `--cpu MODEL[,+feat,-feat…]`.
//!
//! `max` is everything twinvm implements. `qemu64` follows QEMU's model of that name (AMD
//! vendor, family 15 model 107 stepping 1, the PPro-era baseline plus SSE3/CX16, LM/SYSCALL/
//! NX and LAHF_LM; no POPCNT, MOVBE, RDTSCP, 1 GiB pages, x2APIC or TSC-deadline), limited to
//! what twinvm implements, so that it grows as the interpreter does. Feature names are the
//! ones Linux prints in /proc/cpuinfo. Every engine presents the resulting table.

use std::fmt;

use crate::model::CpuModel;

/// The CPUID register a feature bit lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Leaf1Ecx,
    Leaf1Edx,
    Leaf7Ebx,
    Ext1Ecx,
    Ext1Edx,
}

use Word::*;

/// (Linux name, register, bit).
const FEATURES: &[(&str, Word, u8)] = &[
    ("fpu", Leaf1Edx, 0),
    ("vme", Leaf1Edx, 1),
    ("de", Leaf1Edx, 2),
    ("pse", Leaf1Edx, 3),
    ("tsc", Leaf1Edx, 4),
    ("msr", Leaf1Edx, 5),
    ("pae", Leaf1Edx, 6),
    ("mce", Leaf1Edx, 7),
    ("cx8", Leaf1Edx, 8),
    ("apic", Leaf1Edx, 9),
    ("sep", Leaf1Edx, 11),
    ("mtrr", Leaf1Edx, 12),
    ("pge", Leaf1Edx, 13),
    ("mca", Leaf1Edx, 14),
    ("cmov", Leaf1Edx, 15),
    ("pat", Leaf1Edx, 16),
    ("pse36", Leaf1Edx, 17),
    ("clflush", Leaf1Edx, 19),
    ("mmx", Leaf1Edx, 23),
    ("fxsr", Leaf1Edx, 24),
    ("sse", Leaf1Edx, 25),
    ("sse2", Leaf1Edx, 26),
    ("pni", Leaf1Ecx, 0),
    ("pclmulqdq", Leaf1Ecx, 1),
    ("monitor", Leaf1Ecx, 3),
    ("ssse3", Leaf1Ecx, 9),
    ("fma", Leaf1Ecx, 12),
    ("cx16", Leaf1Ecx, 13),
    ("pcid", Leaf1Ecx, 17),
    ("sse4_1", Leaf1Ecx, 19),
    ("sse4_2", Leaf1Ecx, 20),
    ("x2apic", Leaf1Ecx, 21),
    ("movbe", Leaf1Ecx, 22),
    ("popcnt", Leaf1Ecx, 23),
    ("tsc_deadline_timer", Leaf1Ecx, 24),
    ("aes", Leaf1Ecx, 25),
    ("xsave", Leaf1Ecx, 26),
    ("avx", Leaf1Ecx, 28),
    ("f16c", Leaf1Ecx, 29),
    ("rdrand", Leaf1Ecx, 30),
    ("hypervisor", Leaf1Ecx, 31),
    ("fsgsbase", Leaf7Ebx, 0),
    ("bmi1", Leaf7Ebx, 3),
    ("avx2", Leaf7Ebx, 5),
    ("smep", Leaf7Ebx, 7),
    ("bmi2", Leaf7Ebx, 8),
    ("erms", Leaf7Ebx, 9),
    ("invpcid", Leaf7Ebx, 10),
    ("rdseed", Leaf7Ebx, 18),
    ("adx", Leaf7Ebx, 19),
    ("smap", Leaf7Ebx, 20),
    ("clflushopt", Leaf7Ebx, 23),
    ("lahf_lm", Ext1Ecx, 0),
    ("svm", Ext1Ecx, 2),
    ("abm", Ext1Ecx, 5),
    ("sse4a", Ext1Ecx, 6),
    ("syscall", Ext1Edx, 11),
    ("nx", Ext1Edx, 20),
    ("pdpe1gb", Ext1Edx, 26),
    ("rdtscp", Ext1Edx, 27),
    ("lm", Ext1Edx, 29),
];

/// The model names `--cpu` accepts.
pub const MODEL_NAMES: &[&str] = &["max", "qemu64"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    UnknownModel(String),
    UnknownFeature(String),
    /// A real feature twinvm does not implement (it cannot be enabled).
    NotImplemented(String),
    /// An item without a leading + or -.
    BadItem(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::UnknownModel(m) => write!(
                f,
                "unknown CPU model '{m}' (known: {})",
                MODEL_NAMES.join(", ")
            ),
            ModelError::UnknownFeature(n) => write!(
                f,
                "unknown CPU feature '{n}' (use the names of /proc/cpuinfo, e.g. popcnt, x2apic)"
            ),
            ModelError::NotImplemented(n) => {
                write!(f, "CPU feature '{n}' is not implemented by twinvm")
            }
            ModelError::BadItem(s) => {
                write!(
                    f,
                    "'{s}': expected +FEATURE or -FEATURE after the model name"
                )
            }
        }
    }
}

impl std::error::Error for ModelError {}

fn word(m: &mut CpuModel, w: Word) -> &mut u32 {
    match w {
        Leaf1Ecx => &mut m.leaf1_ecx,
        Leaf1Edx => &mut m.leaf1_edx,
        Leaf7Ebx => &mut m.leaf7_ebx,
        Ext1Ecx => &mut m.ext1_ecx,
        Ext1Edx => &mut m.ext1_edx,
    }
}

fn bits(names: &[&str]) -> CpuModel {
    let mut m = CpuModel::max();
    for w in [Leaf1Ecx, Leaf1Edx, Leaf7Ebx, Ext1Ecx, Ext1Edx] {
        *word(&mut m, w) = 0;
    }
    for n in names {
        if let Some(&(_, w, b)) = FEATURES.iter().find(|f| f.0 == *n) {
            *word(&mut m, w) |= 1 << b;
        }
    }
    m
}

/// QEMU's qemu64 (target/i386/cpu.c), restricted to what twinvm implements.
pub fn qemu64() -> CpuModel {
    let want = bits(&[
        // PPRO_FEATURES | MTRR | CLFLUSH | MCA | PSE36
        "fpu",
        "de",
        "pse",
        "tsc",
        "msr",
        "pae",
        "mce",
        "cx8",
        "apic",
        "sep",
        "mtrr",
        "pge",
        "mca",
        "cmov",
        "pat",
        "pse36",
        "clflush",
        "mmx",
        "fxsr",
        "sse",
        "sse2",
        // leaf 1 ECX
        "pni",
        "cx16",
        "hypervisor",
        // 0x8000_0001
        "lm",
        "syscall",
        "nx",
        "lahf_lm",
    ]);
    let max = CpuModel::max();
    CpuModel {
        name: "qemu64",
        vendor: *b"AuthenticAMD",
        // Family 15, model 107 (extended model 6, model 0xb), stepping 1.
        signature: 0x0006_0fb1,
        leaf1_ecx: want.leaf1_ecx & max.leaf1_ecx,
        leaf1_edx: want.leaf1_edx & max.leaf1_edx,
        leaf7_ebx: want.leaf7_ebx & max.leaf7_ebx,
        ext1_ecx: want.ext1_ecx & max.ext1_ecx,
        ext1_edx: want.ext1_edx & max.ext1_edx,
        brand: "QEMU Virtual CPU version 2.5+",
        ..max
    }
}

/// Parses `MODEL[,+feat,-feat…]`.
pub fn parse_cpu_spec(spec: &str) -> Result<CpuModel, ModelError> {
    let mut items = spec.split(',').map(str::trim);
    let name = items.next().unwrap_or("");
    let mut m = match name {
        "max" | "" => CpuModel::max(),
        "qemu64" => qemu64(),
        _ => return Err(ModelError::UnknownModel(name.to_string())),
    };
    let max = CpuModel::max();
    for it in items.filter(|s| !s.is_empty()) {
        let (on, feat) = match (it.strip_prefix('+'), it.strip_prefix('-')) {
            (Some(f), _) => (true, f),
            (_, Some(f)) => (false, f),
            _ => return Err(ModelError::BadItem(it.to_string())),
        };
        let Some(&(_, w, b)) = FEATURES.iter().find(|f| f.0 == feat) else {
            return Err(ModelError::UnknownFeature(feat.to_string()));
        };
        let bit = 1u32 << b;
        if on {
            let mut mx = max.clone();
            if *word(&mut mx, w) & bit == 0 {
                return Err(ModelError::NotImplemented(feat.to_string()));
            }
            *word(&mut m, w) |= bit;
        } else {
            *word(&mut m, w) &= !bit;
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::feat;

    #[test]
    fn qemu64_is_a_baseline() {
        let m = qemu64();
        assert_eq!(&m.vendor, b"AuthenticAMD");
        assert!(!m.has_leaf1_ecx(feat::POPCNT));
        assert!(!m.has_leaf1_ecx(feat::MOVBE));
        assert!(!m.has_leaf1_ecx(feat::X2APIC));
        assert!(!m.has_ext1_edx(feat::RDTSCP));
        assert!(!m.has_ext1_edx(feat::PDPE1GB));
        assert!(m.has_ext1_edx(feat::LM) && m.has_ext1_edx(feat::NX));
        assert_ne!(m.leaf1_edx & feat::APIC, 0);
        assert!(m.has_leaf1_ecx(feat::CX16));
        // Nothing twinvm does not implement.
        let max = CpuModel::max();
        assert_eq!(m.leaf1_ecx & !max.leaf1_ecx, 0);
        assert_eq!(m.ext1_edx & !max.ext1_edx, 0);
    }

    #[test]
    fn feature_edits() {
        let m = parse_cpu_spec("qemu64,+popcnt,-nx").unwrap();
        assert!(m.has_leaf1_ecx(feat::POPCNT));
        assert!(!m.has_ext1_edx(feat::NX));
        let m = parse_cpu_spec("max,-x2apic,-tsc_deadline_timer").unwrap();
        assert!(!m.has_leaf1_ecx(feat::X2APIC));
        assert!(!m.has_leaf1_ecx(feat::TSC_DEADLINE));
        assert_eq!(parse_cpu_spec("max").unwrap(), CpuModel::max());
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(
            parse_cpu_spec("pentium9"),
            Err(ModelError::UnknownModel("pentium9".into()))
        );
        assert_eq!(
            parse_cpu_spec("max,+frobnicate"),
            Err(ModelError::UnknownFeature("frobnicate".into()))
        );
        assert_eq!(
            parse_cpu_spec("max,+avx512f"),
            Err(ModelError::UnknownFeature("avx512f".into()))
        );
        assert_eq!(
            parse_cpu_spec("qemu64,+svm"),
            Err(ModelError::NotImplemented("svm".into()))
        );
        assert_eq!(
            parse_cpu_spec("max,popcnt"),
            Err(ModelError::BadItem("popcnt".into()))
        );
        assert!(parse_cpu_spec("max,+frobnicate")
            .unwrap_err()
            .to_string()
            .contains("/proc/cpuinfo"));
    }
}
