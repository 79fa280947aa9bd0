//! The human-readable report: a table test × engine, the notes behind it, a summary line.

use std::fmt::Write;

use super::diff::clip;
use super::results::{Agreement, Shown, TestResult, Totals};
use super::EngineInfo;

fn cell_text(r: &TestResult, i: usize) -> String {
    let c = &r.cells[i];
    match c.shown() {
        Shown::Skip => "skip".to_string(),
        s => format!("{:<9} {:>7.2}s", s.name(), c.elapsed.as_secs_f64()),
    }
}

pub fn render(engines: &[EngineInfo], results: &[TestResult]) -> String {
    let mut out = String::new();
    let name_w = results
        .iter()
        .map(|r| r.spec.name.chars().count())
        .chain(std::iter::once(4))
        .max()
        .unwrap_or(4);
    let col_w = engines
        .iter()
        .map(|e| e.name.len())
        .chain(std::iter::once(18))
        .max()
        .unwrap_or(18);
    let many = engines.len() > 1;
    let _ = write!(out, "{:<name_w$}", "test");
    for e in engines {
        let _ = write!(out, "  {:<col_w$}", e.name);
    }
    if many {
        out.push_str("  engines");
    }
    out.push('\n');
    for r in results {
        let _ = write!(out, "{:<name_w$}", r.spec.name);
        for i in 0..r.cells.len() {
            let _ = write!(out, "  {:<col_w$}", cell_text(r, i));
        }
        if many {
            out.push_str(match r.agreement {
                Agreement::Alone => "  -",
                Agreement::Agree => "  agree",
                Agreement::Named => "  known deviation",
                Agreement::Unnamed => "  DISAGREE",
            });
        }
        out.push('\n');
    }

    let mut notes = Vec::new();
    for e in engines {
        if let Some(why) = &e.skip_reason {
            notes.push(format!("{}: engine skipped: {why}", e.name));
        }
    }
    for r in results {
        for c in &r.cells {
            let who = format!("{} [{}]", r.spec.name, c.engine);
            match c.shown() {
                Shown::Fail | Shown::Timeout => {
                    notes.push(format!("{who}: {}", clip(&c.verdict.reason, 160)))
                }
                Shown::KnownDeviation => notes.push(format!(
                    "{who}: known deviation ({}): {}",
                    c.deviation.as_deref().unwrap_or(""),
                    clip(&c.verdict.reason, 120)
                )),
                Shown::Skip
                    if engines
                        .iter()
                        .all(|e| e.name != c.engine || e.skip_reason.is_none()) =>
                {
                    notes.push(format!("{who}: skipped: {}", c.verdict.reason))
                }
                _ => {}
            }
            if let Some(d) = &c.difference {
                let tag = if c.deviation.is_some() {
                    "named"
                } else {
                    "UNNAMED"
                };
                notes.push(format!(
                    "{}: engines differ ({tag}): {}",
                    r.spec.name,
                    clip(d, 200)
                ));
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    let t = Totals::of(results);
    let _ = writeln!(
        out,
        "\nconform: {} tests × {} engines: {} passed, {} failed, {} timed out, {} skipped, \
         {} known deviations, {} unnamed disagreements",
        results.len(),
        engines.len(),
        t.pass,
        t.fail,
        t.timeout,
        t.skip,
        t.known,
        t.unnamed_disagreements
    );
    out
}
