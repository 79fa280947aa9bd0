//! `DebugTarget`: what an engine gives the gdb stub for one vCPU.
//!
//! The stub (protocol, breakpoint bookkeeping, monitor commands, the run/poll loop) is
//! engine-neutral; an engine implements this trait for each vCPU. State moves only
//! through `CpuState`, so an engine that cannot do something natively (KVM: watchpoints,
//! stepping at CPL 3) can run the vCPU in the interpreter for as long as the debugger
//! needs it — `InterpTarget` is that fallback as well as the interpreter's own target.

use twinvm_cpu::debugger::Watchpoint;
use twinvm_cpu::CpuState;

use crate::engine::{Outcome, RunReport};

/// How gdb asked for a breakpoint. Engines with debug registers may use them for
/// `Hardware` and something else (or the interpreter) for `Software`; either way the
/// guest's memory is never modified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakKind {
    Software,
    Hardware,
}

/// One request to run the vCPU.
#[derive(Clone, Copy, Debug)]
pub struct RunRequest {
    /// Execute exactly one instruction (one REP iteration; the instruction after MOV SS,
    /// POP SS or STI goes with it) and stop.
    pub step: bool,
    /// While stepping, hold off external interrupts.
    pub mask_interrupts: bool,
    /// The first request after gdb resumed: a breakpoint at the current instruction does
    /// not stop it again (RFLAGS.RF semantics).
    pub resuming: bool,
    /// Give control back after about this many instructions, so that the stub can poll
    /// the debugger (Ctrl-C) — the engine may return earlier.
    pub budget: u64,
}

/// Why the vCPU stopped for the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A step completed.
    Step,
    /// The next instruction (at this linear address) has a breakpoint; it has not run.
    Break { linear: u64 },
    /// An access hit this watchpoint; the accessing instruction has completed.
    Watch(Watchpoint),
}

/// What a `run` call ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The budget ran out (or the vCPU is halted); nothing for the debugger. Call again.
    Running,
    Stopped(Stop),
    /// The guest is done (debug exit, power-off, reset, triple fault …).
    Exited(Outcome),
}

/// A request the engine cannot honour (e.g. no free debug register).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugError(pub String);

/// One vCPU under the debugger. Addresses called "linear" are what gdb calls virtual
/// addresses: segment base applied, before paging.
pub trait DebugTarget {
    /// A short name of the engine, for `monitor info mode`.
    fn engine(&self) -> &'static str;
    /// The architectural state (lazy parts folded in).
    fn state(&mut self) -> CpuState;
    /// Replaces the architectural state (the engine drops whatever it cached from the old).
    fn set_state(&mut self, s: CpuState);
    /// Guest-physical address of a linear address through the current page tables, with
    /// no side effects on the guest (no accessed/dirty bits, no CR2).
    fn translate(&mut self, linear: u64) -> Option<u64>;
    /// Reads guest RAM at a linear address; returns the bytes read (stops at the first
    /// unmapped page or non-RAM address — device registers are never read).
    fn read_linear(&mut self, linear: u64, buf: &mut [u8]) -> usize;
    /// Writes guest RAM at a linear address, all or nothing.
    fn write_linear(&mut self, linear: u64, data: &[u8]) -> bool;
    fn read_phys(&mut self, phys: u64, buf: &mut [u8]) -> usize;
    fn write_phys(&mut self, phys: u64, data: &[u8]) -> bool;
    fn add_breakpoint(&mut self, linear: u64, kind: BreakKind) -> Result<(), DebugError>;
    fn remove_breakpoint(&mut self, linear: u64, kind: BreakKind);
    /// `w.len` is 1, 2, 4 or 8 and `w.addr` is aligned to it (the stub checks).
    fn add_watchpoint(&mut self, w: Watchpoint) -> Result<(), DebugError>;
    fn remove_watchpoint(&mut self, w: Watchpoint);
    /// Runs the vCPU, doing the platform's work (timers, console, halts) as the normal run
    /// loop does.
    fn run(&mut self, req: RunRequest) -> RunEvent;
    /// Text for `monitor info tlb`: the engine's cached translations.
    fn tlb_dump(&mut self) -> String;
    /// Text for `monitor stats`.
    fn stats(&mut self) -> String;
    /// The final report once the guest is done.
    fn report(&self, outcome: Outcome) -> RunReport;
}
