//! The JUnit XML report: one <testsuite> per engine, the engine as classname.

use std::fmt::Write;

use super::json::tail;
use super::results::{Shown, TestResult};
use super::EngineInfo;

/// Text or attribute content: markup escaped, characters XML 1.0 forbids replaced.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

pub fn render(engines: &[EngineInfo], results: &[TestResult]) -> String {
    let mut o = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"twinvm conform\">\n",
    );
    for (ei, e) in engines.iter().enumerate() {
        let cells: Vec<(&TestResult, &super::results::Cell)> = results
            .iter()
            .filter_map(|r| r.cells.get(ei).map(|c| (r, c)))
            .collect();
        let count =
            |f: &dyn Fn(&super::results::Cell) -> bool| cells.iter().filter(|(_, c)| f(c)).count();
        // A pass whose output differs from the reference engine is a failure of the suite.
        let failures = count(&|c| {
            c.shown() == Shown::Fail || (c.shown() == Shown::Pass && c.difference.is_some())
        });
        let errors = count(&|c| c.shown() == Shown::Timeout);
        let skipped = count(&|c| matches!(c.shown(), Shown::Skip | Shown::KnownDeviation));
        let time: f64 = cells.iter().map(|(_, c)| c.elapsed.as_secs_f64()).sum();
        let _ = writeln!(
            o,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
            escape(&e.name),
            cells.len()
        );
        for (r, c) in cells {
            let _ = write!(
                o,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                escape(&r.spec.name),
                escape(&c.engine),
                c.elapsed.as_secs_f64()
            );
            let body = match c.shown() {
                Shown::Pass => c
                    .difference
                    .as_ref()
                    .map(|d| format!("<failure message=\"engines disagree: {}\"/>", escape(d))),
                Shown::Fail => Some(format!(
                    "<failure message=\"{}\"/>",
                    escape(&c.verdict.reason)
                )),
                Shown::Timeout => Some(format!(
                    "<error type=\"timeout\" message=\"{}\"/>",
                    escape(&c.verdict.reason)
                )),
                Shown::Skip => Some(format!(
                    "<skipped message=\"{}\"/>",
                    escape(&c.verdict.reason)
                )),
                Shown::KnownDeviation => Some(format!(
                    "<skipped message=\"known deviation: {}; {}\"/>",
                    escape(c.deviation.as_deref().unwrap_or("")),
                    escape(&c.verdict.reason)
                )),
            };
            match body {
                None => o.push_str("/>\n"),
                Some(b) => {
                    let _ = write!(o, ">\n      {b}\n");
                    if c.shown() != Shown::Skip {
                        let _ = writeln!(
                            o,
                            "      <system-out>{}</system-out>",
                            escape(&tail(&c.stdout, 40))
                        );
                        if !c.stderr.is_empty() {
                            let _ = writeln!(
                                o,
                                "      <system-err>{}</system-err>",
                                escape(&tail(&c.stderr, 10))
                            );
                        }
                    }
                    o.push_str("    </testcase>\n");
                }
            }
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1b}[0m\n"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}[0m\n"
        );
    }
}
