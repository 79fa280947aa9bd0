//! The KVM side: one small VM, set up once, that runs each stream natively at CPL 3 until
//! it traps to the ring-0 HLT of its vector.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_sregs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{VcpuExit, VcpuFd};
use twinvm_cpu::oracle::{Layout, State};
use twinvm_devices::GuestMemory;

use super::machine::{self, HANDLERS, HANDLER_STRIDE, RSP0, USER_CS};
use super::outcome::{End, Stop};
use super::watchdog::Watchdog;
use crate::kvm::device::{ioctl, KvmError, KvmVm};
use crate::kvm::{memory, state};

/// A stream that has not trapped back to ring 0 by then is reported as hung (streams run
/// microseconds).
const TIMEOUT: Duration = Duration::from_millis(500);

/// How a time-out is reported (`Stop::Other`).
pub const TIMED_OUT: &str = "no trap back to ring 0 within";

pub struct KvmSide {
    // Field order: the watchdog (which writes into the vCPU's kvm_run page) goes first,
    // then the vCPU and VM, before the memory their slots point into.
    watchdog: Watchdog,
    vcpu: VcpuFd,
    _vm: KvmVm,
    mem: Arc<GuestMemory>,
    sregs: kvm_sregs,
    /// KVM_RUN calls made (one per stream unless something unexpected exits).
    pub entries: u64,
}

impl KvmSide {
    /// Opens `device` and builds the fuzz VM. Fails with the KVM engine's error.
    pub fn new(device: &Path) -> Result<KvmSide, KvmError> {
        let vm = KvmVm::open(device)?;
        let mem = Arc::new(
            GuestMemory::new(machine::MEM_SIZE)
                .map_err(|e| KvmError::Setup(format!("guest memory: {e:?}")))?,
        );
        machine::write_system(&mem).map_err(KvmError::Setup)?;
        let mem = memory::map_guest_memory(&vm, &mem)?;
        let mut vcpu = vm.create_vcpu(0)?;
        // Long mode needs a CPUID table; ring 3 runs natively whatever it says.
        let cpuid = vm
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
        let sregs = state::sregs_from_state(&machine::user_state());
        // It must start on the thread that runs the vCPU.
        let watchdog = Watchdog::start(vcpu.get_kvm_run() as *mut _);
        Ok(KvmSide {
            watchdog,
            vcpu,
            _vm: vm,
            mem,
            sregs,
            entries: 0,
        })
    }

    /// Runs `code` (ending in UD2) from `init` and reads back where it stopped.
    pub fn run(&mut self, code: &[u8], init: &State) -> Result<End, KvmError> {
        let l = Layout::get();
        write_sandbox(&self.mem, code, init).map_err(KvmError::Setup)?;
        // Every stream starts at CPL 3 again (the last one ended in the ring-0 handler).
        self.vcpu
            .set_sregs(&self.sregs)
            .map_err(ioctl("KVM_SET_SREGS"))?;
        let regs = crate::kvm::state::regs_from_gprs(&init.gpr, l.code, start_rflags(init.rflags));
        self.vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
        let start = Instant::now();
        self.watchdog.arm(Some(TIMEOUT));
        let exit = loop {
            self.entries += 1;
            match self.vcpu.run() {
                Ok(VcpuExit::Hlt) => break None,
                Ok(VcpuExit::Intr) => {}
                Ok(other) => break Some(format!("unexpected KVM exit {other:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return Err(ioctl("KVM_RUN")(e)),
            }
            // Kicked: clear the kick, and go on unless the stream is taking too long.
            self.vcpu.get_kvm_run().immediate_exit = 0;
            if start.elapsed() > TIMEOUT {
                break Some(format!("{TIMED_OUT} {} ms", TIMEOUT.as_millis()));
            }
        };
        self.watchdog.arm(None);
        // A kick that came after the exit must not cut the next run short.
        self.vcpu.get_kvm_run().immediate_exit = 0;
        let r = self.vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))?;
        let mut s = init.clone();
        s.gpr = crate::kvm::state::gprs_from_regs(&r);
        s.rip = r.rip;
        s.rflags = r.rflags;
        read_sandbox(&self.mem, &mut s).map_err(KvmError::Setup)?;
        if let Some(why) = exit {
            return Ok(End {
                state: s,
                stop: Stop::Other(why),
            });
        }
        let stop = self.frame(&r, &mut s)?;
        Ok(End { state: s, stop })
    }

    /// Decodes the exception from the HLT's address and the ring-0 frame, and puts the
    /// interrupted RIP/RFLAGS/RSP into `s`.
    fn frame(&self, r: &kvm_regs, s: &mut State) -> Result<Stop, KvmError> {
        let off = r.rip.wrapping_sub(HANDLERS + 1);
        if !off.is_multiple_of(HANDLER_STRIDE) || off / HANDLER_STRIDE > 255 {
            return Ok(Stop::Other(format!(
                "halted outside the handlers at {:#x}",
                r.rip
            )));
        }
        let vector = (off / HANDLER_STRIDE) as u8;
        let rd = |a: u64| {
            self.mem
                .read_u64(a)
                .map_err(|e| KvmError::Setup(format!("reading the exception frame: {e:?}")))
        };
        let (error_code, frame) = match RSP0.wrapping_sub(r.rsp) {
            48 => (Some(rd(r.rsp)? as u32), r.rsp + 8),
            40 => (None, r.rsp),
            _ => {
                return Ok(Stop::Other(format!(
                    "vector {vector} with an unexpected ring-0 stack {:#x}",
                    r.rsp
                )))
            }
        };
        let cs = rd(frame + 8)?;
        if cs as u16 != USER_CS {
            return Ok(Stop::Other(format!(
                "vector {vector} raised in ring 0 (frame CS {cs:#x})"
            )));
        }
        s.rip = rd(frame)?;
        s.rflags = rd(frame + 16)?;
        s.gpr[4] = rd(frame + 24)?;
        let cr2 = if vector == 14 {
            Some(self.vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?.cr2)
        } else {
            None
        };
        Ok(Stop::Exception {
            vector,
            error_code,
            cr2,
        })
    }
}

/// RFLAGS a stream starts with: its arithmetic flags and DF, with IF=1 and IOPL=0.
pub fn start_rflags(case: u64) -> u64 {
    0x202 | (case & twinvm_cpu::oracle::COMPARED_FLAGS)
}

/// Writes the code page (code, then zeros), the data pages and the stack page.
pub fn write_sandbox(mem: &GuestMemory, code: &[u8], init: &State) -> Result<(), String> {
    let l = Layout::get();
    let mut page = vec![0u8; l.code_len];
    let n = code.len().min(page.len());
    page[..n].copy_from_slice(&code[..n]);
    mem.write(l.code, &page)
        .and(mem.write(l.data, &init.data))
        .and(mem.write(l.stack, &init.stack))
        .map_err(|e| format!("writing the sandbox: {e:?}"))
}

/// Reads the data and stack pages into `s`.
pub fn read_sandbox(mem: &GuestMemory, s: &mut State) -> Result<(), String> {
    let l = Layout::get();
    s.data.resize(l.data_len, 0);
    s.stack.resize(l.stack_len, 0);
    mem.read(l.data, &mut s.data)
        .and(mem.read(l.stack, &mut s.stack))
        .map_err(|e| format!("reading the sandbox: {e:?}"))
}
