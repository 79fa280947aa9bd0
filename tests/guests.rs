//! Boots every firmware test guest on the interpreter and checks its verdict.

mod common;

use std::time::Duration;

use common::{assert_guest_passed, firmware, twinvm};

const LIMIT: Duration = Duration::from_secs(120);

fn run_kernel(name: &str) {
    let path = firmware(&format!("{name}.elf"));
    let r = twinvm(
        &[
            "run",
            "--no-reboot",
            "--kernel",
            path.to_str().expect("utf-8 path"),
        ],
        LIMIT,
    );
    assert_guest_passed(name, &r);
}

#[test]
fn hello_greets_and_powers_off() {
    let path = firmware("hello.elf");
    let r = twinvm(
        &["run", "--kernel", path.to_str().expect("utf-8 path")],
        LIMIT,
    );
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert!(
        r.stdout
            .contains("Hello from twinvm guest (64-bit long mode)"),
        "stdout: {}",
        r.stdout
    );
}

#[test]
fn builtin_demo_guest_runs_without_arguments() {
    let r = twinvm(&["run"], LIMIT);
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert!(
        r.stdout.contains("Hello from twinvm guest"),
        "stdout: {}",
        r.stdout
    );
}

#[test]
fn arith() {
    run_kernel("arith");
}

#[test]
fn control() {
    run_kernel("control");
}

#[test]
fn segments() {
    run_kernel("segments");
}

#[test]
fn gates() {
    run_kernel("gates");
}

#[test]
fn tasks() {
    run_kernel("tasks");
}

#[test]
fn string() {
    run_kernel("string");
}

#[test]
fn modes() {
    run_kernel("modes");
}

#[test]
fn gdbtest_runs_on_its_own() {
    run_kernel("gdbtest");
}

#[test]
fn paging() {
    run_kernel("paging");
}

#[test]
fn tlb() {
    run_kernel("tlb");
}

#[test]
fn modes2() {
    run_kernel("modes2");
}

#[test]
fn bcd16_real_mode_firmware() {
    let path = firmware("bcd16.rom");
    let r = twinvm(
        &[
            "run",
            "--no-reboot",
            "--firmware",
            path.to_str().expect("utf-8 path"),
        ],
        LIMIT,
    );
    assert_guest_passed("bcd16", &r);
}

#[test]
fn stats_report_instructions() {
    let path = firmware("hello.elf");
    let r = twinvm(
        &[
            "run",
            "--stats",
            "--kernel",
            path.to_str().expect("utf-8 path"),
        ],
        LIMIT,
    );
    assert_eq!(r.status, 0);
    let line = r
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("instructions"))
        .expect("instructions line");
    let n: u64 = line
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .expect("a count");
    assert!(n > 100, "{line}");
    assert!(r.stderr.contains("guest MIPS"));
}
