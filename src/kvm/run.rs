//! The vCPU run loop: KVM_RUN, exits to the shared device buses, interrupt injection at the
//! interrupt window, halts, timers and the interpreter fallback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_run, KVM_INTERNAL_ERROR_EMULATION};
use kvm_ioctls::{VcpuExit, VcpuFd};
use twinvm_cpu::state::{rflags, CS};
use twinvm_cpu::{CpuEnv, CpuState, CpuStats, RunExit};
use twinvm_devices::{InterruptController, StopRequest};

use super::device::{ioctl, KvmError, KvmVm};
use super::fallback::{Fallback, Stretch};
use super::kick::Kicker;
use super::vcpu_state::{self, MsrSet};
use super::{cpuid, memory, KvmOptions};
use crate::console::InputQueue;
use crate::engine::{Outcome, RunReport};
use crate::error::VmError;
use crate::vm::Machine;

/// KVM_INTERRUPT: _IOW(KVMIO, 0x86, struct kvm_interrupt), which kvm-ioctls does not wrap.
const KVM_INTERRUPT: libc::c_ulong = 0x4004_ae86;

/// The longest a halted vCPU sleeps before looking again (as the interpreter engine).
const HALT_WAIT_MAX: Duration = Duration::from_millis(1);

fn inject(vcpu: &VcpuFd, vector: u8) -> Result<(), KvmError> {
    use std::os::unix::io::AsRawFd;
    let irq: u32 = vector.into();
    // SAFETY: KVM_INTERRUPT reads one u32 from the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_INTERRUPT as _, &irq as *const u32) };
    if r < 0 {
        return Err(KvmError::Ioctl {
            what: "KVM_INTERRUPT",
            err: kvm_ioctls::Error::last(),
        });
    }
    Ok(())
}

/// Everything the loop needs besides the machine.
struct Vcpu {
    vm: KvmVm,
    fd: VcpuFd,
    run: *mut kvm_run,
    msrs: MsrSet,
    /// The state last loaded into or read from KVM (for fields KVM does not hold).
    last: CpuState,
    halted: bool,
    /// RFLAGS.IF and "KVM will take an injection now", as of the last exit.
    if_flag: bool,
    ready_for_injection: bool,
    stats: CpuStats,
}

impl Vcpu {
    fn get_state(&self) -> Result<CpuState, KvmError> {
        vcpu_state::get_state(&self.fd, &self.vm.caps, &self.msrs, &self.last)
    }

    fn set_state(&mut self, s: CpuState, prev: Option<&CpuState>) -> Result<(), KvmError> {
        vcpu_state::set_state(&self.fd, &self.vm.caps, &self.msrs, &s, prev)?;
        self.if_flag = s.rflags & rflags::IF != 0;
        self.halted = s.events.halted;
        // Stale after a state change: ask KVM for a window instead of guessing.
        self.ready_for_injection = false;
        self.last = s;
        Ok(())
    }

    fn cs_rip(&self) -> (u16, u64) {
        match self.get_state() {
            Ok(s) => (s.seg[CS].selector, s.rip),
            Err(_) => (self.last.seg[CS].selector, self.last.rip),
        }
    }

    fn set_immediate_exit(&mut self, v: u8) {
        // SAFETY: `run` is this vCPU's mapped kvm_run page; the kicker thread writes the same
        // byte, so both sides use volatile byte stores.
        unsafe { std::ptr::addr_of_mut!((*self.run).immediate_exit).write_volatile(v) };
    }

    fn set_request_window(&mut self, v: bool) {
        // SAFETY: as above; only this thread writes this byte.
        unsafe { (*self.run).request_interrupt_window = u8::from(v) };
    }
}

fn kvm_err(e: KvmError) -> VmError {
    VmError::Kvm(e.to_string())
}

/// Opens KVM, builds the VM around `m` and prepares the vCPU at `m.boot_state`.
fn setup(m: &Machine, opts: &KvmOptions) -> Result<Vcpu, KvmError> {
    let vm = KvmVm::open(&opts.device)?;
    memory::map_guest_memory(&vm, &m.mem)?;
    let supported = vm
        .kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    let (table, report) =
        cpuid::build(&m.model, &supported, opts.strict_cpuid).map_err(KvmError::Setup)?;
    if let Some(line) = report.summary() {
        eprintln!("twinvm: {line}");
    }
    let mut fd = vm.create_vcpu(0)?;
    fd.set_cpuid2(&table).map_err(ioctl("KVM_SET_CPUID2"))?;
    let msrs = MsrSet::new(&vm)?;
    let run = fd.get_kvm_run() as *mut kvm_run;
    let mut v = Vcpu {
        vm,
        fd,
        run,
        msrs,
        last: m.boot_state.clone(),
        halted: false,
        if_flag: false,
        ready_for_injection: false,
        stats: CpuStats::default(),
    };
    v.set_state(m.boot_state.clone(), None)?;
    Ok(v)
}

/// Runs `m` under KVM until the guest stops it. Fails with a one-line message (status
/// `KVM_UNAVAILABLE`) when KVM cannot be used, or when an instruction can be run neither by
/// KVM nor by the interpreter.
pub fn run_kvm(
    m: &Machine,
    input: Option<Arc<InputQueue>>,
    opts: &KvmOptions,
) -> Result<RunReport, VmError> {
    let mut v = setup(m, opts).map_err(kvm_err)?;
    let env = CpuEnv {
        mem: m.mem.clone(),
        pio: m.pio.clone(),
        mmio: m.mmio.clone(),
        control: m.control.clone(),
        intc: m.isa.clone(),
        clock: m.clock.clone(),
        model: m.model.clone(),
    };
    let mut fallback = Fallback::new(env, m.boot_state.clone());
    let kicker = Kicker::start(v.run, m.clock.clone(), m.control.clone());
    let start = Instant::now();
    let outcome = run_loop(m, &mut v, &mut fallback, &kicker, input.as_deref());
    drop(kicker);
    // The state KVM holds at the stop; if KVM cannot give it back, the interpreter's copy
    // from the last fallback is the best there is.
    let final_state = v
        .get_state()
        .unwrap_or_else(|_| fallback.interpreter().cpu.state());
    let mut stats = v.stats;
    // What the interpreter did during fallback stretches counts too (an interrupt it took
    // at the block boundary, a port write inside the block…).
    let is = &fallback.interpreter().cpu.stats;
    stats.interrupts += is.interrupts;
    stats.halts += is.halts;
    stats.exceptions += is.exceptions;
    stats.pio_reads += is.pio_reads;
    stats.pio_writes += is.pio_writes;
    stats.mmio_reads += is.mmio_reads;
    stats.mmio_writes += is.mmio_writes;
    stats.instructions = fallback.instructions();
    stats.fallbacks = fallback.counts;
    let vcpu_instructions = vec![stats.instructions];
    Ok(RunReport {
        outcome: outcome?,
        vcpu_instructions,
        stats,
        elapsed: start.elapsed(),
        final_state,
    })
}

fn run_loop(
    m: &Machine,
    v: &mut Vcpu,
    fallback: &mut Fallback,
    kicker: &Kicker,
    input: Option<&InputQueue>,
) -> Result<Outcome, VmError> {
    loop {
        if let Some(req) = m.control.take() {
            return Ok(match req {
                StopRequest::DebugExit(s) => Outcome::DebugExit(s),
                StopRequest::PowerOff => Outcome::PowerOff,
                StopRequest::Reset => Outcome::Reset,
                StopRequest::UserQuit => Outcome::UserQuit,
            });
        }
        if let Some(q) = input {
            let bytes = q.take();
            if !bytes.is_empty() {
                twinvm_devices::bus::lock(&m.uart).push_input(&bytes);
            }
        }
        let deadline = m.poll_timers();
        kicker.set_deadline(deadline);
        let pending = m.isa.intr_pending();
        if v.halted {
            if !v.if_flag {
                let (cs, rip) = v.cs_rip();
                return Ok(Outcome::DeadHalt { cs, rip });
            }
            if !pending {
                let now = m.clock.now_ns();
                let wait =
                    deadline.map_or(HALT_WAIT_MAX.as_nanos() as u64, |d| d.saturating_sub(now));
                let wait = Duration::from_nanos(wait).min(HALT_WAIT_MAX);
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                continue;
            }
        }
        if pending {
            if v.ready_for_injection && v.if_flag {
                if let Some(vector) = m.isa.acknowledge() {
                    inject(&v.fd, vector).map_err(kvm_err)?;
                    v.stats.interrupts += 1;
                    v.halted = false;
                }
                v.set_request_window(false);
            } else {
                v.set_request_window(true);
            }
        } else {
            v.set_request_window(false);
        }
        if let Some(o) = enter(m, v, fallback)? {
            return Ok(o);
        }
    }
}

/// One KVM_RUN and the handling of its exit.
fn enter(m: &Machine, v: &mut Vcpu, fallback: &mut Fallback) -> Result<Option<Outcome>, VmError> {
    let run = v.run;
    let result = v.fd.run();
    v.stats.kvm_exits += 1;
    let mut emulation_failure = None;
    match result {
        Ok(exit) => match exit {
            VcpuExit::IoIn(port, data) => {
                // SAFETY: the exit is KVM_EXIT_IO, so the `io` member of the union is valid.
                let size = usize::from(unsafe { (*run).__bindgen_anon_1.io.size }).max(1);
                for chunk in data.chunks_mut(size) {
                    m.pio.read(port.into(), chunk);
                    v.stats.pio_reads += 1;
                }
            }
            VcpuExit::IoOut(port, data) => {
                // SAFETY: as above.
                let size = usize::from(unsafe { (*run).__bindgen_anon_1.io.size }).max(1);
                for chunk in data.chunks(size) {
                    m.pio.write(port.into(), chunk);
                    v.stats.pio_writes += 1;
                }
            }
            VcpuExit::MmioRead(addr, data) => {
                m.mmio.read(addr, data);
                v.stats.mmio_reads += 1;
            }
            VcpuExit::MmioWrite(addr, data) => {
                // A write to a read-only (ROM) slot: dropped, as the interpreter drops it.
                if !memory::is_rom(&m.mem, addr) {
                    m.mmio.write(addr, data);
                }
                v.stats.mmio_writes += 1;
            }
            VcpuExit::Hlt => {
                v.stats.halts += 1;
                v.halted = true;
            }
            VcpuExit::IrqWindowOpen | VcpuExit::Intr => {}
            VcpuExit::Shutdown => {
                let (cs, rip) = v.cs_rip();
                return Ok(Some(Outcome::TripleFault { cs, rip }));
            }
            VcpuExit::InternalError => {
                // SAFETY: the exit is KVM_EXIT_INTERNAL_ERROR, so `internal` is valid.
                let sub = unsafe { (*run).__bindgen_anon_1.internal.suberror };
                emulation_failure = Some(sub);
            }
            VcpuExit::FailEntry(reason, _) => {
                let (cs, rip) = v.cs_rip();
                return Err(VmError::Kvm(format!(
                    "KVM could not enter the guest at {cs:#x}:{rip:#x} (hardware reason {reason:#x})"
                )));
            }
            VcpuExit::SystemEvent(kind, _) => {
                return Ok(Some(match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => Outcome::Reset,
                    _ => Outcome::PowerOff,
                }));
            }
            other => {
                let what = format!("{other:?}");
                let (cs, rip) = v.cs_rip();
                return Err(VmError::Kvm(format!(
                    "unexpected KVM exit {what} at {cs:#x}:{rip:#x}"
                )));
            }
        },
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
        Err(e) => {
            return Err(VmError::Kvm(format!("KVM_RUN failed: {e}")));
        }
    }
    v.set_immediate_exit(0);
    // SAFETY: `run` is the live kvm_run page; these bytes are valid after every return.
    let (if_flag, ready) = unsafe {
        (
            (*run).if_flag != 0,
            (*run).ready_for_interrupt_injection != 0,
        )
    };
    v.if_flag = if_flag;
    v.ready_for_injection = ready;
    match emulation_failure {
        None => Ok(None),
        Some(KVM_INTERNAL_ERROR_EMULATION) => run_fallback(v, fallback),
        Some(sub) => {
            let (cs, rip) = v.cs_rip();
            Err(VmError::Kvm(format!(
                "KVM internal error (suberror {sub}) at {cs:#x}:{rip:#x}"
            )))
        }
    }
}

/// KVM could not emulate the instruction at RIP: run it in the interpreter.
fn run_fallback(v: &mut Vcpu, fallback: &mut Fallback) -> Result<Option<Outcome>, VmError> {
    let s = v.get_state().map_err(kvm_err)?;
    v.last = s.clone();
    let stretch = fallback.run(&s).map_err(VmError::Unsupported)?;
    let (exit, out) = match stretch {
        Stretch::Continue(out) => (None, out),
        Stretch::Exit(e, out) => (Some(e), out),
    };
    let (cs, rip) = (out.seg[CS].selector, out.rip);
    v.set_state(*out, Some(&s)).map_err(kvm_err)?;
    Ok(match exit {
        Some(RunExit::TripleFault { cs, rip }) => Some(Outcome::TripleFault { cs, rip }),
        // A stop request is taken at the top of the loop.
        Some(RunExit::Stop) | None => None,
        Some(other) => {
            return Err(VmError::Unsupported(format!(
                "interpreter fallback ended with {other:?} at {cs:#x}:{rip:#x}"
            )))
        }
    })
}
