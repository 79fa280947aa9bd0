//! `twinvm conform` end to end: the firmware corpus passes with valid JSON and JUnit; a
//! failing guest, a guest that never ends and an unavailable engine are reported as fail,
//! timeout and skip, with a non-zero status and no process left behind.

mod common;
#[path = "support/mini.rs"]
mod mini;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::twinvm;
use mini::{parse_json, parse_xml, Element, Json};

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

fn out_file(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("twinvm-conform-{tag}-{}.{ext}", std::process::id()))
}

fn result<'a>(json: &'a Json, test: &str, engine: &str) -> &'a Json {
    let t = json
        .get("tests")
        .arr()
        .iter()
        .find(|t| t.get("name").str() == test)
        .unwrap_or_else(|| panic!("no test {test}"));
    t.get("results")
        .arr()
        .iter()
        .find(|r| r.get("engine").str() == engine)
        .unwrap_or_else(|| panic!("no {engine} result for {test}"))
}

fn testcase<'a>(xml: &'a [Element], suite: &str, name: &str) -> (usize, &'a Element) {
    xml.iter()
        .enumerate()
        .find(|(_, e)| {
            e.name == "testcase"
                && e.attrs["name"] == name
                && e.parent
                    .is_some_and(|p| xml[p].attrs.get("name").map(String::as_str) == Some(suite))
        })
        .unwrap_or_else(|| panic!("no testcase {name} in suite {suite}"))
}

fn children(xml: &[Element], parent: usize) -> Vec<&Element> {
    xml.iter().filter(|e| e.parent == Some(parent)).collect()
}

/// The Makefile's GUESTS minus the benchmarks and the runner's self-test guests.
fn makefile_test_guests() -> Vec<String> {
    let mk = std::fs::read_to_string(repo("firmware/Makefile")).expect("firmware/Makefile");
    let start = mk.find("GUESTS :=").expect("GUESTS list") + "GUESTS :=".len();
    let mut list = String::new();
    for line in mk[start..].lines() {
        list.push_str(line.trim_end_matches('\\'));
        list.push(' ');
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    list.split_whitespace()
        .filter(|g| !g.starts_with("bench-") && !["fail-on-purpose", "spin-forever"].contains(g))
        .map(String::from)
        .collect()
}

#[test]
fn firmware_corpus_passes_on_interp() {
    let (json_path, xml_path) = (out_file("corpus", "json"), out_file("corpus", "xml"));
    let r = twinvm(
        &[
            "conform",
            "--accel",
            "interp",
            "--images",
            env!("TWINVM_FIRMWARE_DIR"),
            "--json",
            json_path.to_str().expect("utf-8"),
            "--junit",
            xml_path.to_str().expect("utf-8"),
            &repo("firmware/manifest"),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(r.status, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let json = parse_json(&std::fs::read_to_string(&json_path).expect("json report"));
    let tests = json.get("tests").arr();
    let names: Vec<&str> = tests.iter().map(|t| t.get("name").str()).collect();
    let mut want = makefile_test_guests();
    want.push("bcd16".into());
    let mut got: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "firmware/manifest must list every test guest of firmware/Makefile"
    );
    for n in &names {
        assert_eq!(
            result(&json, n, "interp").get("verdict").str(),
            "pass",
            "{n}"
        );
    }
    assert_eq!(json.get("summary").get("pass").num(), names.len() as f64);
    assert_eq!(json.get("summary").get("exit_status").num(), 0.0);

    let xml = parse_xml(&std::fs::read_to_string(&xml_path).expect("junit report"));
    let suites: Vec<&Element> = xml.iter().filter(|e| e.name == "testsuite").collect();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0].attrs["name"], "interp");
    assert_eq!(suites[0].attrs["tests"], names.len().to_string());
    assert_eq!(suites[0].attrs["failures"], "0");
    let cases: Vec<&Element> = xml.iter().filter(|e| e.name == "testcase").collect();
    assert_eq!(cases.len(), names.len());
    assert!(cases.iter().all(|c| c.attrs["classname"] == "interp"));
    assert!(!xml
        .iter()
        .any(|e| matches!(e.name.as_str(), "failure" | "error" | "skipped")));
    let _ = std::fs::remove_file(json_path);
    let _ = std::fs::remove_file(xml_path);
}

/// Live (non-zombie) processes whose command line mentions `needle`.
fn processes_running(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if cmd.contains(needle) && !stat.contains(") Z ") {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

#[test]
fn failure_timeout_and_unavailable_engine_are_reported() {
    let (json_path, xml_path) = (out_file("self", "json"), out_file("self", "xml"));
    let start = Instant::now();
    let r = twinvm(
        &[
            "conform",
            "--accel",
            "interp,nosuch",
            "--jobs",
            "2",
            "--images",
            env!("TWINVM_FIRMWARE_DIR"),
            "--json",
            json_path.to_str().expect("utf-8"),
            "--junit",
            xml_path.to_str().expect("utf-8"),
            &repo("firmware/selftest.manifest"),
        ],
        Duration::from_secs(120),
    );
    // spin-forever's manifest entry gives it 2 s.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.status, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("fail-on-purpose"), "{}", r.stdout);
    assert!(r.stdout.contains("TIMEOUT"), "{}", r.stdout);
    // The kill is asynchronous: allow the kernel a moment before calling it a leftover.
    let mut leftovers = processes_running("spin-forever.elf");
    for _ in 0..100 {
        if leftovers.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        leftovers = processes_running("spin-forever.elf");
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    let json = parse_json(&std::fs::read_to_string(&json_path).expect("json report"));
    let fail = result(&json, "fail-on-purpose", "interp");
    assert_eq!(fail.get("verdict").str(), "fail");
    assert!(
        fail.get("reason").str().contains("FAIL fail-on-purpose"),
        "{fail:?}"
    );
    assert_eq!(fail.get("status").num(), 3.0);
    let spin = result(&json, "spin-forever", "interp");
    assert_eq!(spin.get("verdict").str(), "timeout");
    assert!(spin.get("reason").str().starts_with("timeout"));
    let skip = result(&json, "spin-forever", "nosuch");
    assert_eq!(skip.get("verdict").str(), "skip");
    assert!(skip.get("reason").str().contains("nosuch"), "{skip:?}");
    assert_eq!(json.get("summary").get("exit_status").num(), 1.0);

    let xml = parse_xml(&std::fs::read_to_string(&xml_path).expect("junit report"));
    let suites: Vec<&str> = xml
        .iter()
        .filter(|e| e.name == "testsuite")
        .map(|e| e.attrs["name"].as_str())
        .collect();
    assert_eq!(suites, ["interp", "nosuch"]);
    let (i, case) = testcase(&xml, "interp", "spin-forever");
    assert_eq!(case.attrs["classname"], "interp");
    let kids = children(&xml, i);
    let err = kids
        .iter()
        .find(|e| e.name == "error")
        .expect("<error> for the time-out");
    assert!(err.attrs["message"].starts_with("timeout"), "{err:?}");
    let (i, _) = testcase(&xml, "interp", "fail-on-purpose");
    let failure = children(&xml, i)
        .into_iter()
        .find(|e| e.name == "failure")
        .expect("<failure>");
    assert!(failure.attrs["message"].contains("FAIL fail-on-purpose"));
    let (i, _) = testcase(&xml, "nosuch", "fail-on-purpose");
    assert!(children(&xml, i).iter().any(|e| e.name == "skipped"));
    let _ = std::fs::remove_file(json_path);
    let _ = std::fs::remove_file(xml_path);
}

#[test]
fn bad_manifest_is_one_clear_error() {
    let path = out_file("bad", "manifest");
    std::fs::write(&path, "[x]\nkernel = missing.elf\n").expect("write");
    let r = twinvm(
        &["conform", path.to_str().expect("utf-8")],
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("image") && r.stderr.contains("not found"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let _ = std::fs::remove_file(path);
}
