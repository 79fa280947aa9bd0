//! Results of every test on every engine, and where the engines disagree.

use std::time::Duration;

use super::diff::first_line_difference;
use super::spec::TestSpec;
use super::verdict::{Kind, Verdict};

/// One test on one engine.
#[derive(Clone, Debug)]
pub struct Cell {
    pub engine: String,
    pub verdict: Verdict,
    pub elapsed: Duration,
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How this engine differs from the reference engine (the first one that ran).
    pub difference: Option<String>,
    /// The manifest's reason, when this engine has a named deviation here and it showed.
    pub deviation: Option<String>,
}

/// What a cell shows: a named deviation is never shown as a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Pass,
    Fail,
    Timeout,
    Skip,
    KnownDeviation,
}

impl Shown {
    pub fn name(self) -> &'static str {
        match self {
            Shown::Pass => "pass",
            Shown::Fail => "FAIL",
            Shown::Timeout => "TIMEOUT",
            Shown::Skip => "skip",
            Shown::KnownDeviation => "known-dev",
        }
    }
}

impl Cell {
    pub fn skipped(engine: &str, reason: String) -> Cell {
        Cell {
            engine: engine.to_string(),
            verdict: Verdict::new(Kind::Skip, reason),
            elapsed: Duration::ZERO,
            status: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            difference: None,
            deviation: None,
        }
    }

    pub fn shown(&self) -> Shown {
        match (self.verdict.kind, &self.deviation) {
            (Kind::Skip, _) => Shown::Skip,
            (_, Some(_)) => Shown::KnownDeviation,
            (Kind::Pass, None) => Shown::Pass,
            (Kind::Fail, None) => Shown::Fail,
            (Kind::Timeout, None) => Shown::Timeout,
        }
    }
}

/// Whether the engines that ran a test agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Fewer than two engines ran it.
    Alone,
    Agree,
    /// They differ only where the manifest names a deviation.
    Named,
    /// They differ outside the named deviations: a bug in one engine.
    Unnamed,
}

pub struct TestResult {
    pub spec: TestSpec,
    pub cells: Vec<Cell>,
    pub agreement: Agreement,
}

impl TestResult {
    /// Compares every engine with the first one that ran, marks named deviations.
    pub fn settle(spec: TestSpec, mut cells: Vec<Cell>) -> TestResult {
        let ran: Vec<usize> = (0..cells.len())
            .filter(|&i| cells[i].verdict.kind != Kind::Skip)
            .collect();
        let mut agreement = if ran.len() < 2 {
            Agreement::Alone
        } else {
            Agreement::Agree
        };
        if let Some((&r, others)) = ran.split_first() {
            for &j in others {
                let (a, b) = (&cells[r], &cells[j]);
                let diff = if a.verdict.kind != b.verdict.kind {
                    Some(format!(
                        "verdict {} on {}, {} on {}",
                        a.verdict.kind.name(),
                        a.engine,
                        b.verdict.kind.name(),
                        b.engine
                    ))
                } else if a.verdict.kind != Kind::Timeout {
                    // A timed-out run's output is cut at an arbitrary point: not compared.
                    first_line_difference(&a.stdout, &b.stdout, &a.engine, &b.engine)
                } else {
                    None
                };
                let Some(diff) = diff else { continue };
                let named = spec.deviation(&cells[j].engine).is_some()
                    || spec.deviation(&cells[r].engine).is_some();
                for k in [r, j] {
                    if let Some(d) = spec.deviation(&cells[k].engine) {
                        cells[k].deviation = Some(d.to_string());
                    }
                }
                cells[j].difference = Some(diff);
                agreement = match (agreement, named) {
                    (Agreement::Unnamed, _) | (_, false) => Agreement::Unnamed,
                    _ => Agreement::Named,
                };
            }
        }
        // A named deviation also covers a failure the engine shows on its own.
        for c in cells.iter_mut() {
            if matches!(c.verdict.kind, Kind::Fail | Kind::Timeout) && c.deviation.is_none() {
                c.deviation = spec.deviation(&c.engine).map(str::to_string);
            }
        }
        TestResult {
            spec,
            cells,
            agreement,
        }
    }
}

/// Counts over all results, and the runner's exit status.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub timeout: usize,
    pub skip: usize,
    pub known: usize,
    pub unnamed_disagreements: usize,
    pub named_disagreements: usize,
}

/// Exit statuses of `twinvm conform`.
pub mod exit {
    pub const ALL_PASSED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = crate::error::status::BAD_INPUT;
    /// Nothing failed, but something did not run (an engine or a test was skipped).
    pub const SKIPPED: i32 = 3;
}

impl Totals {
    pub fn of(results: &[TestResult]) -> Totals {
        let mut t = Totals::default();
        for r in results {
            for c in &r.cells {
                match c.shown() {
                    Shown::Pass => t.pass += 1,
                    Shown::Fail => t.fail += 1,
                    Shown::Timeout => t.timeout += 1,
                    Shown::Skip => t.skip += 1,
                    Shown::KnownDeviation => t.known += 1,
                }
            }
            match r.agreement {
                Agreement::Unnamed => t.unnamed_disagreements += 1,
                Agreement::Named => t.named_disagreements += 1,
                _ => {}
            }
        }
        t
    }

    pub fn exit_status(&self) -> i32 {
        if self.fail + self.timeout + self.unnamed_disagreements > 0 {
            exit::FAILED
        } else if self.skip > 0 {
            exit::SKIPPED
        } else {
            exit::ALL_PASSED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conform::spec::{ImageKind, TestSpec};

    fn cell(engine: &str, kind: Kind, out: &str) -> Cell {
        Cell {
            engine: engine.into(),
            verdict: Verdict::new(kind, "r"),
            elapsed: Duration::ZERO,
            status: Some(1),
            stdout: out.as_bytes().to_vec(),
            stderr: Vec::new(),
            difference: None,
            deviation: None,
        }
    }

    fn spec(devs: &[(&str, &str)]) -> TestSpec {
        let mut s = TestSpec::image("t".into(), ImageKind::Kernel, "t.elf".into());
        s.deviations = devs
            .iter()
            .map(|(e, r)| (e.to_string(), r.to_string()))
            .collect();
        s
    }

    #[test]
    fn identical_engines_agree() {
        let r = TestResult::settle(
            spec(&[]),
            vec![
                cell("interp", Kind::Pass, "PASS a\n"),
                cell("kvm", Kind::Pass, "PASS a\n"),
            ],
        );
        assert_eq!(r.agreement, Agreement::Agree);
        assert_eq!(Totals::of(&[r]).exit_status(), exit::ALL_PASSED);
    }

    #[test]
    fn output_difference_is_unnamed_without_deviation() {
        let r = TestResult::settle(
            spec(&[]),
            vec![
                cell("interp", Kind::Pass, "PASS a\n"),
                cell("kvm", Kind::Pass, "PASS b\n"),
            ],
        );
        assert_eq!(r.agreement, Agreement::Unnamed);
        assert!(r.cells[1]
            .difference
            .as_deref()
            .unwrap_or("")
            .contains("line 1"));
        // Both passed, yet the runner fails: the engines disagree.
        assert_eq!(Totals::of(&[r]).exit_status(), exit::FAILED);
    }

    #[test]
    fn named_deviation_is_shown_never_as_pass() {
        let r = TestResult::settle(
            spec(&[("kvm", "this host's KVM fails POPCNT in ring 0")]),
            vec![
                cell("interp", Kind::Pass, "PASS a\n"),
                cell("kvm", Kind::Fail, "FAIL a\n"),
            ],
        );
        assert_eq!(r.agreement, Agreement::Named);
        assert_eq!(r.cells[0].shown(), Shown::Pass);
        assert_eq!(r.cells[1].shown(), Shown::KnownDeviation);
        let t = Totals::of(&[r]);
        assert_eq!((t.pass, t.known), (1, 1));
        assert_eq!(t.exit_status(), exit::ALL_PASSED);
    }

    #[test]
    fn skips_are_not_compared_but_not_passes() {
        let mut k = cell("kvm", Kind::Skip, "");
        k.verdict.reason = "no /dev/kvm".into();
        let r = TestResult::settle(spec(&[]), vec![cell("interp", Kind::Pass, "x"), k]);
        assert_eq!(r.agreement, Agreement::Alone);
        assert_eq!(Totals::of(&[r]).exit_status(), exit::SKIPPED);
    }

    #[test]
    fn timeouts_fail() {
        let r = TestResult::settle(spec(&[]), vec![cell("interp", Kind::Timeout, "")]);
        assert_eq!(r.cells[0].shown(), Shown::Timeout);
        assert_eq!(Totals::of(&[r]).exit_status(), exit::FAILED);
    }
}
