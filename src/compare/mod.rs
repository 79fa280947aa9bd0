//! `twinvm compare`: one guest on several engines, compared at its exit — serial output,
//! exit status, the final `CpuState` and guest memory.
//!
//! Runs are in-process, one after the other, through `accel::run`. `--lockstep` (stepping
//! the engines side by side) is not implemented yet and is refused, never passed silently.

mod memory;
mod state_diff;

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::accel::{self, EngineRun};
use crate::cli::{Cli, Command};
use crate::conform::first_line_difference;
use crate::error::VmError;
use crate::run::{config_from_args, outcome_status};
use crate::vm::Machine;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Engines to compare, comma-separated, at least two (e.g. interp,kvm; the same
    /// engine twice checks that a run is reproducible).
    #[arg(long)]
    pub accel: String,
    /// Step the engines side by side to the first differing instruction. NOT IMPLEMENTED
    /// YET: refused with an error (compare checks the state at guest exit only).
    #[arg(long)]
    pub lockstep: bool,
    /// Kernel image, as for `twinvm run`.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk(s) / multiboot modules (repeatable).
    #[arg(long)]
    pub initrd: Vec<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    pub append: Option<String>,
    /// Guest RAM (default as for `twinvm run`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Firmware image started at the reset vector.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Load --kernel as a raw binary at this address.
    #[arg(long)]
    pub flat_addr: Option<String>,
    /// Entry point for --flat-addr.
    #[arg(long)]
    pub entry: Option<String>,
    /// Boot the second and later runs with this command line instead of --append: a
    /// deliberately different run, to see how compare reports a difference.
    #[arg(long)]
    pub append_other: Option<String>,
}

/// One engine's run, kept with its machine so that memories can be compared.
struct Sample {
    engine: String,
    machine: Machine,
    run: EngineRun,
    serial: Vec<u8>,
    status: i32,
    message: Option<String>,
    mem_hash: u64,
}

/// `twinvm run`'s arguments for run number `i`: the image options, serial into `serial`.
fn run_argv(a: &CompareArgs, i: usize, serial: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = vec!["twinvm".into(), "run".into(), "--no-reboot".into()];
    v.push("--serial".into());
    v.push(format!("file:{}", serial.display()));
    let path = |p: &PathBuf| p.display().to_string();
    let mut opt = |flag: &str, val: Option<String>| {
        if let Some(val) = val {
            v.push(flag.into());
            v.push(val);
        }
    };
    opt("--kernel", a.kernel.as_ref().map(path));
    opt("--firmware", a.firmware.as_ref().map(path));
    let append = match (&a.append_other, i) {
        (Some(other), 1..) => Some(other.clone()),
        _ => a.append.clone(),
    };
    opt("--append", append);
    opt("--mem", a.mem.clone());
    opt("--flat-addr", a.flat_addr.clone());
    opt("--entry", a.entry.clone());
    for p in &a.initrd {
        v.push("--initrd".into());
        v.push(path(p));
    }
    v
}

fn sample(a: &CompareArgs, i: usize, engine: &str) -> Result<Sample, VmError> {
    let serial_path =
        std::env::temp_dir().join(format!("twinvm-compare-{}-{i}.serial", std::process::id()));
    let run_args = match Cli::try_parse_from(run_argv(a, i, &serial_path)) {
        Ok(Cli {
            command: Command::Run(r),
        }) => r,
        Ok(_) => {
            return Err(VmError::Host(
                "run options parsed as another command".into(),
            ))
        }
        Err(e) => {
            let text = e.to_string();
            return Err(VmError::Input(
                text.lines().next().unwrap_or("bad option").to_string(),
            ));
        }
    };
    let cfg = config_from_args(&run_args)?;
    let machine = Machine::build(&cfg)?;
    let run = accel::run(engine, &machine, None);
    // The UART's file is flushed on each write; read it whatever the outcome.
    let serial = std::fs::read(&serial_path).unwrap_or_default();
    let _ = std::fs::remove_file(&serial_path);
    let run = run?;
    let (status, message) = outcome_status(&run.report.outcome);
    let mem_hash = memory::hash(&machine.mem);
    Ok(Sample {
        engine: engine.to_string(),
        machine,
        run,
        serial,
        status,
        message,
        mem_hash,
    })
}

/// Every difference between two samples, most telling first.
fn differences(a: &Sample, b: &Sample) -> Vec<String> {
    let mut d = Vec::new();
    if a.run.report.outcome != b.run.report.outcome {
        d.push(format!(
            "exit differs: {} {:?} (status {}) vs {} {:?} (status {})",
            a.engine, a.run.report.outcome, a.status, b.engine, b.run.report.outcome, b.status
        ));
    }
    if let Some(s) = first_line_difference(&a.serial, &b.serial, &a.engine, &b.engine) {
        d.push(s);
    }
    d.extend(
        state_diff::differences(&a.run.state, &b.run.state)
            .into_iter()
            .map(|s| format!("CPU state at exit: {s}")),
    );
    if let Some(m) = memory::first_difference(&a.machine.mem, &b.machine.mem) {
        d.push(m);
    }
    d
}

pub fn cmd_compare(a: &CompareArgs) -> i32 {
    match compare(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("twinvm compare: {e}");
            e.status()
        }
    }
}

fn compare(a: &CompareArgs) -> Result<i32, VmError> {
    if a.lockstep {
        return Err(VmError::Input(
            "--lockstep is not implemented yet: compare checks serial output, exit status, \
             CPU state and memory at guest exit only"
                .into(),
        ));
    }
    let engines = accel::parse_list(&a.accel)?;
    if engines.len() < 2 {
        return Err(VmError::Input(format!(
            "--accel {}: name at least two engines to compare (the same one twice checks reproducibility)",
            a.accel
        )));
    }
    for e in &engines {
        accel::check(e)?;
    }
    let mut samples = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        let s = sample(a, i, e)?;
        println!(
            "{:<8} {}, {} instructions, {:.3} s, serial {} bytes, rip {:#x}, memory hash {:#018x}",
            s.engine,
            s.message
                .clone()
                .unwrap_or_else(|| format!("status {}", s.status)),
            s.run.report.stats.instructions,
            s.run.report.elapsed.as_secs_f64(),
            s.serial.len(),
            s.run.state.rip,
            s.mem_hash
        );
        samples.push(s);
    }
    let mut any = false;
    for (i, b) in samples.iter().enumerate().skip(1) {
        let d = differences(&samples[0], b);
        let who = format!(
            "{} (run 1) vs {} (run {})",
            samples[0].engine,
            b.engine,
            i + 1
        );
        if d.is_empty() {
            println!("compare: identical: {who}: serial output, exit status, CPU state, memory");
        } else {
            any = true;
            println!("compare: DIFFERENT: {who}: {}", d[0]);
            for more in &d[1..] {
                println!("  also: {more}");
            }
        }
    }
    println!("compare: the TSC is left out (it follows the host clock); lockstep comparison is not implemented yet");
    Ok(if any { 1 } else { 0 })
}
