//! Bad input gets one clear error line and a non-zero status, never a panic.

mod common;

use std::time::Duration;

use common::twinvm;

const LIMIT: Duration = Duration::from_secs(30);

fn assert_clean_error(args: &[&str], needle: &str) {
    let r = twinvm(args, LIMIT);
    assert_ne!(r.status, 0, "{args:?} should fail");
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one error line, got:\n{}",
        r.stderr
    );
    assert!(
        lines[0].contains(needle),
        "{args:?}: '{}' does not mention '{needle}'",
        lines[0]
    );
}

#[test]
fn missing_kernel_file() {
    assert_clean_error(&["run", "--kernel", "/nonexistent"], "/nonexistent");
}

#[test]
fn zero_memory() {
    assert_clean_error(&["run", "--mem", "0"], "--mem");
}

#[test]
fn memory_beyond_the_host() {
    assert_clean_error(&["run", "--mem", "64T"], "--mem");
}

#[test]
fn random_bytes_as_kernel() {
    let dir = std::env::temp_dir().join(format!("twinvm-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("random.bin");
    // A fixed pseudo-random MiB, so the test is repeatable.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, bytes).expect("write");
    assert_clean_error(
        &["run", "--kernel", path.to_str().expect("utf-8")],
        "multiboot",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kernel_larger_than_memory() {
    let dir = std::env::temp_dir().join(format!("twinvm-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("big.bin");
    std::fs::write(&path, vec![0x90u8; 3 << 20]).expect("write");
    assert_clean_error(
        &[
            "run",
            "--mem",
            "2M",
            "--flat-addr",
            "0x100000",
            "--kernel",
            path.to_str().expect("utf-8"),
        ],
        "does not fit",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_serial_target() {
    assert_clean_error(&["run", "--serial", "tcp:1"], "--serial");
}
