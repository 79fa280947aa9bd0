//! `twinvm conform`: runs test guests on every chosen engine in parallel, judges them,
//! compares the engines, and reports a table, JSON and JUnit XML.
//!
//! Each test runs as a child `twinvm run --no-reboot --accel ENGINE …` of this very binary,
//! in its own process group, so a time-out can kill everything it started.

mod diff;
mod discover;
mod json;
mod junit;
mod manifest;
mod results;
mod runner;
mod spec;
mod table;
mod verdict;

pub use diff::first_line_difference;
pub use results::exit;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use results::{Cell, TestResult, Totals};
use runner::{run_child, run_parallel};
use spec::TestSpec;
use verdict::{judge, last_error, Kind, Verdict};

#[derive(Args, Debug)]
pub struct ConformArgs {
    /// Engines to run every test on, comma-separated (e.g. interp,kvm). An engine that
    /// cannot run here is reported as skipped, with the reason `twinvm run` gave.
    #[arg(long, default_value = "interp")]
    pub accel: String,
    /// Tests run at the same time (default: the number of host CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Time limit per test in seconds, for tests whose manifest entry sets none.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Write a JUnit XML report here (one <testsuite> per engine).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Resolve a manifest's relative image paths against this folder (instead of the
    /// manifest's `images` key or its own folder).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Test images (.elf/.flat kernels, .rom/.bin/.fd firmware), folders of them, or
    /// manifests (a file named `manifest` or `*.manifest`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// An engine of this run and, if it cannot run here, why.
pub struct EngineInfo {
    pub name: String,
    pub skip_reason: Option<String>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.001, 1e9))
}

/// Asks `twinvm run --accel NAME` to boot the built-in demo guest (it powers off, status
/// 0); anything else means the engine is unusable here, and its message is the reason.
fn probe(exe: &Path, engine: &str, limit: f64) -> Option<String> {
    let args: Vec<OsString> = ["run", "--no-reboot", "--serial", "none", "--accel", engine]
        .iter()
        .map(OsString::from)
        .collect();
    match run_child(exe, &args, secs(limit)) {
        Ok(r) if r.status == Some(0) => None,
        Ok(r) if r.timed_out => Some(format!("the demo guest did not finish within {limit} s")),
        Ok(r) => Some(last_error(&r.stderr)),
        Err(e) => Some(format!("cannot start {}: {e}", exe.display())),
    }
}

fn run_one(exe: &Path, test: &TestSpec, engine: &str, default_timeout: f64) -> Cell {
    let limit = test.timeout_for(engine, default_timeout);
    match run_child(exe, &test.run_args(engine), secs(limit)) {
        Ok(r) => Cell {
            engine: engine.to_string(),
            verdict: judge(&r, test.expect, limit),
            elapsed: r.elapsed,
            status: r.status,
            stdout: r.stdout,
            stderr: r.stderr,
            difference: None,
            deviation: None,
        },
        Err(e) => {
            let mut c = Cell::skipped(engine, String::new());
            c.verdict = Verdict::new(Kind::Fail, format!("cannot start {}: {e}", exe.display()));
            c
        }
    }
}

fn write_report(path: &Path, what: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text)
        .map_err(|e| format!("cannot write {what} report {}: {e}", path.display()))
}

pub fn cmd_conform(a: &ConformArgs) -> i32 {
    match conform(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twinvm conform: {e}");
            exit::BAD_INPUT
        }
    }
}

fn conform(a: &ConformArgs) -> Result<i32, String> {
    let engines = crate::accel::parse_list(&a.accel).map_err(|e| e.to_string())?;
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        return Err(format!(
            "--timeout {}: expected a positive number of seconds",
            a.timeout
        ));
    }
    if a.jobs == Some(0) {
        return Err("--jobs 0: at least one job".into());
    }
    let tests = discover::collect(&a.paths, a.images.as_deref())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the twinvm binary: {e}"))?;
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let probes = run_parallel(&engines, jobs, |e| probe(&exe, e, a.timeout));
    let infos: Vec<EngineInfo> = engines
        .iter()
        .zip(probes)
        .map(|(name, skip_reason)| EngineInfo {
            name: name.clone(),
            skip_reason,
        })
        .collect();

    let pairs: Vec<(usize, usize)> = (0..tests.len())
        .flat_map(|t| (0..infos.len()).map(move |e| (t, e)))
        .collect();
    eprintln!(
        "twinvm conform: {} tests × {} engines ({}), {jobs} jobs",
        tests.len(),
        infos.len(),
        engines.join(", ")
    );
    let mut cells = run_parallel(&pairs, jobs, |&(t, e)| {
        let (test, info) = (&tests[t], &infos[e]);
        if let Some(why) = &info.skip_reason {
            Cell::skipped(&info.name, format!("engine unavailable: {why}"))
        } else if let Some(why) = test.skip_reason() {
            Cell::skipped(&info.name, why)
        } else {
            run_one(&exe, test, &info.name, a.timeout)
        }
    })
    .into_iter();
    let results: Vec<TestResult> = tests
        .into_iter()
        .map(|t| {
            let row: Vec<Cell> = cells.by_ref().take(infos.len()).collect();
            TestResult::settle(t, row)
        })
        .collect();

    let status = Totals::of(&results).exit_status();
    print!("{}", table::render(&infos, &results));
    if let Some(p) = &a.json {
        write_report(p, "JSON", &json::render(&infos, &results, status))?;
    }
    if let Some(p) = &a.junit {
        write_report(p, "JUnit", &junit::render(&infos, &results))?;
    }
    Ok(status)
}
