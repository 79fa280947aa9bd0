//! Running the twinvm binary from integration tests.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn firmware(name: &str) -> PathBuf {
    PathBuf::from(env!("TWINVM_FIRMWARE_DIR")).join(name)
}

/// Runs `twinvm ARGS…` with no stdin, killing it after `limit`.
pub fn twinvm(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinvm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn twinvm");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "twinvm {args:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts that a self-checking guest printed only PASS lines (at least one) and reported
/// success through isa-debug-exit (value 0 → status 1).
pub fn assert_guest_passed(name: &str, r: &Run) {
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let fails: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    let passes = lines.iter().filter(|l| l.starts_with("PASS")).count();
    assert!(
        fails.is_empty() && passes > 0 && r.status == 1,
        "guest {name}: status {} (want 1), {passes} PASS, failures:\n{}\nstderr:\n{}\nstdout:\n{}",
        r.status,
        fails
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        r.stderr,
        r.stdout
    );
}
