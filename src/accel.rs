//! Engine dispatch: the one place that maps an engine name (`--accel NAME`) to the code
//! that runs a built machine. `twinvm compare` and the QEMU-compatible entry point go
//! through it; the conformance runner only passes the name on to `twinvm run`.

use std::sync::Arc;

use twinvm_cpu::CpuState;

use crate::console::InputQueue;
use crate::engine::{self, RunReport};
use crate::error::VmError;
use crate::vm::Machine;

/// The engines this build can run, in the order `--accel` lists them.
pub const ENGINES: &[&str] = &["interp"];

/// A finished run on one engine: how it ended and the CPU state at that moment.
pub struct EngineRun {
    pub report: RunReport,
    pub state: CpuState,
}

/// Whether `name` is an engine of this build; the error names the ones there are.
pub fn check(name: &str) -> Result<(), VmError> {
    if ENGINES.contains(&name) {
        Ok(())
    } else {
        Err(VmError::Input(format!(
            "engine '{name}' is not available in this build (engines: {})",
            ENGINES.join(", ")
        )))
    }
}

/// Runs `m` on engine `name` until the guest stops it.
pub fn run(name: &str, m: &Machine, input: Option<Arc<InputQueue>>) -> Result<EngineRun, VmError> {
    check(name)?;
    match name {
        "interp" => {
            let (report, state) = engine::run_interp_final(m, input);
            Ok(EngineRun { report, state })
        }
        // `check` accepted a name listed in ENGINES that has no arm here.
        other => Err(VmError::Host(format!(
            "engine '{other}' is listed but not wired into accel::run"
        ))),
    }
}

/// Splits a comma-separated engine list (`interp,kvm`), refusing empty names.
pub fn parse_list(s: &str) -> Result<Vec<String>, VmError> {
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(VmError::Input(format!(
            "--accel '{s}': expected engine names separated by commas, e.g. interp,kvm"
        )));
    }
    Ok(names)
}
