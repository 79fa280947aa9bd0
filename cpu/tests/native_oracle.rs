//! The native oracle: random and table-driven instruction sequences run on the host CPU
//! (in a ptraced child) and in the interpreter from the same state; every register, the
//! arithmetic flags + DF, the data and stack pages, and faults must match.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::collections::BTreeMap;
use std::time::Instant;

use twinvm_cpu::oracle::gen::{Family, Generator};
use twinvm_cpu::oracle::native::NativeRunner;
use twinvm_cpu::oracle::{compare, flag_mask, report, InterpRunner, Outcome, COMPARED_FLAGS};

/// Random cases per family (11 families → well over 100,000 in all).
const CASES_PER_FAMILY: usize = 10_000;
/// Stop after this many mismatches (each is reported in full).
const MAX_REPORTS: usize = 5;

fn runner() -> Option<NativeRunner> {
    match NativeRunner::new() {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = format!("native oracle SKIPPED: cannot run code natively here: {e}");
            if std::env::var_os("TWINVM_REQUIRE_ORACLE").is_some() {
                panic!("{msg}");
            }
            eprintln!("{msg}");
            None
        }
    }
}

/// Replays one reported case: `TWINVM_ORACLE_REPLAY="0x<seed> <Family>" cargo test
/// -p twinvm-cpu --test native_oracle replay -- --nocapture`.
#[test]
fn replay() {
    let Ok(spec) = std::env::var("TWINVM_ORACLE_REPLAY") else {
        return;
    };
    let Some(mut native) = runner() else { return };
    let mut it = spec.split_whitespace();
    let seed = it
        .next()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .expect("seed");
    let fam_name = it.next().unwrap_or("Data");
    let fam = Family::ALL
        .into_iter()
        .find(|f| format!("{f:?}") == fam_name)
        .expect("family");
    let case = Generator::new(seed).case(fam);
    let n = native.run(&case.code, &case.init).expect("native run");
    let i = InterpRunner::new().run(&case.code, &case.init);
    let d = compare(&n, &i, flag_mask(&case.mnemonics));
    eprintln!("{}", report(seed, &case.code, &case.init, &n, &i, &d));
    assert!(d.is_empty());
}

#[test]
fn native_oracle_random() {
    let Some(mut native) = runner() else { return };
    let mut interp = InterpRunner::new();
    let seed = std::env::var("TWINVM_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7717_0a11);
    let per_family = std::env::var("TWINVM_ORACLE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES_PER_FAMILY);
    let mut failures = Vec::new();
    let mut unimplemented = std::collections::BTreeSet::new();
    let mut stats: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let start = Instant::now();
    let mut total = 0;
    let mut times = [0f64; 3];
    let mut faults = BTreeMap::new();
    for (fi, fam) in Family::ALL.iter().enumerate() {
        let mut gen = Generator::new(seed ^ ((fi as u64) << 48));
        for k in 0..per_family {
            let case_seed = gen.rng.0;
            let t0 = Instant::now();
            let case = gen.case(*fam);
            let t1 = Instant::now();
            let n = native.run(&case.code, &case.init).expect("native run");
            let t2 = Instant::now();
            let i = interp.run(&case.code, &case.init);
            let t3 = Instant::now();
            times[0] += (t1 - t0).as_secs_f64();
            times[1] += (t2 - t1).as_secs_f64();
            times[2] += (t3 - t2).as_secs_f64();
            total += 1;
            let e = stats.entry(format!("{fam:?}")).or_default();
            e.0 += 1;
            if n.1 != Outcome::Completed {
                e.1 += 1;
                let v = match &n.1 {
                    Outcome::Fault { vector, .. } => format!("#{vector}"),
                    o => format!("{o:?}"),
                };
                *faults.entry(format!("{fam:?} {v}")).or_insert(0usize) += 1;
            }
            let d = compare(&n, &i, flag_mask(&case.mnemonics));
            if !d.is_empty() {
                failures.push(report(case_seed, &case.code, &case.init, &n, &i, &d));
                eprintln!("{fam:?} case {k} (replay: TWINVM_ORACLE_REPLAY=\"{case_seed:#x} {fam:?}\"):\n{}", failures.last().unwrap());
                if failures.len() >= MAX_REPORTS {
                    break;
                }
            }
        }
        unimplemented.extend(gen.unimplemented.iter().cloned());
        if failures.len() >= MAX_REPORTS {
            break;
        }
    }
    // Every family is implemented: a form without a handler is a regression.
    assert!(
        unimplemented.is_empty(),
        "forms without an interpreter handler: {unimplemented:?}"
    );
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "native oracle: {total} cases in {secs:.2}s ({:.0}/s)",
        total as f64 / secs
    );
    eprintln!(
        "  time: generate {:.2}s, native {:.2}s, interpreter {:.2}s",
        times[0], times[1], times[2]
    );
    for (f, (n, faults)) in &stats {
        eprintln!("  {f:<8} {n:>6} cases, {faults:>5} ended in a fault");
    }
    eprintln!("  faults: {faults:?}");
    assert!(
        failures.is_empty(),
        "{} native-oracle mismatches (first shown above)",
        failures.len()
    );
}

/// Every table form of every family, with its register operands taking every pair of
/// edge values (and CL every interesting count).
#[test]
fn native_oracle_edge_table() {
    let Some(mut native) = runner() else { return };
    let mut interp = InterpRunner::new();
    let mut gen = Generator::new(0xed6e);
    let mut failures = Vec::new();
    let mut total = 0;
    let start = Instant::now();
    'all: for fam in Family::ALL {
        let forms: Vec<_> = gen.forms(fam).to_vec();
        for code in forms {
            for case in gen.edge_cases(code) {
                let n = native.run(&case.code, &case.init).expect("native run");
                let i = interp.run(&case.code, &case.init);
                total += 1;
                let d = compare(&n, &i, flag_mask(&case.mnemonics));
                if !d.is_empty() {
                    failures.push(report(0xed6e, &case.code, &case.init, &n, &i, &d));
                    eprintln!("{fam:?} {code:?}:\n{}", failures.last().unwrap());
                    if failures.len() >= MAX_REPORTS {
                        break 'all;
                    }
                    // One report per form is enough.
                    break;
                }
            }
        }
    }
    eprintln!(
        "native oracle edge table: {total} cases in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} native-oracle edge-table mismatches (shown above)",
        failures.len()
    );
}

/// The harness itself: a difference between the two sides is reported, and faults map
/// to the right vectors.
#[test]
fn native_oracle_self_check() {
    let Some(mut native) = runner() else { return };
    let mut interp = InterpRunner::new();
    let l = twinvm_cpu::oracle::Layout::get();
    let init = twinvm_cpu::oracle::State {
        gpr: [7; 16],
        rflags: 0,
        rip: l.code,
        data: vec![0; l.data_len],
        stack: vec![0; l.stack_len],
    };
    // add eax, 1 / add eax, 2 (then UD2): the comparison must see RAX differ.
    let a = [0x83, 0xc0, 0x01, 0x0f, 0x0b];
    let b = [0x83, 0xc0, 0x02, 0x0f, 0x0b];
    let n = native.run(&a, &init).unwrap();
    assert_eq!(n.1, Outcome::Completed);
    assert_eq!(n.0.gpr[0], 8);
    let i = interp.run(&b, &init);
    assert!(compare(&n, &i, COMPARED_FLAGS)
        .iter()
        .any(|d| d.starts_with("rax")));
    assert!(compare(&n, &interp.run(&a, &init), COMPARED_FLAGS).is_empty());
    // Faults: div by zero, unmapped read, CLI at CPL 3, UD2 mid-sequence.
    let mut z = init.clone();
    z.gpr[1] = 0;
    let cases: [(&[u8], &twinvm_cpu::oracle::State, Outcome); 4] = [
        (
            &[0xf7, 0xf1, 0x0f, 0x0b],
            &z,
            Outcome::Fault {
                vector: 0,
                cr2: None,
            },
        ),
        (
            &[0x8b, 0x04, 0x25, 0, 0, 0x50, 0, 0x0f, 0x0b],
            &init,
            Outcome::Fault {
                vector: 14,
                cr2: Some(0x50_0000),
            },
        ),
        (
            &[0xfa, 0x0f, 0x0b],
            &init,
            Outcome::Fault {
                vector: 13,
                cr2: None,
            },
        ),
        (
            &[0x90, 0x0f, 0x0b, 0x90, 0x0f, 0x0b],
            &init,
            Outcome::Fault {
                vector: 6,
                cr2: None,
            },
        ),
    ];
    for (code, st, want) in cases {
        let n = native.run(code, st).unwrap();
        assert_eq!(n.1, want, "native {code:02x?}");
        let i = interp.run(code, st);
        assert!(
            compare(&n, &i, COMPARED_FLAGS).is_empty(),
            "{code:02x?}: {:?}",
            compare(&n, &i, COMPARED_FLAGS)
        );
    }
}
