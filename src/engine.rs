//! Running a machine on an engine until the guest stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twinvm_cpu::{CpuEnv, CpuState, CpuStats, Interpreter, RunExit};
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
    m: &Machine,
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
    let outcome = loop {
        let exit = it.run(SLICE);
        if let Some(q) = &input {
            let bytes = q.take();
            if !bytes.is_empty() {
                twinvm_devices::bus::lock(&m.uart).push_input(&bytes);
            }
        }
        let deadline = m.poll_timers();
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
                if !twinvm_devices::InterruptController::intr_pending(m.isa.as_ref()) {
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
        final_state: it.cpu.state(),
    }
}
