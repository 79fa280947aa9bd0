//! The KVM engine: the same machine (memory mapping, CPU model, device models, boot state)
//! run by Linux KVM, with twinvm's interpreter as the fallback for what KVM cannot run.
//!
//! Files by concern: `device` (opening /dev/kvm, capabilities, VM and vCPU), `memory`
//! (memory slots), `cpuid` (the model's CPUID filtered by KVM's), `state` (pure conversion
//! between `CpuState` and KVM structures), `vcpu_state` (moving it through ioctls), `kick`
//! (timers and stop requests interrupting KVM_RUN), `fallback` (the interpreter seam) and
//! `run` (the vCPU run loop).

pub mod cpuid;
pub mod device;
pub mod fallback;
pub mod kick;
pub mod memory;
pub mod run;
pub mod state;
pub mod vcpu_state;

use std::path::PathBuf;

pub use device::{probe, KvmError};
pub use run::run_kvm;

/// The default KVM device.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// KVM engine options.
#[derive(Clone, Debug)]
pub struct KvmOptions {
    /// The KVM device file (`--kvm-device`).
    pub device: PathBuf,
    /// Remove every CPUID feature KVM lacks, even those the fallback could run
    /// (`--kvm-strict-cpuid`).
    pub strict_cpuid: bool,
}

impl Default for KvmOptions {
    fn default() -> Self {
        KvmOptions {
            device: PathBuf::from(DEFAULT_DEVICE),
            strict_cpuid: false,
        }
    }
}
