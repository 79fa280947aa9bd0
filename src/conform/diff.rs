//! The first difference between two serial outputs, in one line.

/// Cuts a line to at most `max` characters for a one-line message.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// `None` when equal; otherwise where they first differ and both lines there.
pub fn first_line_difference(a: &[u8], b: &[u8], a_name: &str, b_name: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    let mut la = a.split_inclusive('\n');
    let mut lb = b.split_inclusive('\n');
    let mut n = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                let show = |l: Option<&str>| match l {
                    Some(l) => format!("{:?}", clip(l, 100)),
                    None => "<end of output>".to_string(),
                };
                return Some(format!(
                    "serial output differs at line {n}: {a_name} {} vs {b_name} {}",
                    show(x),
                    show(y)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_first_line() {
        assert_eq!(first_line_difference(b"a\nb\n", b"a\nb\n", "x", "y"), None);
        let d =
            first_line_difference(b"a\nb\nc\n", b"a\nB\nc\n", "interp", "kvm").expect("differs");
        assert_eq!(
            d,
            "serial output differs at line 2: interp \"b\\n\" vs kvm \"B\\n\""
        );
        let d = first_line_difference(b"a\n", b"a\nmore\n", "x", "y").expect("differs");
        assert!(
            d.contains("line 2: x <end of output> vs y \"more\\n\""),
            "{d}"
        );
        // A missing final newline is a difference too.
        assert!(first_line_difference(b"a", b"a\n", "x", "y").is_some());
    }
}
