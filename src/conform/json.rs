//! The JSON report, written by hand (no serializer dependency for one flat document).

use std::fmt::Write;

use super::results::{Agreement, Shown, TestResult, Totals};
use super::EngineInfo;

/// A JSON string literal.
pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), string)
}

/// The last `n` lines of a serial output (what a reader needs to see why it failed).
pub fn tail(out: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn render(engines: &[EngineInfo], results: &[TestResult], exit_status: i32) -> String {
    let mut o = String::from("{\n  \"engines\": [");
    for (i, e) in engines.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(
            o,
            "{sep}{{\"name\": {}, \"available\": {}, \"skip_reason\": {}}}",
            string(&e.name),
            e.skip_reason.is_none(),
            opt(e.skip_reason.as_deref())
        );
    }
    o.push_str("],\n  \"tests\": [");
    for (i, r) in results.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let agreement = match r.agreement {
            Agreement::Alone => "alone",
            Agreement::Agree => "agree",
            Agreement::Named => "known-deviation",
            Agreement::Unnamed => "disagree",
        };
        let _ = write!(
            o,
            "{sep}\n    {{\"name\": {}, \"image\": {}, \"origin\": {}, \"agreement\": {}, \"results\": [",
            string(&r.spec.name),
            string(&r.spec.image.display().to_string()),
            string(&r.spec.origin),
            string(agreement)
        );
        for (j, c) in r.cells.iter().enumerate() {
            let sep = if j > 0 { "," } else { "" };
            let shown = match c.shown() {
                Shown::KnownDeviation => "known-deviation",
                _ => c.verdict.kind.name(),
            };
            let (serial_tail, stderr_tail) = if matches!(c.shown(), Shown::Pass | Shown::Skip) {
                (None, None)
            } else {
                (Some(tail(&c.stdout, 20)), Some(tail(&c.stderr, 5)))
            };
            let _ = write!(
                o,
                "{sep}\n      {{\"engine\": {}, \"verdict\": {}, \"reason\": {}, \"status\": {}, \
                 \"time\": {:.3}, \"serial_bytes\": {}, \"difference\": {}, \"deviation\": {}, \
                 \"serial_tail\": {}, \"stderr_tail\": {}}}",
                string(&c.engine),
                string(shown),
                string(&c.verdict.reason),
                c.status
                    .map_or_else(|| "null".to_string(), |s| s.to_string()),
                c.elapsed.as_secs_f64(),
                c.stdout.len(),
                opt(c.difference.as_deref()),
                opt(c.deviation.as_deref()),
                opt(serial_tail.as_deref()),
                opt(stderr_tail.as_deref())
            );
        }
        o.push_str("\n    ]}");
    }
    let t = Totals::of(results);
    let _ = write!(
        o,
        "\n  ],\n  \"summary\": {{\"tests\": {}, \"pass\": {}, \"fail\": {}, \"timeout\": {}, \
         \"skip\": {}, \"known_deviation\": {}, \"unnamed_disagreements\": {}, \
         \"exit_status\": {exit_status}}}\n}}\n",
        results.len(),
        t.pass,
        t.fail,
        t.timeout,
        t.skip,
        t.known,
        t.unnamed_disagreements
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
