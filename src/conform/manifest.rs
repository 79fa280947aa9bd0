//! The manifest: a line-based list of tests.
//!
//! ```text
//! # comment
//! images = build            # optional, before the first test: image directory
//! timeout = 60              # optional default time limit for this manifest's tests
//!
//! [arith]                   # a test's name
//! kernel = arith.elf        # or: firmware = bcd16.rom
//! append = a b c            # --append; also initrd (repeatable), mem, smp, flat-addr, entry
//! expect = pass             # pass (default) | fail | exit N | triple-fault
//! timeout = 30              # seconds; timeout.kvm = 300 for one engine
//! deviation.kvm = why this engine differs here
//! ```

use std::path::{Path, PathBuf};

use super::spec::{Expect, ImageKind, TestSpec};
use crate::error::status;

/// Parses manifest `text` read from `path`. Relative image paths are resolved against
/// `images_dir` when given, else against the manifest's `images` key, else its folder.
pub fn parse(text: &str, path: &Path, images_dir: Option<&Path>) -> Result<Vec<TestSpec>, String> {
    let here = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut base = images_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.clone());
    let mut default_timeout = None;
    let mut tests: Vec<(TestSpec, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let at = |msg: String| format!("{}:{lineno}: {msg}", path.display());
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
                .ok_or_else(|| at(format!("'{line}': expected [name] (no spaces)")))?;
            if tests.iter().any(|(t, _)| t.name == name) {
                return Err(at(format!("test '{name}' is defined twice")));
            }
            let mut t = TestSpec::image(name.to_string(), ImageKind::Kernel, PathBuf::new());
            t.origin = format!("{}:{lineno}", path.display());
            t.timeout = default_timeout;
            tests.push((t, lineno));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), unquote(v.trim())))
            .ok_or_else(|| at(format!("'{line}': expected key = value or [name]")))?;
        let Some((t, _)) = tests.last_mut() else {
            match key {
                "images" if images_dir.is_none() => base = here.join(value),
                "images" => {}
                "timeout" => default_timeout = Some(parse_secs(value).map_err(at)?),
                _ => {
                    return Err(at(format!(
                        "'{key}' before the first [test] (only images and timeout go there)"
                    )))
                }
            }
            continue;
        };
        set_key(t, key, value, &base).map_err(at)?;
    }
    let mut out = Vec::with_capacity(tests.len());
    for (t, lineno) in tests {
        if t.image.as_os_str().is_empty() {
            return Err(format!(
                "{}:{lineno}: test '{}' has neither kernel nor firmware",
                path.display(),
                t.name
            ));
        }
        if !t.image.is_file() {
            return Err(format!(
                "{}: test '{}': image {} not found (built yet? `make -C firmware` builds the firmware guests)",
                t.origin,
                t.name,
                t.image.display()
            ));
        }
        out.push(t);
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn parse_secs(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!(
            "timeout '{v}': expected a positive number of seconds"
        )),
    }
}

fn parse_expect(v: &str) -> Result<Expect, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    match words.as_slice() {
        ["pass"] => Ok(Expect::Pass),
        ["fail"] => Ok(Expect::Fail),
        ["triple-fault"] => Ok(Expect::Exit(status::TRIPLE_FAULT)),
        ["exit", n] => n
            .parse()
            .map(Expect::Exit)
            .map_err(|_| format!("expect '{v}': exit status must be a number")),
        _ => Err(format!(
            "expect '{v}': expected pass, fail, triple-fault or exit N"
        )),
    }
}

fn set_key(t: &mut TestSpec, key: &str, value: &str, base: &Path) -> Result<(), String> {
    match key {
        "kernel" | "firmware" => {
            if !t.image.as_os_str().is_empty() {
                return Err("a test has one image: kernel or firmware, once".to_string());
            }
            t.kind = if key == "kernel" {
                ImageKind::Kernel
            } else {
                ImageKind::Firmware
            };
            t.image = base.join(value);
        }
        "initrd" => t.initrd.push(base.join(value)),
        "append" => t.append = Some(value.to_string()),
        "mem" => t.mem = Some(value.to_string()),
        "flat-addr" => t.flat_addr = Some(value.to_string()),
        "entry" => t.entry = Some(value.to_string()),
        "smp" => {
            t.smp = value
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("smp '{value}': expected a vCPU count"))?
        }
        "expect" => t.expect = parse_expect(value)?,
        "timeout" => t.timeout = Some(parse_secs(value)?),
        _ => {
            if let Some(engine) = key.strip_prefix("timeout.") {
                t.engine_timeouts
                    .push((engine.to_string(), parse_secs(value)?));
            } else if let Some(engine) = key.strip_prefix("deviation.") {
                if value.is_empty() {
                    return Err(format!("{key}: a known deviation needs its reason"));
                }
                t.deviations.push((engine.to_string(), value.to_string()));
            } else {
                return Err(format!(
                    "unknown key '{key}' (kernel, firmware, initrd, append, mem, smp, flat-addr, \
                     entry, expect, timeout[.ENGINE], deviation.ENGINE)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Vec<TestSpec>, String> {
        parse(text, &dir.join("m.manifest"), None)
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("twinvm-manifest-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("build")).expect("mkdir");
        std::fs::write(d.join("build/a.elf"), b"x").expect("write");
        std::fs::write(d.join("build/b.rom"), b"x").expect("write");
        d
    }

    #[test]
    fn full_manifest() {
        let d = tmpdir("full");
        let t = parse_in(
            &d,
            "# c\nimages = build\ntimeout = 9\n\n[a]\nkernel = a.elf\nappend = \"x y\"\nmem = 64M\n\
             expect = exit 4\ntimeout.kvm = 300\ndeviation.kvm = slow ring 0\n[b]\nfirmware = b.rom\n\
             expect = triple-fault\n",
        )
        .expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].image, d.join("build/a.elf"));
        assert_eq!(t[0].append.as_deref(), Some("x y"));
        assert_eq!(t[0].expect, Expect::Exit(4));
        assert_eq!(t[0].timeout_for("kvm", 60.0), 300.0);
        assert_eq!(t[0].timeout_for("interp", 60.0), 9.0);
        assert_eq!(t[0].deviation("kvm"), Some("slow ring 0"));
        assert_eq!(t[0].deviation("interp"), None);
        assert_eq!(t[1].kind, ImageKind::Firmware);
        assert_eq!(t[1].expect, Expect::Exit(status::TRIPLE_FAULT));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn errors_name_the_line() {
        let d = tmpdir("err");
        let cases = [
            (
                "[a]\nkernel = build/a.elf\nbogus = 1\n",
                ":3: unknown key 'bogus'",
            ),
            (
                "kernel = build/a.elf\n",
                ":1: 'kernel' before the first [test]",
            ),
            ("[a]\n", "has neither kernel nor firmware"),
            ("[a]\nkernel = nope.elf\n", "not found"),
            (
                "[a]\nkernel = build/a.elf\n[a]\n",
                ":3: test 'a' is defined twice",
            ),
            (
                "[a]\nkernel = build/a.elf\nfirmware = build/b.rom\n",
                ":3: a test has one image",
            ),
            (
                "[a]\nkernel = build/a.elf\nexpect = maybe\n",
                ":3: expect 'maybe'",
            ),
            (
                "[a]\nkernel = build/a.elf\ntimeout = -1\n",
                ":3: timeout '-1'",
            ),
            (
                "[a]\nkernel = build/a.elf\ndeviation.kvm =\n",
                "needs its reason",
            ),
            ("[a b]\n", ":1: '[a b]': expected [name]"),
            ("just text\n", ":1: 'just text': expected key = value"),
        ];
        for (text, want) in cases {
            let e = parse_in(&d, text).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let _ = std::fs::remove_dir_all(d);
    }
}
