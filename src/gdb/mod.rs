//! The gdb remote stub (gdbstub crate), shared by every engine.
//!
//! - `target`: the `DebugTarget` trait an engine implements per vCPU;
//! - `interp`: that trait for the interpreter (also the fallback for other engines);
//! - `arch`: the one x86-64 register file and target description for every CPU mode;
//! - `session`: gdbstub's `Target` over the vCPUs (threads), breakpoints, watchpoints;
//! - `server`: listening, the protocol state machine, running the guest in slices;
//! - `monitor`: `monitor` commands.

pub mod arch;
pub mod interp;
pub mod monitor;
pub mod server;
pub mod session;
pub mod target;

pub use interp::InterpTarget;
pub use server::{parse_addr, GdbServer};
pub use target::{BreakKind, DebugError, DebugTarget, RunEvent, RunRequest, Stop};
