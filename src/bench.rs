//! `twinvm bench`: CPU-bound guests, reported as guest MIPS.

use twinvm_cpu::CpuModel;

use crate::cli::BenchArgs;
use crate::engine::Outcome;
use crate::firmware::BENCHES;
use crate::run::run_machine;
use crate::vm::{MachineConfig, SerialOut};

pub fn cmd_bench(a: &BenchArgs) -> i32 {
    let chosen: Vec<_> = BENCHES
        .iter()
        .filter(|(name, _)| a.guests.is_empty() || a.guests.iter().any(|g| g == name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<_> = BENCHES.iter().map(|(n, _)| *n).collect();
        eprintln!("twinvm: no such benchmark; available: {}", names.join(", "));
        return crate::error::status::BAD_INPUT;
    }
    println!(
        "{:<10} {:>14} {:>10} {:>10}",
        "guest", "instructions", "seconds", "MIPS"
    );
    for (name, image) in chosen {
        let mut best: Option<(u64, f64)> = None;
        for _ in 0..a.runs.max(1) {
            let cfg = MachineConfig {
                mem_size: 64 << 20,
                serial: SerialOut::None,
                kernel: Some(image.to_vec()),
                cmdline: String::new(),
                modules: Vec::new(),
                firmware: None,
                flat_addr: None,
                flat_entry: None,
                model: CpuModel::max(),
                icount: None,
                cpus: 1,
            };
            let report = match run_machine(&cfg, true, false) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("twinvm: {name}: {e}");
                    return e.status();
                }
            };
            if report.outcome != Outcome::DebugExit(1) {
                eprintln!(
                    "twinvm: benchmark {name} did not finish cleanly: {:?}",
                    report.outcome
                );
                return 1;
            }
            let secs = report.elapsed.as_secs_f64();
            if best.is_none_or(|(_, b)| secs < b) {
                best = Some((report.stats.instructions, secs));
            }
        }
        if let Some((n, secs)) = best {
            println!(
                "{:<10} {:>14} {:>10.3} {:>10.1}",
                name,
                n,
                secs,
                n as f64 / secs / 1e6
            );
        }
    }
    0
}
