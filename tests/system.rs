//! System-side CPU behaviour seen from outside: triple fault with and without --no-reboot,
//! --icount determinism, and the exception/privilege/debug guests.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_guest_passed, firmware, twinvm};

const LIMIT: Duration = Duration::from_secs(120);

fn kernel(name: &str) -> String {
    firmware(&format!("{name}.elf"))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn run_kernel(name: &str) {
    let r = twinvm(&["run", "--no-reboot", "--kernel", &kernel(name)], LIMIT);
    assert_guest_passed(name, &r);
}

#[test]
fn timer() {
    run_kernel("timer");
}

#[test]
fn faults() {
    run_kernel("faults");
}

#[test]
fn privilege() {
    run_kernel("privilege");
}

#[test]
fn syscall() {
    run_kernel("syscall");
}

#[test]
fn debug() {
    run_kernel("debug");
}

fn instructions(stderr: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("instructions"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no instructions line in:\n{stderr}"))
}

#[test]
fn icount_runs_repeat_exactly() {
    let k = kernel("timer");
    let args = ["run", "--no-reboot", "--icount", "--stats", "--kernel", &k];
    let a = twinvm(&args, LIMIT);
    let b = twinvm(&args, LIMIT);
    assert_guest_passed("timer (icount)", &a);
    assert!(
        a.stdout.contains("# pit ticks monotonic tsc:"),
        "{}",
        a.stdout
    );
    assert_eq!(
        a.stdout, b.stdout,
        "serial output differs between --icount runs"
    );
    assert_eq!(instructions(&a.stderr), instructions(&b.stderr));
}

/// The address the triple guest prints before faulting ("# ud2 at 0x…").
fn ud2_address(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("# ud2 at "))
        .unwrap_or_else(|| panic!("no address line in:\n{stdout}"))
        .trim()
        .to_string()
}

#[test]
fn triple_fault_with_no_reboot_stops_with_status_4() {
    let r = twinvm(
        &["run", "--no-reboot", "--kernel", &kernel("triple")],
        LIMIT,
    );
    assert_eq!(r.status, 4, "stderr: {}", r.stderr);
    let want = format!("triple fault at 0x18:{}", ud2_address(&r.stdout));
    assert!(r.stderr.contains(&want), "want {want:?} in {}", r.stderr);
}

#[test]
fn triple_fault_without_no_reboot_resets_and_runs_again() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinvm"))
        .args(["run", "--kernel", &kernel("triple")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn twinvm");
    let mut out = child.stdout.take().expect("stdout");
    let start = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let greeting = "triple: booted";
    while seen.matches(greeting).count() < 3 && start.elapsed() < LIMIT {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let still_running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.matches(greeting).count() >= 3,
        "the guest did not boot again after its triple fault:\n{seen}"
    );
    assert!(still_running, "twinvm exited instead of resetting");
}
