//! Running a machine on an engine until the guest stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twinvm_cpu::state::{Segment, CS};
use twinvm_cpu::{CpuEnv, CpuState, CpuStats, Interpreter, RunExit};
use twinvm_devices::clock::Clock;
use twinvm_devices::lapic::{InitSipi, VcpuApic};
use twinvm_devices::{InterruptController, StopRequest};

use crate::accel::Accel;
use crate::apic_port::ApicPort;
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
    /// Summed over every vCPU.
    pub stats: CpuStats,
    /// Instructions executed by each vCPU, in vCPU order.
    pub vcpu_instructions: Vec<u64>,
    pub elapsed: Duration,
    /// vCPU 0's architectural state when the guest stopped (compared across engines).
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
/// With several vCPUs taking turns on one host thread, shorter slices keep IPIs and
/// spin-waits on another vCPU responsive.
const SMP_SLICE: u64 = 20_000;

/// The interpreter for vCPU `index` of `m`, wired to its local APIC: vCPU 0 starts from
/// the boot state, the others from RESET (they wait for INIT/SIPI).
fn new_interpreter(m: &Machine, index: usize) -> (Interpreter, Arc<VcpuApic>) {
    let apic = m.apics.vcpus[index].clone();
    let env = CpuEnv {
        mem: m.mem.clone(),
        pio: m.pio.clone(),
        mmio: m.mmio.clone(),
        control: m.control.clone(),
        intc: apic.clone(),
        clock: m.clock.clone(),
        model: m.model.clone(),
    };
    let state = if index == 0 {
        m.boot_state.clone()
    } else {
        CpuState::reset()
    };
    let mut it = Interpreter::new(env, state);
    it.cpu.apic_id = index as u8;
    it.cpu.apic = Some(Arc::new(ApicPort(apic.clone())));
    (it, apic)
}

/// The interpreter running one vCPU of a machine, with the platform work between slices
/// (timers, console input, halts, stop requests). The gdb stub drives the same object.
pub struct InterpVcpu {
    pub m: Arc<Machine>,
    pub it: Interpreter,
    apic: Arc<VcpuApic>,
    input: Option<Arc<InputQueue>>,
    start: Instant,
    /// The earliest device deadline seen at the last poll.
    deadline: Option<u64>,
    /// Under --icount: virtual time skipped while halted, on top of instructions << shift.
    skipped_ns: u64,
}

impl InterpVcpu {
    pub fn new(m: Arc<Machine>, input: Option<Arc<InputQueue>>) -> Self {
        let (it, apic) = new_interpreter(&m, 0);
        InterpVcpu {
            m,
            it,
            apic,
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
                let idle = !self.apic.intr_pending();
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
            vcpu_instructions: vec![self.it.cpu.stats.instructions],
            elapsed: self.start.elapsed(),
            final_state: self.it.cpu.state(),
        }
    }
}

/// Runs the machine's vCPUs on the interpreter until the guest stops the machine.
pub fn run_interp(m: &Arc<Machine>, input: Option<Arc<InputQueue>>) -> RunReport {
    if m.apics.vcpus.len() > 1 {
        return run_smp(m, input);
    }
    let mut v = InterpVcpu::new(m.clone(), input);
    loop {
        let exit = v.run_slice();
        if let Some(o) = v.after_run(exit) {
            return v.report(o);
        }
    }
}

/// A vCPU as the interpreter runs it.
struct Vcpu {
    it: Interpreter,
    apic: Arc<VcpuApic>,
    /// An application processor after INIT: it runs nothing until a start-up IPI.
    wait_for_sipi: bool,
}

impl Vcpu {
    fn new(m: &Machine, index: usize) -> Vcpu {
        let (it, apic) = new_interpreter(m, index);
        Vcpu {
            it,
            apic,
            wait_for_sipi: index != 0,
        }
    }

    /// Acts on INIT and start-up IPIs, in the order they arrived. INIT resets the vCPU (the
    /// BSP restarts at the reset vector, an AP waits for SIPI); a SIPI starts a waiting AP
    /// in real mode at vector << 8 : 0.
    fn take_init_sipi(&mut self) {
        while let Some(e) = self.apic.take_init_sipi() {
            match e {
                InitSipi::Init => {
                    self.it.set_state(CpuState::reset());
                    self.wait_for_sipi = self.apic.cpu() != 0;
                }
                InitSipi::Sipi(v) if self.wait_for_sipi => {
                    let mut s = CpuState::reset();
                    s.seg[CS] = Segment {
                        selector: (v as u16) << 8,
                        base: (v as u64) << 12,
                        ..s.seg[CS]
                    };
                    s.rip = 0;
                    self.it.set_state(s);
                    self.wait_for_sipi = false;
                }
                // A SIPI to a running vCPU is ignored.
                InitSipi::Sipi(_) => {}
            }
        }
    }

    /// Whether a halted vCPU has something to wake up for now.
    fn wakeable_now(&self) -> bool {
        let c = &self.it.cpu;
        (c.s.rflags & twinvm_cpu::state::rflags::IF != 0 && self.apic.intr_pending())
            || c.s.events.nmi_pending
            || self.apic.signals().nmi()
            || self.apic.signals().init_sipi()
    }
}

fn add_stats(total: &mut CpuStats, s: &CpuStats) {
    total.instructions += s.instructions;
    total.pio_reads += s.pio_reads;
    total.pio_writes += s.pio_writes;
    total.mmio_reads += s.mmio_reads;
    total.mmio_writes += s.mmio_writes;
    total.halts += s.halts;
    total.interrupts += s.interrupts;
    total.exceptions += s.exceptions;
    total.blocks_decoded += s.blocks_decoded;
    total.smc_invalidations += s.smc_invalidations;
    total.tlb_flushes += s.tlb_flushes;
    total.cr3_loads += s.cr3_loads;
    for (k, v) in &s.unimplemented {
        *total.unimplemented.entry(k.clone()).or_insert(0) += v;
    }
    for (k, v) in &s.unknown_msrs {
        *total.unknown_msrs.entry(*k).or_insert(0) += v;
    }
}

/// Runs several vCPUs in turn on this thread until the guest stops the machine. (Not
/// under `--icount`, which the CLI refuses with `--smp` above 1.)
fn run_smp(m: &Machine, input: Option<Arc<InputQueue>>) -> RunReport {
    let start = Instant::now();
    let n = m.apics.vcpus.len().max(1);
    let mut vcpus: Vec<Vcpu> = (0..n).map(|i| Vcpu::new(m, i)).collect();
    let slice = if n == 1 { SLICE } else { SMP_SLICE };
    let outcome = 'run: loop {
        let mut busy = false;
        for v in vcpus.iter_mut() {
            v.take_init_sipi();
            if v.wait_for_sipi {
                continue;
            }
            match v.it.run(slice) {
                RunExit::Budget => busy = true,
                RunExit::Halted => busy |= v.wakeable_now(),
                RunExit::Stop => match m.control.take() {
                    Some(StopRequest::DebugExit(s)) => break 'run Outcome::DebugExit(s),
                    Some(StopRequest::PowerOff) => break 'run Outcome::PowerOff,
                    Some(StopRequest::Reset) => break 'run Outcome::Reset,
                    Some(StopRequest::UserQuit) => break 'run Outcome::UserQuit,
                    None => busy = true,
                },
                RunExit::TripleFault { cs, rip } => break 'run Outcome::TripleFault { cs, rip },
                RunExit::Unsupported { what, cs, rip } => {
                    break 'run Outcome::Unsupported { what, cs, rip }
                }
                RunExit::Exception(e) => {
                    // Only with stop_on_exception, which the machine never sets.
                    log::error!("unexpected exception exit {e}");
                    break 'run Outcome::Unsupported {
                        what: "exception returned to the engine",
                        cs: v.it.cpu.s.seg[CS].selector,
                        rip: v.it.cpu.s.rip,
                    };
                }
            }
        }
        if let Some(q) = &input {
            let bytes = q.take();
            if !bytes.is_empty() {
                twinvm_devices::bus::lock(&m.uart).push_input(&bytes);
            }
        }
        let deadline = m.poll_timers();
        if busy || vcpus.iter().any(|v| !v.wait_for_sipi && v.wakeable_now()) {
            continue;
        }
        // Every vCPU is halted or waiting for SIPI. If none can ever wake, stop.
        if vcpus.iter().all(|v| v.wait_for_sipi || !v.it.can_wake()) {
            let s = &vcpus[0].it.cpu.s;
            break Outcome::DeadHalt {
                cs: s.seg[CS].selector,
                rip: s.rip,
            };
        }
        let now = m.clock.now_ns();
        let wait = deadline
            .map_or(1_000_000, |d| d.saturating_sub(now))
            .min(1_000_000);
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait));
        }
        m.poll_timers();
    };
    let mut stats = CpuStats::default();
    for v in &vcpus {
        add_stats(&mut stats, &v.it.cpu.stats);
    }
    RunReport {
        outcome,
        stats,
        vcpu_instructions: vcpus.iter().map(|v| v.it.cpu.stats.instructions).collect(),
        elapsed: start.elapsed(),
        final_state: vcpus[0].it.cpu.state(),
    }
}
