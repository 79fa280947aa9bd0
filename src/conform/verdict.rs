//! A test's verdict on one engine, from the exit status and the serial output.

use super::runner::ChildResult;
use super::spec::Expect;
use crate::error::status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pass,
    Fail,
    Timeout,
    Skip,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pass => "pass",
            Kind::Fail => "fail",
            Kind::Timeout => "timeout",
            Kind::Skip => "skip",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub kind: Kind,
    /// One line: why (the first FAIL line, the status, the time limit…).
    pub reason: String,
}

impl Verdict {
    pub fn new(kind: Kind, reason: impl Into<String>) -> Verdict {
        Verdict {
            kind,
            reason: reason.into(),
        }
    }
}

/// What the guest said about itself on its serial port.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SerialReport {
    pub passes: usize,
    /// The first `FAIL` line and how many there were.
    pub first_fail: Option<String>,
    pub fails: usize,
    /// From a `SUMMARY: N tests, M unexpected failures` line, as kvm-unit-tests prints it.
    pub summary: Option<(u64, u64)>,
}

impl SerialReport {
    pub fn parse(out: &str) -> SerialReport {
        let mut r = SerialReport::default();
        for line in out.lines() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("FAIL") {
                if rest.is_empty() || rest.starts_with([' ', ':']) {
                    r.fails += 1;
                    r.first_fail.get_or_insert_with(|| l.trim_end().to_string());
                }
            } else if let Some(rest) = l.strip_prefix("PASS") {
                if rest.is_empty() || rest.starts_with([' ', ':']) {
                    r.passes += 1;
                }
            } else if let Some(rest) = l.strip_prefix("SUMMARY:") {
                r.summary = parse_summary(rest).or(r.summary);
            }
        }
        r
    }

    fn guest_failed(&self) -> bool {
        self.fails > 0 || self.summary.is_some_and(|(_, f)| f > 0)
    }
}

/// `" 10 tests, 2 unexpected failures, 1 skipped"` → (10, 2).
fn parse_summary(s: &str) -> Option<(u64, u64)> {
    let mut tests = None;
    let mut failures = 0;
    for part in s.split(',') {
        let mut w = part.split_whitespace();
        let n: u64 = w.next()?.parse().ok()?;
        match w.next() {
            Some("tests") | Some("test") => tests = Some(n),
            Some("unexpected") => failures = n,
            _ => {}
        }
    }
    tests.map(|t| (t, failures))
}

/// A process status in words.
pub fn describe_status(r: &ChildResult) -> String {
    match (r.status, r.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(0), _) => "status 0 (power-off)".into(),
        (Some(s), _) if s & 1 == 1 => format!("status {s} (isa-debug-exit {})", s >> 1),
        (Some(status::TRIPLE_FAULT), _) => {
            format!("status {} (triple fault)", status::TRIPLE_FAULT)
        }
        (Some(s), _) => format!("status {s} ({})", last_error(&r.stderr)),
        (None, None) => "no exit status".into(),
    }
}

/// The error twinvm printed (its last non-empty stderr line).
pub fn last_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // clap prints "error: …" first and usage hints after it.
    lines
        .iter()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no message".into())
}

/// Judges one finished run against the expectation.
pub fn judge(r: &ChildResult, expect: Expect, limit_secs: f64) -> Verdict {
    if r.timed_out {
        return Verdict::new(
            Kind::Timeout,
            format!("timeout: no result within {limit_secs} s; process group killed"),
        );
    }
    let serial = SerialReport::parse(&String::from_utf8_lossy(&r.stdout));
    let st = describe_status(r);
    let guest_ok = matches!(r.status, Some(0) | Some(1)) && r.signal.is_none();
    match expect {
        Expect::Pass => {
            if let Some(f) = &serial.first_fail {
                let more = if serial.fails > 1 {
                    format!(" (+{} more)", serial.fails - 1)
                } else {
                    String::new()
                };
                Verdict::new(Kind::Fail, format!("{f}{more}; {st}"))
            } else if let Some((n, f)) = serial.summary.filter(|s| s.1 > 0) {
                Verdict::new(
                    Kind::Fail,
                    format!("SUMMARY: {n} tests, {f} unexpected failures; {st}"),
                )
            } else if !guest_ok {
                Verdict::new(Kind::Fail, st)
            } else {
                Verdict::new(Kind::Pass, format!("{} PASS; {st}", serial.passes))
            }
        }
        Expect::Fail => {
            let reported =
                serial.guest_failed() || matches!(r.status, Some(s) if s & 1 == 1 && s != 1);
            if reported {
                Verdict::new(Kind::Pass, format!("failed as expected; {st}"))
            } else {
                Verdict::new(Kind::Fail, format!("expected a failure report; {st}"))
            }
        }
        Expect::Exit(want) => {
            if r.status == Some(want) && r.signal.is_none() {
                Verdict::new(Kind::Pass, format!("{st}, as expected"))
            } else {
                Verdict::new(Kind::Fail, format!("{st}; expected status {want}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(status: Option<i32>, out: &str) -> ChildResult {
        ChildResult {
            status,
            signal: None,
            timed_out: false,
            stdout: out.as_bytes().to_vec(),
            stderr: b"twinvm: triple fault at 0x8:0x1234\n".to_vec(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn pass_needs_status_and_no_fail_lines() {
        assert_eq!(
            judge(&run(Some(1), "PASS a\nPASS b\n"), Expect::Pass, 1.0).kind,
            Kind::Pass
        );
        assert_eq!(
            judge(&run(Some(0), "hello\n"), Expect::Pass, 1.0).kind,
            Kind::Pass
        );
        let v = judge(
            &run(Some(1), "PASS a\nFAIL b: x\nFAIL c\n"),
            Expect::Pass,
            1.0,
        );
        assert_eq!(v.kind, Kind::Fail);
        assert!(v.reason.starts_with("FAIL b: x (+1 more)"), "{}", v.reason);
        assert_eq!(
            judge(&run(Some(3), "PASS a\n"), Expect::Pass, 1.0).kind,
            Kind::Fail
        );
        let v = judge(&run(Some(4), ""), Expect::Pass, 1.0);
        assert_eq!(v.kind, Kind::Fail);
        assert!(v.reason.contains("triple fault"), "{}", v.reason);
        // Words that merely start with the letters do not count.
        assert_eq!(
            judge(&run(Some(1), "FAILURES none\nXFAIL x\n"), Expect::Pass, 1.0).kind,
            Kind::Pass
        );
    }

    #[test]
    fn summary_line() {
        let out = "PASS: x\nSUMMARY: 12 tests, 2 unexpected failures, 1 skipped\n";
        let v = judge(&run(Some(1), out), Expect::Pass, 1.0);
        assert_eq!(v.kind, Kind::Fail);
        assert!(v.reason.contains("12 tests, 2 unexpected"), "{}", v.reason);
        let ok = "SUMMARY: 12 tests\n";
        assert_eq!(judge(&run(Some(1), ok), Expect::Pass, 1.0).kind, Kind::Pass);
        assert_eq!(
            parse_summary(" 5 tests, 0 unexpected failures"),
            Some((5, 0))
        );
    }

    #[test]
    fn expectations_override() {
        assert_eq!(
            judge(&run(Some(3), "FAIL x\n"), Expect::Fail, 1.0).kind,
            Kind::Pass
        );
        assert_eq!(
            judge(&run(Some(1), "PASS x\n"), Expect::Fail, 1.0).kind,
            Kind::Fail
        );
        assert_eq!(
            judge(&run(Some(4), ""), Expect::Exit(4), 1.0).kind,
            Kind::Pass
        );
        assert_eq!(
            judge(&run(Some(1), ""), Expect::Exit(4), 1.0).kind,
            Kind::Fail
        );
    }

    #[test]
    fn timeout_and_signal() {
        let mut r = run(None, "");
        r.timed_out = true;
        let v = judge(&r, Expect::Pass, 2.0);
        assert_eq!(v.kind, Kind::Timeout);
        assert!(v.reason.starts_with("timeout"));
        r.timed_out = false;
        r.signal = Some(11);
        let v = judge(&r, Expect::Pass, 2.0);
        assert_eq!(v, Verdict::new(Kind::Fail, "killed by signal 11"));
    }
}
