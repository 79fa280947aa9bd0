//! The gdbstub `Target`: vCPUs as gdb threads (thread N = vCPU N-1), all-stop, with the
//! breakpoint and watchpoint bookkeeping kept here so that it survives a machine reset
//! and can be cleared when a debugger goes away.

use std::num::NonZeroUsize;

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use twinvm_cpu::debugger::{WatchKind, Watchpoint};

use super::arch::{GdbRegs, TwinX86};
use super::target::{BreakKind, DebugTarget, RunEvent, RunRequest, Stop};
use crate::engine::Outcome;

/// x86 has four debug registers; hardware breakpoints and watchpoints share them on every
/// engine, so that a session behaves the same on the interpreter and on KVM.
pub const HW_SLOTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Stay,
    Continue,
    Step,
}

/// What driving the vCPUs produced.
pub enum Driven {
    Running,
    Stopped(MultiThreadStopReason<u64>),
    Exited(Outcome),
}

pub struct GdbSession {
    pub vcpus: Vec<Box<dyn DebugTarget>>,
    sw: Vec<u64>,
    hw: Vec<u64>,
    watches: Vec<Watchpoint>,
    actions: Vec<Action>,
    /// Per vCPU: gdb named it in the current resume request.
    explicit: Vec<bool>,
    /// Per vCPU: the next run is the first since gdb resumed it.
    resuming: Vec<bool>,
    /// Hold off interrupts while stepping (`monitor set step-irq off`).
    pub mask_irq_on_step: bool,
    /// Some debugger has resumed the guest at least once (ends the --gdb-wait hold).
    pub resumed_once: bool,
    /// The vCPU to run next (round-robin between slices).
    next: usize,
}

/// The session never fails fatally (a bad request gets an error reply); gdbstub wants an
/// error type it can print all the same.
#[derive(Debug)]
pub struct Fatal;

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("debug target failure")
    }
}

fn tid(i: usize) -> Tid {
    NonZeroUsize::new(i + 1).unwrap_or(NonZeroUsize::MIN)
}

impl GdbSession {
    pub fn new() -> Self {
        GdbSession {
            vcpus: Vec::new(),
            sw: Vec::new(),
            hw: Vec::new(),
            watches: Vec::new(),
            actions: Vec::new(),
            explicit: Vec::new(),
            resuming: Vec::new(),
            mask_irq_on_step: false,
            resumed_once: false,
            next: 0,
        }
    }

    /// Takes the vCPUs of a (new) machine and gives them the session's breakpoints.
    pub fn attach_vcpus(&mut self, vcpus: Vec<Box<dyn DebugTarget>>) {
        self.vcpus = vcpus;
        let n = self.vcpus.len();
        self.actions.resize(n, Action::Continue);
        self.resuming = vec![false; n];
        self.explicit = vec![false; n];
        for v in self.vcpus.iter_mut() {
            for &a in &self.sw {
                let _ = v.add_breakpoint(a, BreakKind::Software);
            }
            for &a in &self.hw {
                let _ = v.add_breakpoint(a, BreakKind::Hardware);
            }
            for &w in &self.watches {
                let _ = v.add_watchpoint(w);
            }
        }
    }

    /// Forgets every breakpoint and watchpoint (the debugger that set them is gone) and
    /// lets every vCPU run.
    pub fn clear_points(&mut self) {
        for v in self.vcpus.iter_mut() {
            for &a in &self.sw {
                v.remove_breakpoint(a, BreakKind::Software);
            }
            for &a in &self.hw {
                v.remove_breakpoint(a, BreakKind::Hardware);
            }
            for &w in &self.watches {
                v.remove_watchpoint(w);
            }
        }
        self.sw.clear();
        self.hw.clear();
        self.watches.clear();
        self.actions.iter_mut().for_each(|a| *a = Action::Continue);
    }

    fn vcpu(&mut self, t: Tid) -> Result<&mut Box<dyn DebugTarget>, TargetError<Fatal>> {
        self.vcpus.get_mut(t.get() - 1).ok_or(TargetError::NonFatal)
    }

    /// Runs the vCPUs that gdb resumed for about `budget` instructions.
    pub fn drive(&mut self, budget: u64) -> Driven {
        let n = self.vcpus.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let action = self.actions.get(i).copied().unwrap_or(Action::Stay);
            if action == Action::Stay {
                continue;
            }
            let req = RunRequest {
                step: action == Action::Step,
                mask_interrupts: self.mask_irq_on_step,
                resuming: std::mem::take(&mut self.resuming[i]),
                budget,
            };
            let ev = self.vcpus[i].run(req);
            match ev {
                RunEvent::Running => {}
                RunEvent::Exited(o) => return Driven::Exited(o),
                RunEvent::Stopped(stop) => {
                    self.next = (i + 1) % n;
                    return Driven::Stopped(self.stop_reason(i, stop));
                }
            }
        }
        self.next = (self.next + 1) % n.max(1);
        Driven::Running
    }

    fn stop_reason(&self, i: usize, stop: Stop) -> MultiThreadStopReason<u64> {
        let t = tid(i);
        match stop {
            Stop::Step => MultiThreadStopReason::SignalWithThread {
                tid: t,
                signal: Signal::SIGTRAP,
            },
            Stop::Break { linear } => {
                if self.sw.contains(&linear) {
                    MultiThreadStopReason::SwBreak(t)
                } else {
                    MultiThreadStopReason::HwBreak(t)
                }
            }
            Stop::Watch(w) => MultiThreadStopReason::Watch {
                tid: t,
                kind: match w.kind {
                    WatchKind::Write => GdbWatchKind::Write,
                    WatchKind::Read => GdbWatchKind::Read,
                    WatchKind::Access => GdbWatchKind::ReadWrite,
                },
                addr: w.addr,
            },
        }
    }

    /// The stop reason for a Ctrl-C.
    pub fn interrupted(&self) -> MultiThreadStopReason<u64> {
        MultiThreadStopReason::SignalWithThread {
            tid: tid(0),
            signal: Signal::SIGINT,
        }
    }

    fn set_action(&mut self, t: Tid, a: Action) {
        let i = t.get() - 1;
        if let (Some(x), Some(e)) = (self.actions.get_mut(i), self.explicit.get_mut(i)) {
            *x = a;
            *e = true;
        }
    }

    fn hw_used(&self) -> usize {
        self.hw.len() + self.watches.len()
    }
}

impl Default for GdbSession {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for GdbSession {
    type Arch = TwinX86;
    type Error = Fatal;

    fn base_ops(&mut self) -> BaseOps<'_, TwinX86, Fatal> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    // Breakpoints live in the engine, never in guest memory: gdb must not fall back to
    // writing INT3 itself.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl MultiThreadBase for GdbSession {
    fn read_registers(&mut self, regs: &mut GdbRegs, t: Tid) -> TargetResult<(), Self> {
        let s = self.vcpu(t)?.state();
        *regs = GdbRegs::from_state(&s);
        Ok(())
    }

    fn write_registers(&mut self, regs: &GdbRegs, t: Tid) -> TargetResult<(), Self> {
        let v = self.vcpu(t)?;
        let mut s = v.state();
        regs.apply(&mut s);
        v.set_state(s);
        Ok(())
    }

    fn read_addrs(&mut self, addr: u64, data: &mut [u8], t: Tid) -> TargetResult<usize, Self> {
        let n = self.vcpu(t)?.read_linear(addr, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14));
        }
        Ok(n)
    }

    fn write_addrs(&mut self, addr: u64, data: &[u8], t: Tid) -> TargetResult<(), Self> {
        if self.vcpu(t)?.write_linear(addr, data) {
            Ok(())
        } else {
            Err(TargetError::Errno(14))
        }
    }

    fn list_active_threads(&mut self, f: &mut dyn FnMut(Tid)) -> Result<(), Fatal> {
        (0..self.vcpus.len()).for_each(|i| f(tid(i)));
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for GdbSession {
    fn resume(&mut self) -> Result<(), Fatal> {
        self.resumed_once = true;
        self.resuming.iter_mut().for_each(|r| *r = true);
        Ok(())
    }

    /// gdbstub's contract: a thread without an explicit action continues, unless the
    /// scheduler is locked.
    fn clear_resume_actions(&mut self) -> Result<(), Fatal> {
        self.actions.iter_mut().for_each(|a| *a = Action::Continue);
        self.explicit.iter_mut().for_each(|e| *e = false);
        Ok(())
    }

    fn set_resume_action_continue(&mut self, t: Tid, _sig: Option<Signal>) -> Result<(), Fatal> {
        self.set_action(t, Action::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSchedulerLocking for GdbSession {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Fatal> {
        for (a, e) in self.actions.iter_mut().zip(&self.explicit) {
            if !e {
                *a = Action::Stay;
            }
        }
        Ok(())
    }
}

impl MultiThreadSingleStep for GdbSession {
    fn set_resume_action_step(&mut self, t: Tid, _sig: Option<Signal>) -> Result<(), Fatal> {
        self.set_action(t, Action::Step);
        Ok(())
    }
}

impl Breakpoints for GdbSession {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl GdbSession {
    fn add_break(&mut self, addr: u64, kind: BreakKind) -> bool {
        let list = match kind {
            BreakKind::Software => &self.sw,
            BreakKind::Hardware => &self.hw,
        };
        if list.contains(&addr) {
            return true;
        }
        if kind == BreakKind::Hardware && self.hw_used() >= HW_SLOTS {
            return false;
        }
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            if v.add_breakpoint(addr, kind).is_err() {
                for u in self.vcpus[..i].iter_mut() {
                    u.remove_breakpoint(addr, kind);
                }
                return false;
            }
        }
        match kind {
            BreakKind::Software => self.sw.push(addr),
            BreakKind::Hardware => self.hw.push(addr),
        }
        true
    }

    fn remove_break(&mut self, addr: u64, kind: BreakKind) -> bool {
        let list = match kind {
            BreakKind::Software => &mut self.sw,
            BreakKind::Hardware => &mut self.hw,
        };
        let Some(pos) = list.iter().position(|&a| a == addr) else {
            return false;
        };
        list.remove(pos);
        self.vcpus
            .iter_mut()
            .for_each(|v| v.remove_breakpoint(addr, kind));
        true
    }
}

impl SwBreakpoint for GdbSession {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_break(addr, BreakKind::Software))
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_break(addr, BreakKind::Software))
    }
}

impl HwBreakpoint for GdbSession {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_break(addr, BreakKind::Hardware))
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_break(addr, BreakKind::Hardware))
    }
}

fn watchpoint(addr: u64, len: u64, kind: GdbWatchKind) -> Option<Watchpoint> {
    // As the debug registers: 1, 2, 4 or 8 bytes, naturally aligned.
    if !matches!(len, 1 | 2 | 4 | 8) || !addr.is_multiple_of(len) {
        return None;
    }
    Some(Watchpoint {
        addr,
        len: len as u8,
        kind: match kind {
            GdbWatchKind::Write => WatchKind::Write,
            GdbWatchKind::Read => WatchKind::Read,
            GdbWatchKind::ReadWrite => WatchKind::Access,
        },
    })
}

impl HwWatchpoint for GdbSession {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let Some(w) = watchpoint(addr, len, kind) else {
            return Ok(false);
        };
        if self.watches.contains(&w) {
            return Ok(true);
        }
        if self.hw_used() >= HW_SLOTS {
            return Ok(false);
        }
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            if v.add_watchpoint(w).is_err() {
                for u in self.vcpus[..i].iter_mut() {
                    u.remove_watchpoint(w);
                }
                return Ok(false);
            }
        }
        self.watches.push(w);
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        let Some(w) = watchpoint(addr, len, kind) else {
            return Ok(false);
        };
        let Some(pos) = self.watches.iter().position(|x| *x == w) else {
            return Ok(false);
        };
        self.watches.remove(pos);
        self.vcpus.iter_mut().for_each(|v| v.remove_watchpoint(w));
        Ok(true)
    }
}

impl MonitorCmd for GdbSession {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Fatal> {
        let text = super::monitor::run(self, &String::from_utf8_lossy(cmd));
        // Long output goes in pieces: each becomes one 'O' packet.
        for chunk in text.as_bytes().chunks(512) {
            out.write_raw(chunk);
        }
        Ok(())
    }
}
