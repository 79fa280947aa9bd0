//! What a debugger needs from the interpreter: breakpoints checked at instruction
//! boundaries, watchpoints checked in the memory slow path, single-stepping with the
//! architecture's rules, and side-effect-free access to guest memory.
//!
//! None of this costs the normal run loop anything: `Interpreter::run` never looks at
//! breakpoints (the debugger drives `run_debug` instead), and the memory paths look at
//! watchpoints only on a TLB miss, while watched pages are kept out of the TLB.

use std::collections::HashSet;

use crate::exec::{Interpreter, RunExit};
use crate::state::{rflags, CS};

/// The kind of data access a watchpoint fires on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Write,
    Read,
    /// Reads and writes (read-modify-write included).
    Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    /// Linear address.
    pub addr: u64,
    /// 1, 2, 4 or 8 bytes.
    pub len: u8,
    pub kind: WatchKind,
}

/// A watchpoint that fired during the last instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchHit {
    pub addr: u64,
    pub kind: WatchKind,
}

/// Debugger state the memory paths and the string family look at.
#[derive(Clone, Debug, Default)]
pub struct DebugHooks {
    watches: Vec<Watchpoint>,
    /// Linear pages that hold a watched byte.
    watched_pages: HashSet<u64>,
    hit: Option<WatchHit>,
    /// REP string instructions do one iteration per execution.
    pub single_rep: bool,
}

impl DebugHooks {
    #[inline(always)]
    pub fn watching(&self) -> bool {
        !self.watches.is_empty()
    }

    #[inline]
    pub fn watches_page(&self, lin: u64) -> bool {
        self.watching() && self.watched_pages.contains(&(lin & !0xfff))
    }

    pub fn watches(&self) -> &[Watchpoint] {
        &self.watches
    }

    fn rebuild_pages(&mut self) {
        self.watched_pages.clear();
        for w in &self.watches {
            self.watched_pages.insert(w.addr & !0xfff);
            self.watched_pages
                .insert(w.addr.wrapping_add(w.len as u64 - 1) & !0xfff);
        }
    }

    /// Records a hit if an access of `size` bytes at `lin` touches a watchpoint that
    /// fires on this kind of access. The first hit of an instruction is the one reported.
    pub fn check(&mut self, lin: u64, size: u8, write: bool) {
        if self.hit.is_some() {
            return;
        }
        let end = lin.wrapping_add(size as u64);
        for w in &self.watches {
            let fires = match w.kind {
                WatchKind::Write => write,
                WatchKind::Read => !write,
                WatchKind::Access => true,
            };
            if fires && lin < w.addr.wrapping_add(w.len as u64) && w.addr < end {
                self.hit = Some(WatchHit {
                    addr: w.addr,
                    kind: w.kind,
                });
                return;
            }
        }
    }
}

/// Why `run_debug` stopped short of its budget for a debugger reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DebugExit {
    /// The normal exits: budget, halt, stop request, triple fault …
    Run(RunExit),
    /// The next instruction is at a breakpoint (not executed).
    Breakpoint { linear: u64 },
    /// A watchpoint fired; the accessing instruction has completed.
    Watch(WatchHit),
    /// One step done.
    Stepped,
}

/// How `run_debug` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugRun {
    /// Execute one instruction (one REP iteration) and stop.
    pub step: bool,
    /// While stepping, do not accept external interrupts.
    pub mask_interrupts: bool,
    /// Ignore a breakpoint at the first instruction (resuming from it, as RFLAGS.RF does).
    pub resume_over_break: bool,
}

impl Interpreter {
    /// The linear address of the next instruction.
    pub fn pc_linear(&self) -> u64 {
        let s = &self.cpu.s;
        if self.cpu.mode64 {
            s.rip
        } else {
            s.seg[CS].base.wrapping_add(s.rip) & 0xffff_ffff
        }
    }

    pub fn add_watchpoint(&mut self, w: Watchpoint) {
        let d = &mut self.cpu.debug;
        if !d.watches.contains(&w) {
            d.watches.push(w);
        }
        d.rebuild_pages();
        // Entries filled before the watchpoint existed would bypass it.
        self.cpu.flush_tlb();
    }

    pub fn remove_watchpoint(&mut self, w: Watchpoint) -> bool {
        let d = &mut self.cpu.debug;
        let before = d.watches.len();
        d.watches.retain(|x| *x != w);
        d.rebuild_pages();
        before != d.watches.len()
    }

    /// Runs instruction by instruction, checking `breaks` (linear addresses) before each
    /// one and watchpoints after it. Slower than `run`; used only while a debugger is
    /// attached and has breakpoints, watchpoints or a step in force.
    pub fn run_debug(&mut self, budget: u64, breaks: &HashSet<u64>, how: DebugRun) -> DebugExit {
        self.cpu.s.rflags = self.cpu.rflags();
        self.cpu.lf.op = crate::flags::FlagOp::Eager;
        self.cpu.debug.single_rep = how.step || self.cpu.debug.watching();
        let r = self.debug_loop(budget, breaks, how);
        self.cpu.debug.single_rep = false;
        self.cpu.debug.hit = None;
        r
    }

    fn debug_loop(&mut self, budget: u64, breaks: &HashSet<u64>, how: DebugRun) -> DebugExit {
        let end = self.cpu.stats.instructions.saturating_add(budget);
        let mut first = true;
        loop {
            if self.cpu.env.control.is_pending() {
                return DebugExit::Run(RunExit::Stop);
            }
            let irq_ok = !(how.step && how.mask_interrupts);
            if irq_ok && self.cpu.s.rflags & rflags::IF != 0 {
                match self.accept_interrupt() {
                    // A step that entered an interrupt handler ends at its first
                    // instruction.
                    Ok(true) if how.step && !first => return DebugExit::Stepped,
                    Ok(_) => {}
                    Err(e) => return DebugExit::Run(e),
                }
            }
            if self.cpu.s.events.halted {
                return DebugExit::Run(RunExit::Halted);
            }
            if self.cpu.stats.instructions >= end {
                return DebugExit::Run(RunExit::Budget);
            }
            let pc = self.pc_linear();
            if !(first && how.resume_over_break) && breaks.contains(&pc) {
                return DebugExit::Breakpoint { linear: pc };
            }
            let shadow = self.cpu.s.events.interrupt_shadow;
            let result = match self.cache.lookup(&mut self.cpu) {
                Ok(id) => {
                    self.cpu.break_block = false;
                    match self.cache.block(id).insns.first() {
                        Some(insn) => {
                            let insn = insn.clone();
                            crate::decode::execute(&mut self.cpu, &insn)
                        }
                        None => Err(crate::exception::Trap::Unsupported("empty block")),
                    }
                }
                Err(t) => Err(t),
            };
            if shadow {
                self.cpu.s.events.interrupt_shadow = false;
            }
            self.cache.process_smc(&mut self.cpu);
            if let Err(t) = result {
                if let Err(e) = self.handle_trap(t) {
                    return DebugExit::Run(e);
                }
            }
            first = false;
            if let Some(hit) = self.cpu.debug.hit.take() {
                return DebugExit::Watch(hit);
            }
            // The instruction after MOV SS, POP SS or STI runs in the same step, as the
            // shadow holds off the single-step trap on hardware.
            if how.step && !self.cpu.s.events.interrupt_shadow {
                return DebugExit::Stepped;
            }
        }
    }

    /// Translates a linear address as the guest's page tables say, for a debugger:
    /// supervisor view, no accessed/dirty bits set, CR2 untouched.
    pub fn debug_translate(&mut self, lin: u64) -> Option<u64> {
        let lin = if self.cpu.mode64 || self.cpu.s.long_mode_active() {
            lin
        } else {
            lin & 0xffff_ffff
        };
        self.cpu.translate_peek(lin)
    }

    /// Reads guest RAM at a linear address; returns how many bytes could be read (it stops
    /// at the first unmapped page or non-RAM byte: device registers are never read).
    pub fn debug_read_linear(&mut self, lin: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let a = lin.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            let Some(p) = self.debug_translate(a) else {
                break;
            };
            if self.cpu.env.mem.read(p, &mut buf[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    /// Writes guest RAM at a linear address, all or nothing; decoded code on the written
    /// bytes is dropped.
    pub fn debug_write_linear(&mut self, lin: u64, data: &[u8]) -> bool {
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < data.len() {
            let a = lin.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xfff)) as usize).min(data.len() - done);
            let Some(p) = self.debug_translate(a) else {
                return false;
            };
            if !self.phys_is_ram(p, n as u64) {
                return false;
            }
            pieces.push((p, done, n));
            done += n;
        }
        for (p, off, n) in pieces {
            self.debug_write_phys_unchecked(p, &data[off..off + n]);
        }
        true
    }

    fn phys_is_ram(&self, p: u64, len: u64) -> bool {
        self.cpu
            .env
            .mem
            .host_range(p)
            .is_some_and(|r| r.writable && r.len >= len)
    }

    fn debug_write_phys_unchecked(&mut self, p: u64, data: &[u8]) {
        self.cpu.write_phys(p, data);
        self.cache.process_smc(&mut self.cpu);
        // Entries may cache a decode of the old bytes through the jump cache.
        self.cpu.break_block = true;
    }

    /// Reads guest-physical RAM (never device registers); returns the bytes read.
    pub fn debug_read_phys(&mut self, phys: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let a = phys.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xfff)) as usize).min(buf.len() - done);
            if self.cpu.env.mem.read(a, &mut buf[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    /// Writes guest-physical RAM, all or nothing.
    pub fn debug_write_phys(&mut self, phys: u64, data: &[u8]) -> bool {
        let mut done = 0;
        while done < data.len() {
            let a = phys.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xfff)) as usize).min(data.len() - done);
            if !self.phys_is_ram(a, n as u64) {
                return false;
            }
            done += n;
        }
        let mut done = 0;
        while done < data.len() {
            let a = phys.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xfff)) as usize).min(data.len() - done);
            self.debug_write_phys_unchecked(a, &data[done..done + n]);
            done += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{machine64, DATA};

    fn load(it: &mut Interpreter, code: &[u8]) {
        assert!(it.debug_write_phys(0x100000, code));
        it.cpu.s.rip = 0x100000;
    }

    fn step(it: &mut Interpreter) -> DebugExit {
        let how = DebugRun {
            step: true,
            ..Default::default()
        };
        it.run_debug(1000, &HashSet::new(), how)
    }

    #[test]
    fn rep_steps_one_iteration_and_breakpoints_stop_before() {
        let mut it = machine64();
        // mov ecx,3 ; mov edi,DATA ; rep stosb ; nop ; hlt
        let mut code = vec![0xb9, 3, 0, 0, 0, 0xbf];
        code.extend_from_slice(&(DATA as u32).to_le_bytes());
        code.extend_from_slice(&[0xf3, 0xaa, 0x90, 0xf4]);
        load(&mut it, &code);
        assert_eq!(step(&mut it), DebugExit::Stepped);
        assert_eq!(step(&mut it), DebugExit::Stepped);
        let rep = it.cpu.s.rip;
        for left in [2, 1, 0] {
            assert_eq!(step(&mut it), DebugExit::Stepped);
            assert_eq!(it.cpu.s.gpr[1], left);
        }
        assert_eq!(it.cpu.s.rip, rep + 2);
        let mut b = HashSet::new();
        b.insert(rep + 3);
        assert_eq!(
            it.run_debug(1000, &b, DebugRun::default()),
            DebugExit::Breakpoint { linear: rep + 3 }
        );
        // Resuming over the breakpoint runs on to the HLT.
        let how = DebugRun {
            resume_over_break: true,
            ..Default::default()
        };
        assert_eq!(it.run_debug(1000, &b, how), DebugExit::Run(RunExit::Halted));
    }

    #[test]
    fn watchpoints_fire_after_the_access_with_their_kind() {
        let mut it = machine64();
        // mov eax,[DATA] ; add [DATA],eax ; mov [DATA+8],eax ; hlt
        let d = (DATA as u32).to_le_bytes();
        let mut code = vec![0x8b, 0x04, 0x25];
        code.extend_from_slice(&d);
        code.extend_from_slice(&[0x01, 0x04, 0x25]);
        code.extend_from_slice(&d);
        code.extend_from_slice(&[0x89, 0x04, 0x25]);
        code.extend_from_slice(&((DATA + 8) as u32).to_le_bytes());
        code.push(0xf4);
        load(&mut it, &code);
        assert!(it.debug_write_linear(DATA, &7u32.to_le_bytes()));
        let none = HashSet::new();
        let w = Watchpoint {
            addr: DATA,
            len: 4,
            kind: WatchKind::Write,
        };
        it.add_watchpoint(w);
        // The read does not fire a write watchpoint; the RMW does, after completing.
        let hit = it.run_debug(1000, &none, DebugRun::default());
        assert_eq!(
            hit,
            DebugExit::Watch(WatchHit {
                addr: DATA,
                kind: WatchKind::Write
            })
        );
        assert_eq!(it.cpu.s.rip, 0x100000 + 14);
        let mut b = [0u8; 4];
        assert_eq!(it.debug_read_linear(DATA, &mut b), 4);
        assert_eq!(u32::from_le_bytes(b), 14);
        assert!(it.remove_watchpoint(w));
        let r = Watchpoint {
            addr: DATA,
            len: 1,
            kind: WatchKind::Read,
        };
        it.add_watchpoint(r);
        it.cpu.s.rip = 0x100000;
        assert_eq!(
            it.run_debug(1000, &none, DebugRun::default()),
            DebugExit::Watch(WatchHit {
                addr: DATA,
                kind: WatchKind::Read
            })
        );
        assert_eq!(it.cpu.s.rip, 0x100000 + 7);
        it.remove_watchpoint(r);
        let a = Watchpoint {
            addr: DATA + 8,
            len: 8,
            kind: WatchKind::Access,
        };
        it.add_watchpoint(a);
        assert_eq!(
            it.run_debug(1000, &none, DebugRun::default()),
            DebugExit::Watch(WatchHit {
                addr: DATA + 8,
                kind: WatchKind::Access
            })
        );
        assert_eq!(it.cpu.s.rip, 0x100000 + 21);
    }

    #[test]
    fn sti_shadow_steps_two_instructions() {
        let mut it = machine64();
        // sti ; nop ; nop ; hlt
        load(&mut it, &[0xfb, 0x90, 0x90, 0xf4]);
        assert_eq!(step(&mut it), DebugExit::Stepped);
        assert_eq!(it.cpu.s.rip, 0x100002);
        assert_eq!(step(&mut it), DebugExit::Stepped);
        assert_eq!(it.cpu.s.rip, 0x100003);
    }

    #[test]
    fn debug_reads_leave_no_trace() {
        let mut it = machine64();
        it.cpu.s.cr2 = 0x1234;
        let mut b = [0u8; 8];
        assert_eq!(it.debug_read_linear(0xffff_8000_0000_0000, &mut b), 0);
        assert_eq!(it.cpu.s.cr2, 0x1234);
        assert!(!it.debug_write_linear(0xffff_8000_0000_0000, &b));
    }
}
