//! Getting the vCPU thread out of KVM_RUN on time: a helper thread that, at the next device
//! deadline (or a stop request), sets `immediate_exit` and signals the vCPU thread.
//!
//! `immediate_exit` closes the race a signal alone leaves open: a kick that lands while the
//! vCPU thread is in user space makes its next KVM_RUN return at once instead of being lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;
use twinvm_devices::clock::Clock;
use twinvm_devices::VmControl;

/// The longest the vCPU runs without a look from the run loop (console input, stop
/// requests from other threads).
const MAX_SLICE: Duration = Duration::from_millis(10);
/// How often a pending stop request (from another thread) is pushed at the vCPU.
const STOP_POLL: Duration = Duration::from_millis(1);

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the no-op handler once per process. Without SA_RESTART, KVM_RUN returns EINTR.
pub fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing is valid; installing it
        // affects only our private real-time signal.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// The kvm_run page, shared with the kicker thread.
#[derive(Clone, Copy)]
struct RunPtr(*mut kvm_run);
// SAFETY: the kicker only does a volatile byte store to `immediate_exit`, which KVM defines
// as writable by user space at any time; the page outlives the kicker (joined on drop).
unsafe impl Send for RunPtr {}

struct Shared {
    /// Clock time (ns) of the next device deadline.
    deadline: Mutex<Option<u64>>,
    wake: Condvar,
    stop: AtomicBool,
}

pub struct Kicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Kicker {
    /// Starts the kicker for the calling thread (the vCPU thread) and its kvm_run page.
    pub fn start(run: *mut kvm_run, clock: Arc<dyn Clock>, control: Arc<VmControl>) -> Kicker {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let shared = Arc::new(Shared {
            deadline: Mutex::new(None),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let run = RunPtr(run);
        let thread = std::thread::Builder::new()
            .name("twinvm-kick".into())
            .spawn(move || kicker_loop(&sh, run, target, clock.as_ref(), &control))
            .ok();
        Kicker { shared, thread }
    }

    /// Tells the kicker when the devices next need polling.
    pub fn set_deadline(&self, deadline: Option<u64>) {
        *twinvm_devices::bus::lock(&self.shared.deadline) = deadline;
        self.shared.wake.notify_one();
    }
}

/// Kicks the vCPU thread `target` out of KVM_RUN (its kvm_run page is `run`); for
/// watchdogs other than the `Kicker`. `install_handler` must have run.
///
/// # Safety
/// `run` must point to the live kvm_run page of the vCPU that `target` runs.
pub unsafe fn kick_vcpu(run: *mut kvm_run, target: libc::pthread_t) {
    kick(RunPtr(run), target);
}

fn kick(run: RunPtr, target: libc::pthread_t) {
    // SAFETY: see RunPtr; immediate_exit is a plain byte KVM reads at entry.
    unsafe { std::ptr::addr_of_mut!((*run.0).immediate_exit).write_volatile(1) };
    // SAFETY: `target` is the vCPU thread, alive until the kicker is joined.
    unsafe { libc::pthread_kill(target, kick_signal()) };
}

fn kicker_loop(
    sh: &Shared,
    run: RunPtr,
    target: libc::pthread_t,
    clock: &dyn Clock,
    control: &VmControl,
) {
    let mut guard = twinvm_devices::bus::lock(&sh.deadline);
    let mut last_kick = Instant::now();
    while !sh.stop.load(Ordering::Acquire) {
        let now = clock.now_ns();
        let due = guard.is_some_and(|d| now >= d);
        let since = last_kick.elapsed();
        if due || since >= MAX_SLICE || (control.is_pending() && since >= STOP_POLL) {
            // Once per deadline: the run loop sets the next one after polling.
            if due {
                *guard = None;
            }
            kick(run, target);
            last_kick = Instant::now();
            continue;
        }
        let wait = guard.map_or(MAX_SLICE - since, |d| {
            Duration::from_nanos(d - now).min(MAX_SLICE - since)
        });
        let wait = if control.is_pending() {
            wait.min(STOP_POLL)
        } else {
            wait
        };
        guard = sh
            .wake
            .wait_timeout(guard, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
