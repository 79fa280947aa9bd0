//! The interpreter's run loop: blocks from the cache, interrupts at block boundaries,
//! exceptions delivered precisely.

use crate::cache::BlockCache;
use crate::cpu::{Cpu, CpuEnv};
use crate::decode::execute;
use crate::exception::Trap;
use crate::interrupts::{Delivery, EventKind};
use crate::state::{rflags, CpuState};

/// Why `Interpreter::run` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget ran out.
    Budget,
    /// The vCPU is halted and no interrupt can wake it now; the platform should advance
    /// time (or wait) and call `run` again.
    Halted,
    /// A device requested a stop (see `VmControl::take`).
    Stop,
    /// Shutdown: an exception while delivering a double fault.
    TripleFault { cs: u16, rip: u64 },
    /// An exception, returned instead of delivered because `stop_on_exception` is set
    /// (the native oracle and the fuzzer compare faults this way). RIP is at the
    /// faulting instruction.
    Exception(crate::exception::Exception),
    /// The guest did something twinvm does not model.
    Unsupported {
        what: &'static str,
        cs: u16,
        rip: u64,
    },
}

/// A vCPU run by the interpreter.
pub struct Interpreter {
    pub cpu: Cpu,
    pub cache: BlockCache,
    /// Return exceptions to the caller instead of delivering them.
    pub stop_on_exception: bool,
}

impl Interpreter {
    pub fn new(env: CpuEnv, state: CpuState) -> Self {
        Interpreter {
            cpu: Cpu::new(env, state),
            cache: BlockCache::new(),
            stop_on_exception: false,
        }
    }

    /// Replaces the CPU state and drops decoded code (it may belong to another mode).
    pub fn set_state(&mut self, s: CpuState) {
        self.cpu.set_state(s);
        self.cache.clear(&mut self.cpu);
    }

    fn interrupt_window(&self) -> bool {
        self.cpu.s.rflags & rflags::IF != 0 && !self.cpu.s.events.interrupt_shadow
    }

    /// Takes a pending external interrupt if the CPU can accept one now.
    fn accept_interrupt(&mut self) -> Result<bool, RunExit> {
        if !self.interrupt_window() || !self.cpu.env.intc.intr_pending() {
            return Ok(false);
        }
        let Some(vector) = self.cpu.env.intc.acknowledge() else {
            return Ok(false);
        };
        self.cpu.s.events.halted = false;
        self.cpu.stats.interrupts += 1;
        self.deliver(vector, None, EventKind::External)?;
        Ok(true)
    }

    /// Delivers a pending NMI (vector 2, whatever IF says) unless NMIs are blocked; IRET
    /// unblocks them.
    fn accept_nmi(&mut self) -> Result<(), RunExit> {
        let ev = &self.cpu.s.events;
        if ev.nmi_masked || ev.interrupt_shadow {
            return Ok(());
        }
        if !std::mem::take(&mut self.cpu.s.events.nmi_pending)
            && !self.cpu.apic.as_ref().is_some_and(|a| a.take_nmi())
        {
            return Ok(());
        }
        self.cpu.s.events.halted = false;
        self.cpu.s.events.nmi_masked = true;
        self.cpu.stats.interrupts += 1;
        self.deliver(crate::exception::NMI, None, EventKind::External)
    }

    fn deliver(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
        kind: EventKind,
    ) -> Result<(), RunExit> {
        match self.cpu.deliver_event(Delivery {
            vector,
            error_code,
            kind,
        }) {
            Ok(()) => Ok(()),
            Err(Trap::Unsupported(what)) => Err(self.unsupported(what)),
            Err(_) => Err(RunExit::TripleFault {
                cs: self.cpu.s.seg[crate::state::CS].selector,
                rip: self.cpu.s.rip,
            }),
        }
    }

    fn unsupported(&self, what: &'static str) -> RunExit {
        RunExit::Unsupported {
            what,
            cs: self.cpu.s.seg[crate::state::CS].selector,
            rip: self.cpu.s.rip,
        }
    }

    /// Runs until about `budget` instructions have executed or something needs the
    /// platform.
    pub fn run(&mut self, budget: u64) -> RunExit {
        // Folded into RFLAGS so that handlers see one consistent view.
        self.cpu.s.rflags = self.cpu.rflags();
        self.cpu.lf.op = crate::flags::FlagOp::Eager;
        let end = self.cpu.stats.instructions.saturating_add(budget);
        loop {
            if self.cpu.env.control.is_pending() {
                return RunExit::Stop;
            }
            if self.cpu.s.events.nmi_pending
                || self.cpu.apic.as_ref().is_some_and(|a| a.nmi_pending())
            {
                if let Err(e) = self.accept_nmi() {
                    return e;
                }
            }
            // IF lives in the eager part of RFLAGS; lazy flag operations never touch it.
            if self.cpu.s.rflags & rflags::IF != 0 {
                match self.accept_interrupt() {
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
            if self.cpu.s.events.halted {
                return RunExit::Halted;
            }
            if self.cpu.stats.instructions >= end {
                return RunExit::Budget;
            }
            let id = match self.cache.lookup(&mut self.cpu) {
                Ok(id) => id,
                Err(t) => {
                    if let Err(e) = self.handle_trap(t) {
                        return e;
                    }
                    continue;
                }
            };
            let shadow = self.cpu.s.events.interrupt_shadow;
            self.cpu.break_block = false;
            let block = self.cache.block(id);
            let mut result = Ok(());
            for insn in block.insns.iter() {
                result = execute(&mut self.cpu, insn);
                if result.is_err() || self.cpu.break_block || shadow {
                    break;
                }
            }
            if shadow {
                self.cpu.s.events.interrupt_shadow = false;
            }
            self.cache.process_smc(&mut self.cpu);
            if let Err(t) = result {
                if let Err(e) = self.handle_trap(t) {
                    return e;
                }
            }
        }
    }

    fn handle_trap(&mut self, t: Trap) -> Result<(), RunExit> {
        match t {
            Trap::Exception(e) if self.stop_on_exception => Err(RunExit::Exception(e)),
            Trap::Exception(e) => {
                self.cpu.stats.exceptions += 1;
                self.deliver(e.vector, e.error_code, EventKind::Exception)
            }
            Trap::Halt => {
                self.cpu.stats.halts += 1;
                self.cpu.s.events.halted = true;
                Ok(())
            }
            Trap::Stop => Err(RunExit::Stop),
            Trap::Unsupported(what) => Err(self.unsupported(what)),
        }
    }

    /// Whether the halted vCPU could be woken by an interrupt (IF set).
    pub fn can_wake(&self) -> bool {
        self.cpu.s.rflags & rflags::IF != 0
            || self.cpu.s.events.nmi_pending
            || self.cpu.apic.as_ref().is_some_and(|a| a.nmi_pending())
    }
}
