//! The guest's CPUID under KVM: the shared `CpuModel` table, filtered by what this KVM
//! supports, so a guest sees the same CPU as under the interpreter wherever KVM allows.

use kvm_bindings::{
    kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES,
};
use twinvm_cpu::model::feat;
use twinvm_cpu::CpuModel;

/// A feature-bearing CPUID word: (leaf, subleaf, register index 0=EAX..3=EDX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word {
    leaf: u32,
    subleaf: u32,
    reg: usize,
}

const L1_ECX: Word = Word {
    leaf: 1,
    subleaf: 0,
    reg: 2,
};
const L1_EDX: Word = Word {
    leaf: 1,
    subleaf: 0,
    reg: 3,
};
const L7_EBX: Word = Word {
    leaf: 7,
    subleaf: 0,
    reg: 1,
};
const E1_ECX: Word = Word {
    leaf: 0x8000_0001,
    subleaf: 0,
    reg: 2,
};
const E1_EDX: Word = Word {
    leaf: 0x8000_0001,
    subleaf: 0,
    reg: 3,
};

/// Feature bits the model can advertise, by name (the names /proc/cpuinfo uses).
const FEATURES: &[(Word, u32, &str)] = &[
    (L1_EDX, feat::FPU, "fpu"),
    (L1_EDX, feat::PSE, "pse"),
    (L1_EDX, feat::TSC, "tsc"),
    (L1_EDX, feat::MSR, "msr"),
    (L1_EDX, feat::PAE, "pae"),
    (L1_EDX, feat::CX8, "cx8"),
    (L1_EDX, feat::SEP, "sep"),
    (L1_EDX, feat::PGE, "pge"),
    (L1_EDX, feat::CMOV, "cmov"),
    (L1_EDX, feat::PAT, "pat"),
    (L1_EDX, feat::PSE36, "pse36"),
    (L1_ECX, feat::CX16, "cx16"),
    (L1_ECX, feat::MOVBE, "movbe"),
    (L1_ECX, feat::POPCNT, "popcnt"),
    (L7_EBX, feat::BMI1, "bmi1"),
    (L7_EBX, feat::BMI2, "bmi2"),
    (L7_EBX, feat::ADX, "adx"),
    (E1_ECX, feat::LAHF_LM, "lahf_lm"),
    (E1_ECX, feat::ABM, "abm"),
    (E1_EDX, feat::SYSCALL, "syscall"),
    (E1_EDX, feat::NX, "nx"),
    (E1_EDX, feat::PDPE1GB, "pdpe1gb"),
    (E1_EDX, feat::RDTSCP, "rdtscp"),
    (E1_EDX, feat::LM, "lm"),
];

/// Instructions this KVM may lack in its CPUID yet still run where the host CPU has them:
/// natively in guest ring 3, and in ring 0 either natively or — where KVM's emulator fails
/// on them with an emulation-failure exit — in twinvm's interpreter (the fallback). Keeping
/// them keeps the guest's CPU the same as under `--accel interp`, so the engines can be
/// compared. Not listed, on purpose: `abm` (LZCNT) and `bmi1` (TZCNT), whose encodings are
/// BSR/BSF with an F3 prefix — an emulator that does not know them runs BSR/BSF instead,
/// silently and wrongly (measured on this host's kvm_pvm: `lzcnt` of 0 leaves the
/// destination unchanged with ZF=1), so no exit ever reaches the fallback; and `movbe`,
/// on which that emulator raises #UD instead of failing.
const FALLBACK_RUNS: &[&str] = &["cx16", "popcnt", "bmi2", "adx", "rdtscp"];

/// What filtering decided, for the start-up summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuidReport {
    /// Advertised by the model, not supported by KVM.
    pub lacking: Vec<&'static str>,
    /// Of those, kept because the host CPU has them and the fallback runs them.
    pub kept: Vec<&'static str>,
}

impl CpuidReport {
    /// The one summary line printed at start, or None when KVM lacks nothing.
    pub fn summary(&self) -> Option<String> {
        if self.lacking.is_empty() {
            return None;
        }
        let mut line = format!("kvm lacks: {}", self.lacking.join(" "));
        if !self.kept.is_empty() {
            line.push_str(&format!(
                " (still advertised, as the host CPU has them and the interpreter runs them where KVM cannot: {})",
                self.kept.join(" ")
            ));
        }
        Some(line)
    }
}

fn word_of(words: &[(u32, u32, [u32; 4])], w: Word) -> u32 {
    words
        .iter()
        .find(|(l, s, _)| *l == w.leaf && *s == w.subleaf)
        .map_or(0, |(_, _, r)| r[w.reg])
}

/// The leaves the model answers, with their subleaf.
fn model_leaves(model: &CpuModel) -> Vec<(u32, u32, [u32; 4])> {
    let max_basic = model.cpuid(0, 0, 0)[0];
    let max_ext = model.cpuid(0x8000_0000, 0, 0)[0];
    (0..=max_basic)
        .chain(0x8000_0000..=max_ext)
        .map(|l| (l, 0, model.cpuid(l, 0, 0)))
        .collect()
}

/// Filters the model's leaves by `supported` (KVM's words, as (leaf, subleaf, regs)) and
/// by `host_has` (for the fallback-run features); pure, so it is testable without KVM.
fn filter(
    model: &CpuModel,
    supported: &[(u32, u32, [u32; 4])],
    host_has: &dyn Fn(Word, u32) -> bool,
    strict: bool,
) -> (Vec<(u32, u32, [u32; 4])>, CpuidReport) {
    let mut leaves = model_leaves(model);
    let mut report = CpuidReport::default();
    for &(w, bit, name) in FEATURES {
        let Some(entry) = leaves
            .iter_mut()
            .find(|(l, s, _)| *l == w.leaf && *s == w.subleaf)
        else {
            continue;
        };
        if entry.2[w.reg] & bit == 0 || word_of(supported, w) & bit != 0 {
            continue;
        }
        report.lacking.push(name);
        if !strict && FALLBACK_RUNS.contains(&name) && host_has(w, bit) {
            report.kept.push(name);
        } else {
            entry.2[w.reg] &= !bit;
        }
    }
    (leaves, report)
}

fn host_has(w: Word, bit: u32) -> bool {
    let r = std::arch::x86_64::__cpuid_count(w.leaf, w.subleaf);
    [r.eax, r.ebx, r.ecx, r.edx][w.reg] & bit != 0
}

/// KVM_SET_CPUID2 contents for `model` and the summary of what was filtered. With `strict`,
/// every feature KVM lacks is removed.
pub fn build(
    model: &CpuModel,
    supported: &CpuId,
    strict: bool,
) -> Result<(CpuId, CpuidReport), String> {
    let sup: Vec<(u32, u32, [u32; 4])> = supported
        .as_slice()
        .iter()
        .map(|e| (e.function, e.index, [e.eax, e.ebx, e.ecx, e.edx]))
        .collect();
    let (leaves, report) = filter(model, &sup, &host_has, strict);
    let entries: Vec<kvm_cpuid_entry2> = leaves
        .iter()
        .map(|&(function, index, r)| kvm_cpuid_entry2 {
            function,
            index,
            // Leaf 7 has subleaves: only subleaf 0 is described.
            flags: if function == 7 {
                KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: r[0],
            ebx: r[1],
            ecx: r[2],
            edx: r[3],
            padding: [0; 3],
        })
        .collect();
    if entries.len() > KVM_MAX_CPUID_ENTRIES {
        return Err(format!("{} CPUID entries is too many", entries.len()));
    }
    let cpuid = CpuId::from_entries(&entries).map_err(|e| format!("CPUID table: {e:?}"))?;
    Ok((cpuid, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm_like(model: &CpuModel, clear: &[(Word, u32)]) -> Vec<(u32, u32, [u32; 4])> {
        let mut l = model_leaves(model);
        for (w, bit) in clear {
            for e in l.iter_mut().filter(|e| e.0 == w.leaf) {
                e.2[w.reg] &= !bit;
            }
        }
        l
    }

    #[test]
    fn nothing_lacking_keeps_the_model() {
        let m = CpuModel::max();
        let (leaves, rep) = filter(&m, &model_leaves(&m), &|_, _| true, false);
        assert_eq!(leaves, model_leaves(&m));
        assert_eq!(rep.summary(), None);
    }

    #[test]
    fn lacking_features_are_named_and_kept_only_with_host_support() {
        let m = CpuModel::max();
        let sup = kvm_like(&m, &[(L1_ECX, feat::POPCNT), (E1_EDX, feat::PDPE1GB)]);
        let (leaves, rep) = filter(&m, &sup, &|_, _| true, false);
        assert_eq!(rep.lacking, vec!["popcnt", "pdpe1gb"]);
        assert_eq!(rep.kept, vec!["popcnt"]);
        assert_ne!(word_of(&leaves, L1_ECX) & feat::POPCNT, 0);
        assert_eq!(word_of(&leaves, E1_EDX) & feat::PDPE1GB, 0);
        let line = rep.summary().unwrap_or_default();
        assert!(line.starts_with("kvm lacks: popcnt pdpe1gb"), "{line}");

        // Without the host CPU's support, or with strict filtering, it goes.
        let (leaves, rep) = filter(&m, &sup, &|_, _| false, false);
        assert!(rep.kept.is_empty());
        assert_eq!(word_of(&leaves, L1_ECX) & feat::POPCNT, 0);
        let (leaves, _) = filter(&m, &sup, &|_, _| true, true);
        assert_eq!(word_of(&leaves, L1_ECX) & feat::POPCNT, 0);
    }

    #[test]
    fn vendor_and_brand_leaves_come_from_the_model() {
        let m = CpuModel::max();
        let (leaves, _) = filter(&m, &[], &|_, _| false, true);
        assert_eq!(leaves[0].2, m.cpuid(0, 0, 0));
        assert!(leaves
            .iter()
            .any(|l| l.0 == 0x8000_0002 && l.2 == m.cpuid(0x8000_0002, 0, 0)));
        // Every model feature is gone when KVM supports none.
        assert_eq!(word_of(&leaves, E1_EDX) & feat::LM, 0);
    }
}
