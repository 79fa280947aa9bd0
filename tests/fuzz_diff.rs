//! `twinvm fuzz-diff`: a short run of the ring-3 hardware oracle must find no divergence.
//! Skips, printing why, where /dev/kvm is unusable.

mod common;

use std::path::Path;
use std::time::Duration;

use common::twinvm;

fn kvm_usable() -> Result<(), String> {
    twinvm::kvm::probe(Path::new(twinvm::kvm::DEFAULT_DEVICE)).map_err(|e| e.to_string())
}

#[test]
fn a_hundred_thousand_instructions_agree_with_kvm() {
    if let Err(why) = kvm_usable() {
        eprintln!("SKIPPED (KVM unusable here): {why}");
        return;
    }
    let r = twinvm(
        &["fuzz-diff", "--count", "100000", "--seed", "0x5eed"],
        Duration::from_secs(120),
    );
    eprintln!("{}", r.stdout.lines().last().unwrap_or(""));
    assert_eq!(
        r.status, 0,
        "fuzz-diff diverged or failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    let last = r.stdout.lines().last().unwrap_or("");
    assert!(
        last.starts_with("fuzz-diff: 1") && last.contains(" 0 divergent"),
        "{last}"
    );
}

#[test]
fn without_kvm_it_fails_with_one_line() {
    let r = twinvm(
        &[
            "fuzz-diff",
            "--count",
            "10",
            "--kvm-device",
            "/nonexistent/kvm",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(r.status, twinvm::error::status::KVM_UNAVAILABLE);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/kvm"), "{}", r.stderr);
}

#[test]
fn the_departures_table_is_printable() {
    let r = twinvm(&["fuzz-diff", "--list-departures"], Duration::from_secs(30));
    assert_eq!(r.status, 0);
    assert!(
        r.stdout.contains("software interrupts [excluded]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("[recognised in results]"), "{}", r.stdout);
}
