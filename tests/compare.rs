//! `twinvm compare`: identical runs are reported identical, a different run is named with
//! its first difference, and what is not implemented is refused.

mod common;

use std::time::Duration;

use common::{firmware, twinvm};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn same_engine_twice_is_identical() {
    for (opt, img) in [("--kernel", "arith.elf"), ("--firmware", "bcd16.rom")] {
        let p = firmware(img);
        let r = twinvm(
            &[
                "compare",
                "--accel",
                "interp,interp",
                opt,
                p.to_str().expect("utf-8"),
            ],
            LIMIT,
        );
        assert_eq!(r.status, 0, "{img}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("compare: identical"), "{}", r.stdout);
    }
}

#[test]
fn a_different_run_is_reported_with_its_first_difference() {
    let p = firmware("hello.elf");
    let r = twinvm(
        &[
            "compare",
            "--accel",
            "interp,interp",
            "--kernel",
            p.to_str().expect("utf-8"),
            "--append",
            "one",
            "--append-other",
            "two",
        ],
        LIMIT,
    );
    assert_eq!(r.status, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("compare: DIFFERENT")
            && r.stdout.contains("guest memory differs first at"),
        "{}",
        r.stdout
    );
}

#[test]
fn lockstep_and_unknown_engines_are_refused() {
    let p = firmware("hello.elf");
    let k = p.to_str().expect("utf-8");
    let r = twinvm(
        &[
            "compare",
            "--accel",
            "interp,interp",
            "--lockstep",
            "--kernel",
            k,
        ],
        LIMIT,
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("--lockstep is not implemented"),
        "{}",
        r.stderr
    );
    let r = twinvm(
        &["compare", "--accel", "interp,nosuch", "--kernel", k],
        LIMIT,
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("engine 'nosuch' is not available"),
        "{}",
        r.stderr
    );
    let r = twinvm(&["compare", "--accel", "interp", "--kernel", k], LIMIT);
    assert_eq!(r.status, 2);
    assert!(r.stderr.contains("at least two engines"), "{}", r.stderr);
}
