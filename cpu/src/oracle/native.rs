//! The host side of the native oracle: a ptraced child process with the oracle's code,
//! data and stack pages mapped at the same addresses the interpreter uses. Each case is
//! run by writing the pages, loading the registers and letting the child go until it
//! stops on a signal (the final UD2, or a fault).

use std::io;

use super::{Layout, Outcome, State};

/// A long-lived traced child that runs oracle cases natively.
pub struct NativeRunner {
    pid: libc::pid_t,
    /// The calling thread's CPU affinity before `new` pinned it next to the child.
    saved_affinity: Option<libc::cpu_set_t>,
}

/// Pins the calling thread and the child to the CPU the thread runs on: each case is a
/// ptrace ping-pong, and cross-CPU wake-ups dominate its cost otherwise. Returns the
/// thread's previous affinity.
fn pin_pair(child: libc::pid_t) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; the sched_* calls get valid pointers and sizes.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return None;
        }
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
            return None;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut one);
        let sz = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_setaffinity(0, sz, &one) != 0
            || libc::sched_setaffinity(child, sz, &one) != 0
        {
            libc::sched_setaffinity(0, sz, &old);
            return None;
        }
        Some(old)
    }
}

/// Exit codes of the child when its setup fails (before it stops itself).
const CHILD_MMAP_FAILED: i32 = 101;
const CHILD_TRACEME_FAILED: i32 = 102;

/// RFLAGS bits a case may set: the arithmetic flags and DF. TF stays clear (the child
/// would trap after every instruction); AC stays clear (Linux sets CR0.AM).
pub const CASE_FLAGS: u64 = 0xcd5;

impl NativeRunner {
    /// Forks the child and maps its pages. Fails (with a reason a test can print) when
    /// ptrace or the fixed mappings are not permitted here.
    pub fn new() -> io::Result<Self> {
        // Map addresses must be page-aligned and above vm.mmap_min_addr.
        // SAFETY: fork() in a (possibly multi-threaded) process: the child only calls
        // async-signal-safe functions (mmap, ptrace, raise, _exit) before it is stopped,
        // and afterwards it only executes case code under our control.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            child_main();
        }
        let runner = NativeRunner {
            pid,
            saved_affinity: pin_pair(pid),
        };
        match runner.wait()? {
            Stop::Signal(libc::SIGSTOP) => Ok(runner),
            Stop::Exited(CHILD_MMAP_FAILED) => Err(io::Error::other(
                "child could not map the oracle pages at their fixed addresses",
            )),
            Stop::Exited(CHILD_TRACEME_FAILED) => Err(io::Error::other(
                "ptrace(PTRACE_TRACEME) is not permitted (container/seccomp/yama?)",
            )),
            other => Err(io::Error::other(format!(
                "oracle child did not stop as expected: {other:?}"
            ))),
        }
    }

    fn wait(&self) -> io::Result<Stop> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(if libc::WIFEXITED(status) {
            Stop::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Stop::Killed(libc::WTERMSIG(status))
        } else {
            Stop::Signal(libc::WSTOPSIG(status))
        })
    }

    fn write_mem(&self, parts: &[(u64, &[u8])]) -> io::Result<()> {
        let spans = parts
            .iter()
            .map(|(a, b)| (*a, b.as_ptr() as *mut u8, b.len()));
        // SAFETY: the local spans are live slices, only read by the kernel here.
        unsafe { self.transfer(spans, libc::process_vm_writev, "process_vm_writev") }
    }

    fn read_mem(&self, parts: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        let spans = parts.iter_mut().map(|(a, b)| (*a, b.as_mut_ptr(), b.len()));
        // SAFETY: the local spans are exclusively borrowed slices the kernel writes into.
        unsafe { self.transfer(spans, libc::process_vm_readv, "process_vm_readv") }
    }

    /// Moves bytes between local spans (remote address, local pointer, length) and the
    /// child with `process_vm_readv` or `process_vm_writev`, all or nothing.
    ///
    /// # Safety
    /// Every local span must be valid for the direction of `op` for its whole length.
    unsafe fn transfer(
        &self,
        spans: impl Iterator<Item = (u64, *mut u8, usize)>,
        op: unsafe extern "C" fn(
            libc::pid_t,
            *const libc::iovec,
            libc::c_ulong,
            *const libc::iovec,
            libc::c_ulong,
            libc::c_ulong,
        ) -> libc::ssize_t,
        name: &str,
    ) -> io::Result<()> {
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for (addr, ptr, len) in spans {
            local.push(libc::iovec {
                iov_base: ptr as *mut _,
                iov_len: len,
            });
            remote.push(libc::iovec {
                iov_base: addr as usize as *mut _,
                iov_len: len,
            });
        }
        let total: usize = local.iter().map(|v| v.iov_len).sum();
        // SAFETY: the caller vouches for the local iovecs; the remote ones name the child's
        // mapped pages, which the kernel checks.
        let n = unsafe {
            op(
                self.pid,
                local.as_ptr(),
                local.len() as _,
                remote.as_ptr(),
                remote.len() as _,
                0,
            )
        };
        if n < 0 || n as usize != total {
            return Err(io::Error::other(format!(
                "{name}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    fn ptrace(&self, req: libc::c_uint, data: *mut libc::c_void) -> io::Result<()> {
        // SAFETY: requests on our stopped tracee; `data` points at a properly sized
        // struct for the request (or is null/a signal number).
        let r = unsafe { libc::ptrace(req, self.pid, std::ptr::null_mut::<libc::c_void>(), data) };
        if r < 0 {
            return Err(io::Error::other(format!(
                "ptrace({req}): {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Runs `code` (which must end in UD2) from `init` and returns the final state.
    pub fn run(&mut self, code: &[u8], init: &State) -> io::Result<(State, Outcome)> {
        let l = Layout::get();
        self.write_mem(&[(l.code, code), (l.data, &init.data), (l.stack, &init.stack)])?;
        // SAFETY: user_regs_struct is plain data; all-zero is a valid value.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        self.ptrace(libc::PTRACE_GETREGS, &mut regs as *mut _ as *mut _)?;
        set_gprs(&mut regs, &init.gpr);
        regs.rip = l.code;
        regs.eflags = 0x202 | (init.rflags & CASE_FLAGS);
        // Not in a system call: keeps the kernel from "restarting" one on resume.
        regs.orig_rax = u64::MAX;
        self.ptrace(libc::PTRACE_SETREGS, &mut regs as *mut _ as *mut _)?;
        self.ptrace(libc::PTRACE_CONT, std::ptr::null_mut())?;
        let sig = match self.wait()? {
            Stop::Signal(s) => s,
            other => return Err(io::Error::other(format!("oracle child ended: {other:?}"))),
        };
        self.ptrace(libc::PTRACE_GETREGS, &mut regs as *mut _ as *mut _)?;
        let mut out = State {
            gpr: get_gprs(&regs),
            rflags: regs.eflags,
            rip: regs.rip,
            ..init.clone()
        };
        {
            let (d, s) = (&mut out.data, &mut out.stack);
            self.read_mem(&mut [(l.data, &mut d[..]), (l.stack, &mut s[..])])?;
        }
        let outcome = self.outcome(sig, regs.rip, code.len() as u64)?;
        Ok((out, outcome))
    }

    fn outcome(&self, sig: i32, rip: u64, code_len: u64) -> io::Result<Outcome> {
        let l = Layout::get();
        if sig == libc::SIGILL && rip == l.code + code_len - 2 {
            return Ok(Outcome::Completed);
        }
        // SAFETY: siginfo_t is plain data; PTRACE_GETSIGINFO fills it.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        self.ptrace(libc::PTRACE_GETSIGINFO, &mut si as *mut _ as *mut _)?;
        // SAFETY: si_addr is valid to read for the fault signals it is used with.
        let addr = unsafe { si.si_addr() } as u64;
        Ok(match sig {
            libc::SIGILL => Outcome::Fault {
                vector: crate::exception::UD,
                cr2: None,
            },
            libc::SIGFPE => Outcome::Fault {
                vector: crate::exception::DE,
                cr2: None,
            },
            // The kernel reports #GP (and non-canonical accesses) as SI_KERNEL, page
            // faults with the faulting address.
            libc::SIGSEGV if si.si_code == libc::SI_KERNEL => Outcome::Fault {
                vector: crate::exception::GP,
                cr2: None,
            },
            libc::SIGSEGV => Outcome::Fault {
                vector: crate::exception::PF,
                cr2: Some(addr),
            },
            // BUS_ADRALN is #AC; everything else is #SS (do_error_trap(SIGBUS) for #SS).
            libc::SIGBUS if si.si_code == libc::BUS_ADRALN => Outcome::Fault {
                vector: crate::exception::AC,
                cr2: None,
            },
            libc::SIGBUS => Outcome::Fault {
                vector: crate::exception::SS,
                cr2: None,
            },
            libc::SIGTRAP => Outcome::Fault {
                vector: crate::exception::BP,
                cr2: None,
            },
            s => Outcome::Signal(s),
        })
    }
}

impl Drop for NativeRunner {
    fn drop(&mut self) {
        // SAFETY: kills and reaps our own child only.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, libc::__WALL);
            if let Some(old) = &self.saved_affinity {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old);
            }
        }
    }
}

#[derive(Debug)]
enum Stop {
    Exited(i32),
    Killed(#[allow(dead_code)] i32),
    Signal(i32),
}

/// The child: map the pages, ask to be traced, stop. The parent does the rest.
fn child_main() -> ! {
    let l = Layout::get();
    let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
    for (addr, len) in [
        (l.code, l.code_len),
        (l.data, l.data_len),
        (l.stack, l.stack_len),
    ] {
        // SAFETY: anonymous fixed mapping in our own (forked) address space; NOREPLACE
        // refuses to clobber anything already there.
        let p = unsafe { libc::mmap(addr as usize as *mut _, len, prot, flags, -1, 0) };
        if p as usize != addr as usize {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(CHILD_MMAP_FAILED) };
        }
    }
    // SAFETY: PTRACE_TRACEME takes no pointers; raise and _exit are async-signal-safe.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
            libc::_exit(CHILD_TRACEME_FAILED);
        }
        libc::raise(libc::SIGSTOP);
        // Only reached if the parent lets us run without registers set.
        libc::_exit(0)
    }
}

fn set_gprs(r: &mut libc::user_regs_struct, g: &[u64; 16]) {
    r.rax = g[0];
    r.rcx = g[1];
    r.rdx = g[2];
    r.rbx = g[3];
    r.rsp = g[4];
    r.rbp = g[5];
    r.rsi = g[6];
    r.rdi = g[7];
    r.r8 = g[8];
    r.r9 = g[9];
    r.r10 = g[10];
    r.r11 = g[11];
    r.r12 = g[12];
    r.r13 = g[13];
    r.r14 = g[14];
    r.r15 = g[15];
}

fn get_gprs(r: &libc::user_regs_struct) -> [u64; 16] {
    [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}
