//! twinvm-cpu: the x86-64 CPU shared by every engine — architectural state (`CpuState`),
//! the CPU model (CPUID), the decoder with its block cache, the interpreter and the MMU.

pub mod apic_port;
pub mod cache;
pub mod cpu;
pub mod cpu_models;
pub mod debug;
pub mod debugger;
pub mod decode;
pub mod exception;
pub mod exec;
pub mod far;
pub mod flags;
pub mod interp;
pub mod interrupts;
pub mod mmu;
pub mod model;
pub mod monitor;
#[doc(hidden)]
pub mod oracle;
pub mod segments;
pub mod state;
pub mod tasks;
#[doc(hidden)]
pub mod testing;

pub use apic_port::{LocalApicPort, SharedApicPort};
pub use cpu::{Cpu, CpuEnv, CpuStats};
pub use exception::{Exception, Trap};
pub use exec::{Interpreter, RunExit};
pub use model::CpuModel;
pub use state::CpuState;
