//! Errors of the machine as a whole, each with the process exit status it maps to.

use std::fmt;

/// Exit statuses. isa-debug-exit statuses are always odd, so these are even.
pub mod status {
    /// Bad input: a missing or malformed image, a bad option value.
    pub const BAD_INPUT: i32 = 2;
    /// Triple fault with `--no-reboot`.
    pub const TRIPLE_FAULT: i32 = 4;
    /// The guest reset the machine with `--no-reboot`.
    pub const GUEST_RESET: i32 = 6;
    /// The vCPU halted with interrupts disabled: nothing can ever wake it.
    pub const DEAD_HALT: i32 = 8;
    /// The guest used something twinvm does not model.
    pub const UNSUPPORTED: i32 = 10;
    /// A host error (out of memory, I/O failure…).
    pub const HOST_ERROR: i32 = 12;
    /// `--accel kvm` cannot be used: no device, no permission, a missing capability, or
    /// KVM failed while running.
    pub const KVM_UNAVAILABLE: i32 = 14;
}

#[derive(Debug)]
pub enum VmError {
    /// The user's input is wrong (file, option, image).
    Input(String),
    /// The host failed us.
    Host(String),
    /// KVM is unusable or failed (the message names what is missing).
    Kvm(String),
    /// The guest needs something no engine here can do (e.g. an instruction neither KVM
    /// nor the interpreter runs).
    Unsupported(String),
}

impl VmError {
    pub fn status(&self) -> i32 {
        match self {
            VmError::Input(_) => status::BAD_INPUT,
            VmError::Host(_) => status::HOST_ERROR,
            VmError::Kvm(_) => status::KVM_UNAVAILABLE,
            VmError::Unsupported(_) => status::UNSUPPORTED,
        }
    }
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Input(m) | VmError::Host(m) | VmError::Kvm(m) | VmError::Unsupported(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for VmError {}
