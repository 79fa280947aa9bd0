//! The interpreter's run loop: blocks from the cache, interrupts at block boundaries,
//! exceptions delivered precisely.

use crate::cache::BlockCache;
use crate::cpu::{Cpu, CpuEnv};
use crate::debug::DR6_BS;
use crate::decode::execute;
use crate::exception::Trap;
use crate::exception::DB;
use crate::interrupts::{Delivery, EventKind};
use crate::state::{rflags, CpuState};
use iced_x86::Mnemonic;

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

    /// Raises NMI on this vCPU (taken at the next instruction boundary unless an NMI
    /// handler is running: NMIs stay blocked until the next IRET).
    pub fn inject_nmi(&mut self) {
        self.cpu.s.events.nmi_pending = true;
    }

    /// Takes a pending NMI if NMIs are not blocked.
    fn interrupt_window(&self) -> bool {
        self.cpu.s.rflags & rflags::IF != 0 && !self.cpu.s.events.interrupt_shadow
    }

    /// Takes a pending external interrupt if the CPU can accept one now.
    pub(crate) fn accept_interrupt(&mut self) -> Result<bool, RunExit> {
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
            // TF, RF, breakpoints, alignment checks: one instruction at a time (debug.rs).
            if self.cpu.needs_slow_path() {
                if let Err(e) = self.step() {
                    return e;
                }
                continue;
            }
            if self.cpu.dbg.watch {
                self.cpu.set_watch(false);
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

    pub(crate) fn handle_trap(&mut self, t: Trap) -> Result<(), RunExit> {
        match t {
            Trap::Exception(e) if self.stop_on_exception => Err(RunExit::Exception(e)),
            Trap::Exception(e) => {
                self.cpu.stats.exceptions += 1;
                // Every fault-class exception pushes RF = 1, so that returning to the
                // instruction does not hit its instruction breakpoint again (SDM vol. 3
                // §18.3.1.1). The one exception, the instruction-breakpoint #DB, does not come
                // through here.
                self.cpu.s.rflags |= rflags::RF;
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

/// The single-instruction path taken while `Cpu::needs_slow_path` (debug.rs): execute
/// breakpoints before the instruction, TF and data/I/O breakpoint traps after it.
impl Interpreter {
    fn step(&mut self) -> Result<(), RunExit> {
        let watch = self.cpu.wants_watch();
        self.cpu.set_watch(watch);
        let hits = self.cpu.exec_breakpoints();
        if hits != 0 {
            if self.stop_on_exception {
                return Err(RunExit::Exception(crate::exception::Exception::new(DB)));
            }
            // A fault: RIP stays at the instruction and RF is pushed as it is (0); the
            // handler sets RF in the image to get past the breakpoint.
            self.cpu.set_dr6(hits, false);
            self.cpu.stats.exceptions += 1;
            return self.deliver(DB, None, EventKind::Exception);
        }
        let id = match self.cache.lookup(&mut self.cpu) {
            Ok(id) => id,
            Err(t) => return self.handle_trap(t),
        };
        let shadow = self.cpu.s.events.interrupt_shadow;
        let single_step = self.cpu.s.rflags & rflags::TF != 0;
        // RF is cleared at the start of every instruction, after the breakpoint check.
        self.cpu.s.rflags &= !rflags::RF;
        self.cpu.dbg.hits = 0;
        self.cpu.break_block = false;
        let block = self.cache.block(id);
        let Some(insn) = block.insns.first() else {
            return Err(self.unsupported("empty decoded block"));
        };
        let mnemonic = insn.raw.mnemonic();
        let result = execute(&mut self.cpu, insn);
        if shadow {
            self.cpu.s.events.interrupt_shadow = false;
        }
        self.cache.process_smc(&mut self.cpu);
        match result {
            Ok(()) | Err(Trap::Halt) | Err(Trap::Stop) => {
                // Software interrupts enter their handler with TF clear and report no step.
                let soft_int = matches!(
                    mnemonic,
                    Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Into | Mnemonic::Int1
                );
                let mut pending = self.cpu.dbg.pending | self.cpu.dbg.hits;
                if single_step && !soft_int {
                    pending |= DR6_BS;
                }
                self.cpu.dbg.hits = 0;
                // MOV SS / POP SS hold debug traps for one more instruction (so that the
                // stack pointer load that follows is not split from them); STI does not.
                let holds = self.cpu.s.events.interrupt_shadow
                    && matches!(mnemonic, Mnemonic::Mov | Mnemonic::Pop);
                if pending != 0 && !holds {
                    self.cpu.dbg.pending = 0;
                    self.cpu.set_dr6(pending, pending & DR6_BS != 0);
                    if result == Err(Trap::Stop) {
                        return self.handle_trap(Trap::Stop);
                    }
                    self.cpu.s.events.halted = false;
                    if self.stop_on_exception {
                        return Err(RunExit::Exception(crate::exception::Exception::new(DB)));
                    }
                    self.cpu.stats.exceptions += 1;
                    return self.deliver(DB, None, EventKind::Exception);
                }
                self.cpu.dbg.pending = pending;
                match result {
                    Err(t) => self.handle_trap(t),
                    Ok(()) => Ok(()),
                }
            }
            Err(t) => {
                self.cpu.dbg.hits = 0;
                self.handle_trap(t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::env;
    use crate::exception::{Exception, DB};
    use crate::testing::{machine64, run64, CODE};

    /// Real mode: IVT entry 2 → 0000:2000, where an IRET returns to a NOP; HLT at the end.
    fn real_mode_with_nmi_handler() -> Interpreter {
        let e = env(1 << 20);
        e.mem.write(2 * 4, &[0x00, 0x20, 0x00, 0x00]).unwrap();
        e.mem.write(0x2000, &[0xcf]).unwrap(); // iret
        e.mem.write(0x1000, &[0x90, 0x90, 0xf4]).unwrap(); // nop; nop; hlt
        let mut s = CpuState::reset();
        s.seg[crate::state::CS] = crate::state::Segment::real(0);
        s.rip = 0x1000;
        s.gpr[crate::state::RSP] = 0x8000;
        Interpreter::new(e, s)
    }

    #[test]
    fn nmi_is_delivered_and_unblocked_by_iret() {
        let mut it = real_mode_with_nmi_handler();
        it.inject_nmi();
        assert_eq!(it.run(100), RunExit::Halted);
        assert_eq!(it.cpu.stats.interrupts, 1);
        assert!(!it.cpu.s.events.nmi_pending);
        assert!(!it.cpu.s.events.nmi_masked, "IRET ends NMI blocking");
        assert_eq!(it.cpu.s.rip, 0x1003);
    }

    #[test]
    fn nmi_stays_pending_while_blocked() {
        let mut it = real_mode_with_nmi_handler();
        it.cpu.s.events.nmi_masked = true;
        it.inject_nmi();
        assert_eq!(it.run(100), RunExit::Halted);
        assert_eq!(it.cpu.stats.interrupts, 0);
        assert!(it.cpu.s.events.nmi_pending);
    }

    #[test]
    fn single_step_traps_after_the_instruction() {
        let mut it = machine64();
        it.cpu.s.rflags |= rflags::TF;
        // nop; nop (+ hlt)
        let r = run64(&mut it, &[0x90, 0x90]);
        assert_eq!(r, RunExit::Exception(Exception::new(DB)));
        assert_eq!(it.cpu.s.rip, CODE + 1);
        assert_ne!(it.cpu.s.dr6 & crate::debug::DR6_BS, 0);
    }

    #[test]
    fn execute_breakpoint_faults_before_and_rf_skips_it() {
        let mut it = machine64();
        it.cpu.s.dr[0] = CODE + 1;
        it.cpu.s.dr7 = 0x401;
        let r = run64(&mut it, &[0x90, 0x90]);
        assert_eq!(r, RunExit::Exception(Exception::new(DB)));
        assert_eq!(it.cpu.s.rip, CODE + 1);
        it.cpu.s.rflags |= rflags::RF;
        assert_eq!(it.run(10), RunExit::Halted);
        assert_eq!(
            it.cpu.s.rflags & rflags::RF,
            0,
            "RF clears after one instruction"
        );
    }
}
