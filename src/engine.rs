//! Running a machine on an engine until the guest stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twinvm_cpu::{CpuEnv, CpuStats, Interpreter, RunExit};
use twinvm_devices::clock::Clock;
use twinvm_devices::StopRequest;

use crate::console::InputQueue;
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
}

/// What a finished run reports.
pub struct RunReport {
    pub outcome: Outcome,
    pub stats: CpuStats,
    pub elapsed: Duration,
}

/// Instructions per slice between device polls: about a millisecond of guest time.
const SLICE: u64 = 200_000;

pub fn run_interp(m: &Machine, input: Option<Arc<InputQueue>>) -> RunReport {
    let env = CpuEnv {
        mem: m.mem.clone(),
        pio: m.pio.clone(),
        mmio: m.mmio.clone(),
        control: m.control.clone(),
        intc: m.isa.clone(),
        clock: m.clock.clone(),
        model: m.model.clone(),
    };
    let start = Instant::now();
    let mut it = Interpreter::new(env, m.boot_state.clone());
    let mut deadline: Option<u64> = None;
    // Under --icount: virtual time skipped while halted, on top of instructions << shift.
    let mut skipped_ns = 0u64;
    let outcome = loop {
        let exit = match &m.icount {
            Some((clock, shift)) => {
                // Stop at the next timer deadline so that its interrupt comes in on time.
                let budget = deadline.map_or(SLICE, |d| {
                    (d.saturating_sub(clock.now_ns()) >> shift).clamp(1, SLICE)
                });
                let exit = it.run(budget);
                clock.advance_to((it.cpu.stats.instructions << shift) + skipped_ns);
                exit
            }
            None => it.run(SLICE),
        };
        if let Some(q) = &input {
            let bytes = q.take();
            if !bytes.is_empty() {
                twinvm_devices::bus::lock(&m.uart).push_input(&bytes);
            }
        }
        deadline = m.poll_timers();
        match exit {
            RunExit::Budget => {}
            RunExit::Halted => {
                if !it.can_wake() {
                    let s = &it.cpu.s;
                    break Outcome::DeadHalt {
                        cs: s.seg[1].selector,
                        rip: s.rip,
                    };
                }
                let idle = !twinvm_devices::InterruptController::intr_pending(m.isa.as_ref());
                if let (true, Some((clock, _))) = (idle, &m.icount) {
                    // Nothing runs until the next deadline: jump there, deterministically.
                    let now = clock.now_ns();
                    let to = deadline.map_or(now + 1_000_000, |d| d.max(now + 1));
                    skipped_ns += to - now;
                    clock.advance_to(to);
                    deadline = m.poll_timers();
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
            }
            RunExit::Stop => match m.control.take() {
                Some(StopRequest::DebugExit(s)) => break Outcome::DebugExit(s),
                Some(StopRequest::PowerOff) => break Outcome::PowerOff,
                Some(StopRequest::Reset) => break Outcome::Reset,
                Some(StopRequest::UserQuit) => break Outcome::UserQuit,
                None => {}
            },
            RunExit::TripleFault { cs, rip } => break Outcome::TripleFault { cs, rip },
            RunExit::Unsupported { what, cs, rip } => break Outcome::Unsupported { what, cs, rip },
            RunExit::Exception(e) => {
                // Only with stop_on_exception, which the machine never sets.
                log::error!("unexpected exception exit {e}");
                break Outcome::Unsupported {
                    what: "exception returned to the engine",
                    cs: it.cpu.s.seg[1].selector,
                    rip: it.cpu.s.rip,
                };
            }
        }
    };
    RunReport {
        outcome,
        stats: it.cpu.stats.clone(),
        elapsed: start.elapsed(),
    }
}
