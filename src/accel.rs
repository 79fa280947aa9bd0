//! Execution engines (`--accel`): one parser shared by every command that picks an engine.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use twinvm_cpu::CpuState;

use crate::console::InputQueue;
use crate::engine::{self, RunReport};
use crate::error::VmError;
use crate::kvm::KvmOptions;
use crate::vm::Machine;

/// An execution engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accel {
    /// twinvm's own interpreter.
    Interp,
    /// Linux KVM, with the interpreter as fallback for what KVM cannot run.
    Kvm,
}

impl Accel {
    pub const ALL: [Accel; 2] = [Accel::Interp, Accel::Kvm];

    pub fn name(self) -> &'static str {
        match self {
            Accel::Interp => "interp",
            Accel::Kvm => "kvm",
        }
    }

    /// Parses a comma-separated list (`interp,kvm`), refusing duplicates and empty lists.
    pub fn parse_list(s: &str) -> Result<Vec<Accel>, String> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let a: Accel = part.trim().parse()?;
            if out.contains(&a) {
                return Err(format!("--accel '{s}': {} is named twice", a.name()));
            }
            out.push(a);
        }
        Ok(out)
    }
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interp" | "tcg" => Ok(Accel::Interp),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!(
                "unknown accelerator '{s}' (expected one of: interp, kvm)"
            )),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The engines this build can run, by name, in the order `--accel` lists them.
pub const ENGINES: &[&str] = &["interp", "kvm"];

/// A finished run on one engine: how it ended and the CPU state at that moment.
pub struct EngineRun {
    pub report: RunReport,
    pub state: CpuState,
}

/// The engine called `name`; the error names the ones there are.
pub fn check(name: &str) -> Result<Accel, VmError> {
    name.parse::<Accel>().map_err(|_| {
        VmError::Input(format!(
            "engine '{name}' is not available in this build (engines: {})",
            ENGINES.join(", ")
        ))
    })
}

/// Runs `m` on engine `name` until the guest stops it (KVM with its default options).
/// `twinvm compare` and the QEMU-compatible entry point go through here.
pub fn run(name: &str, m: &Machine, input: Option<Arc<InputQueue>>) -> Result<EngineRun, VmError> {
    let accel = check(name)?;
    let report = engine::run(m, input, accel, &KvmOptions::default())?;
    let state = report.final_state.clone();
    Ok(EngineRun { report, state })
}

/// Splits a comma-separated engine list (`interp,kvm`) into names, refusing empty ones.
/// Unlike `Accel::parse_list` it keeps names this build does not know, so that the
/// conformance runner can report them as skipped with the reason.
pub fn parse_list(s: &str) -> Result<Vec<String>, VmError> {
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(VmError::Input(format!(
            "--accel '{s}': expected engine names separated by commas, e.g. interp,kvm"
        )));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_match_the_enum() {
        let names: Vec<&str> = Accel::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, ENGINES);
        assert!(check("nosuch").is_err());
        assert_eq!(
            parse_list("interp, nosuch").map_err(|e| e.to_string()),
            Ok(vec!["interp".to_string(), "nosuch".to_string()])
        );
    }

    #[test]
    fn parses_names_and_lists() {
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!("interp".parse::<Accel>(), Ok(Accel::Interp));
        assert!("hvf".parse::<Accel>().is_err());
        assert_eq!(
            Accel::parse_list("interp, kvm"),
            Ok(vec![Accel::Interp, Accel::Kvm])
        );
        assert!(Accel::parse_list("kvm,kvm").is_err());
        assert!(Accel::parse_list("").is_err());
    }
}
