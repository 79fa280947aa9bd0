//! Running a machine on an engine until the guest stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twinvm_cpu::{CpuEnv, CpuState, CpuStats, Interpreter, RunExit};
use twinvm_devices::clock::Clock;
use twinvm_devices::StopRequest;

use crate::accel::Accel;
use crate::console::InputQueue;
use crate::error::VmError;
use crate::kvm::KvmOptions;
use crate::vm::Machine;

/// How the guest's run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// isa-debug-exit: the process status.
    DebugExit(i32),
    PowerOff,
    /// A reset requested by a device (8042, port 0x92, 0xCF9, ACPI).
    Reset,
    TripleFault {
        cs: u16,
        rip: u64,
    },
    /// Halted with interrupts disabled: it can never run again.
    DeadHalt {
        cs: u16,
        rip: u64,
    },
    Unsupported {
        what: &'static str,
        cs: u16,
        rip: u64,
    },
    UserQuit,
    /// The debugger killed the VM.
    Killed,
}

/// What a finished run reports.
pub struct RunReport {
    pub outcome: Outcome,
    pub stats: CpuStats,
    pub elapsed: Duration,
    /// The vCPU's architectural state when the guest stopped (compared across engines).
    pub final_state: CpuState,
}

/// Runs `m` on the engine `accel` (KVM options apply to `Accel::Kvm` only).
pub fn run(
    m: &Arc<Machine>,
    input: Option<Arc<InputQueue>>,
    accel: Accel,
    kvm: &KvmOptions,
) -> Result<RunReport, VmError> {
    match accel {
        Accel::Interp => Ok(run_interp(m, input)),
        Accel::Kvm => run_kvm(m, input, kvm),
    }
}

/// Runs `m` under KVM (with the interpreter as fallback); fails with a one-line message
/// when KVM is unusable.
pub fn run_kvm(
    m: &Machine,
    input: Option<Arc<InputQueue>>,
    opts: &KvmOptions,
) -> Result<RunReport, VmError> {
    crate::kvm::run_kvm(m, input, opts)
}

/// Instructions per slice between device polls: about a millisecond of guest time.
pub const SLICE: u64 = 200_000;

/// The interpreter running one vCPU of a machine, with the platform work between slices
/// (timers, console input, halts, stop requests). The gdb stub drives the same object.
pub struct InterpVcpu {
    pub m: Arc<Machine>,
    pub it: Interpreter,
    input: Option<Arc<InputQueue>>,
    start: Instant,
    /// The earliest device deadline seen at the last poll.
    deadline: Option<u64>,
    /// Under --icount: virtual time skipped while halted, on top of instructions << shift.
    skipped_ns: u64,
}

impl InterpVcpu {
    pub fn new(m: Arc<Machine>, input: Option<Arc<InputQueue>>) -> Self {
        let env = CpuEnv {
            mem: m.mem.clone(),
            pio: m.pio.clone(),
            mmio: m.mmio.clone(),
            control: m.control.clone(),
            intc: m.isa.clone(),
            clock: m.clock.clone(),
            model: m.model.clone(),
        };
        let it = Interpreter::new(env, m.boot_state.clone());
        InterpVcpu {
            m,
            it,
            input,
            start: Instant::now(),
            deadline: None,
            skipped_ns: 0,
        }
    }

    /// Runs one slice. Under --icount the slice stops at the next timer deadline, so that
    /// its interrupt comes in at the same instruction every run.
    pub fn run_slice(&mut self) -> RunExit {
        let budget = match &self.m.icount {
            Some((clock, shift)) => self.deadline.map_or(SLICE, |d| {
                (d.saturating_sub(clock.now_ns()) >> shift).clamp(1, SLICE)
            }),
            None => SLICE,
        };
        self.it.run(budget)
    }

    /// Platform work after `Interpreter::run` returned `exit`; the outcome when the guest
    /// is done.
    pub fn after_run(&mut self, exit: RunExit) -> Option<Outcome> {
        let m = &self.m;
        if let Some((clock, shift)) = &m.icount {
            clock.advance_to((self.it.cpu.stats.instructions << shift) + self.skipped_ns);
        }
        if let Some(q) = &self.input {
            let bytes = q.take();
            if !bytes.is_empty() {
                twinvm_devices::bus::lock(&m.uart).push_input(&bytes);
            }
        }
        let deadline = m.poll_timers();
        self.deadline = deadline;
        match exit {
            RunExit::Budget => None,
            RunExit::Halted => {
                if !self.it.can_wake() {
                    let s = &self.it.cpu.s;
                    return Some(Outcome::DeadHalt {
                        cs: s.seg[1].selector,
                        rip: s.rip,
                    });
                }
                let idle = !twinvm_devices::InterruptController::intr_pending(m.isa.as_ref());
                if let (true, Some((clock, _))) = (idle, &m.icount) {
                    // Nothing runs until the next deadline: jump there, deterministically.
                    let now = clock.now_ns();
                    let to = deadline.map_or(now + 1_000_000, |d| d.max(now + 1));
                    self.skipped_ns += to - now;
                    clock.advance_to(to);
                    self.deadline = m.poll_timers();
                } else if idle {
                    let now = m.clock.now_ns();
                    let wait = deadline
                        .map_or(1_000_000, |d| d.saturating_sub(now))
                        .min(1_000_000);
                    if wait > 0 {
                        std::thread::sleep(Duration::from_nanos(wait));
                    }
                    m.poll_timers();
                }
                None
            }
            RunExit::Stop => match m.control.take() {
                Some(StopRequest::DebugExit(s)) => Some(Outcome::DebugExit(s)),
                Some(StopRequest::PowerOff) => Some(Outcome::PowerOff),
                Some(StopRequest::Reset) => Some(Outcome::Reset),
                Some(StopRequest::UserQuit) => Some(Outcome::UserQuit),
                None => None,
            },
            RunExit::TripleFault { cs, rip } => Some(Outcome::TripleFault { cs, rip }),
            RunExit::Unsupported { what, cs, rip } => Some(Outcome::Unsupported { what, cs, rip }),
            RunExit::Exception(e) => {
                // Only with stop_on_exception, which the machine never sets.
                log::error!("unexpected exception exit {e}");
                Some(Outcome::Unsupported {
                    what: "exception returned to the engine",
                    cs: self.it.cpu.s.seg[1].selector,
                    rip: self.it.cpu.s.rip,
                })
            }
        }
    }

    pub fn report(&self, outcome: Outcome) -> RunReport {
        RunReport {
            outcome,
            stats: self.it.cpu.stats.clone(),
            elapsed: self.start.elapsed(),
            final_state: self.it.cpu.state(),
        }
    }
}

pub fn run_interp(m: &Arc<Machine>, input: Option<Arc<InputQueue>>) -> RunReport {
    let mut v = InterpVcpu::new(m.clone(), input);
    loop {
        let exit = v.run_slice();
        if let Some(o) = v.after_run(exit) {
            return v.report(o);
        }
    }
}
