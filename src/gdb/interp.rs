//! `DebugTarget` for the interpreter (and the fallback other engines run under gdb).

use std::collections::HashSet;
use std::fmt::Write;

use twinvm_cpu::debugger::{DebugExit, DebugRun, Watchpoint};
use twinvm_cpu::mmu::Access;
use twinvm_cpu::{CpuState, RunExit};

use super::target::{BreakKind, DebugError, DebugTarget, RunEvent, RunRequest, Stop};
use crate::engine::{InterpVcpu, Outcome, RunReport};

pub struct InterpTarget {
    pub vcpu: InterpVcpu,
    /// Breakpoints by kind; the interpreter checks their union.
    sw: HashSet<u64>,
    hw: HashSet<u64>,
    all: HashSet<u64>,
}

impl InterpTarget {
    pub fn new(vcpu: InterpVcpu) -> Self {
        InterpTarget {
            vcpu,
            sw: HashSet::new(),
            hw: HashSet::new(),
            all: HashSet::new(),
        }
    }

    fn rebuild(&mut self) {
        self.all = self.sw.union(&self.hw).copied().collect();
    }

    fn platform(&mut self, exit: RunExit) -> RunEvent {
        match self.vcpu.after_run(exit) {
            Some(o) => RunEvent::Exited(o),
            None => RunEvent::Running,
        }
    }
}

impl DebugTarget for InterpTarget {
    fn engine(&self) -> &'static str {
        "interp"
    }

    fn state(&mut self) -> CpuState {
        self.vcpu.it.cpu.state()
    }

    fn set_state(&mut self, s: CpuState) {
        self.vcpu.it.set_state(s);
    }

    fn translate(&mut self, linear: u64) -> Option<u64> {
        self.vcpu.it.debug_translate(linear)
    }

    fn read_linear(&mut self, linear: u64, buf: &mut [u8]) -> usize {
        self.vcpu.it.debug_read_linear(linear, buf)
    }

    fn write_linear(&mut self, linear: u64, data: &[u8]) -> bool {
        self.vcpu.it.debug_write_linear(linear, data)
    }

    fn read_phys(&mut self, phys: u64, buf: &mut [u8]) -> usize {
        self.vcpu.it.debug_read_phys(phys, buf)
    }

    fn write_phys(&mut self, phys: u64, data: &[u8]) -> bool {
        self.vcpu.it.debug_write_phys(phys, data)
    }

    fn add_breakpoint(&mut self, linear: u64, kind: BreakKind) -> Result<(), DebugError> {
        match kind {
            BreakKind::Software => self.sw.insert(linear),
            BreakKind::Hardware => self.hw.insert(linear),
        };
        self.rebuild();
        Ok(())
    }

    fn remove_breakpoint(&mut self, linear: u64, kind: BreakKind) {
        match kind {
            BreakKind::Software => self.sw.remove(&linear),
            BreakKind::Hardware => self.hw.remove(&linear),
        };
        self.rebuild();
    }

    fn add_watchpoint(&mut self, w: Watchpoint) -> Result<(), DebugError> {
        self.vcpu.it.add_watchpoint(w);
        Ok(())
    }

    fn remove_watchpoint(&mut self, w: Watchpoint) {
        self.vcpu.it.remove_watchpoint(w);
    }

    fn run(&mut self, req: RunRequest) -> RunEvent {
        let it = &mut self.vcpu.it;
        // Nothing to watch for: the normal run loop, at full speed.
        if !req.step && self.all.is_empty() && !it.cpu.debug.watching() {
            let exit = it.run(req.budget);
            return self.platform(exit);
        }
        let how = DebugRun {
            step: req.step,
            mask_interrupts: req.mask_interrupts,
            resume_over_break: req.resuming,
        };
        match it.run_debug(req.budget, &self.all, how) {
            DebugExit::Run(exit) => self.platform(exit),
            DebugExit::Breakpoint { linear } => RunEvent::Stopped(Stop::Break { linear }),
            DebugExit::Watch(hit) => {
                let w = it
                    .cpu
                    .debug
                    .watches()
                    .iter()
                    .find(|w| w.addr == hit.addr && w.kind == hit.kind)
                    .copied()
                    .unwrap_or(Watchpoint {
                        addr: hit.addr,
                        len: 1,
                        kind: hit.kind,
                    });
                RunEvent::Stopped(Stop::Watch(w))
            }
            DebugExit::Stepped => match self.platform(RunExit::Budget) {
                RunEvent::Running => RunEvent::Stopped(Stop::Step),
                other => other,
            },
        }
    }

    fn tlb_dump(&mut self) -> String {
        let mut e = self.vcpu.it.cpu.tlb.entries();
        e.sort_by_key(|&(k, lin, _)| (lin, k as u8));
        let mut out = format!("software TLB: {} valid entries\n", e.len());
        for (k, lin, phys) in e {
            let kind = match k {
                Access::Read => "read",
                Access::Write => "write",
                Access::Exec => "exec",
            };
            let _ = writeln!(out, "  {lin:#018x} -> {phys:#014x}  {kind}");
        }
        out
    }

    fn stats(&mut self) -> String {
        let s = &self.vcpu.it.cpu.stats;
        let mut out = String::new();
        let _ = writeln!(out, "instructions      {}", s.instructions);
        let _ = writeln!(
            out,
            "exits             pio r/w {}/{}, mmio r/w {}/{}",
            s.pio_reads, s.pio_writes, s.mmio_reads, s.mmio_writes
        );
        let _ = writeln!(
            out,
            "events            halts {}, interrupts {}, exceptions {}",
            s.halts, s.interrupts, s.exceptions
        );
        let _ = writeln!(out, "blocks decoded    {}", s.blocks_decoded);
        let _ = writeln!(out, "SMC invalidations {}", s.smc_invalidations);
        let _ = writeln!(out, "TLB flushes       {}", s.tlb_flushes);
        let _ = writeln!(out, "CR3 loads         {}", s.cr3_loads);
        out
    }

    fn report(&self, outcome: Outcome) -> RunReport {
        self.vcpu.report(outcome)
    }
}
